"""``kr report MODEL``: the K/R table of a network (kr_lib.redundancy.kr_report) and its aggregates.

MODEL is a torchvision model name (``resnet50``, ``r2plus1d_18``; built with ``weights=None``, nothing
is downloaded) or ``package.module:factory`` (a callable returning an ``nn.Module``, or a module instance).
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import json

import torch
from torch import nn

from kr_lib.atomic import atomic_open
from kr_lib.device import resolve_device
from kr_lib.redundancy import default_input_shape, kr_report, kr_summary
from kr_lib.validate import writable_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="torchvision model name (see --list) or package.module:factory")
    parser.add_argument("--list", action="store_true", help="list the torchvision model names and exit")
    parser.add_argument("--input-shape", default=None, metavar="CxHxW",
                        help="input shape without the batch, e.g. 3x224x224 or 3x16x112x112 (video); "
                             "default: 3x224x224 for 2D models, 3x16x112x112 for 3D (video) models")
    parser.add_argument("--batch", type=int, default=1, help="batch size of the example input (FLOPs scale with it)")
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda, cuda:1, mps, auto (default) or meta (shapes only, nothing computed: "
                             "the same report, fast at any input size)")
    parser.add_argument("--csv", default=None, metavar="FILE", help="write the table as CSV")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the table and the aggregates as JSON")


class UserCodeError(ValueError):
    """The user's model code raised: ``kr`` prints one line (``kr --debug`` shows the traceback)."""


def torchvision_names() -> list[str]:
    """All torchvision model names (classification, video, segmentation, detection, ...)."""
    import torchvision

    return sorted(torchvision.models.list_models())


def build_model(spec: str) -> nn.Module:
    """A model from a torchvision name (``weights=None``) or ``package.module:factory``."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(f"cannot import {module_name!r} from model spec {spec!r}: {err}") from None
        except Exception as err:  # the user's module raised while importing: their error, in one line
            raise UserCodeError(f"importing {module_name!r} (model spec {spec!r}) raised "
                                f"{type(err).__name__}: {err}") from err
        if not hasattr(module, attr):
            raise ValueError(f"module {module_name!r} has no attribute {attr!r} (model spec {spec!r})")
        obj = getattr(module, attr)
        try:
            model = obj() if callable(obj) and not isinstance(obj, nn.Module) else obj
        except Exception as err:
            raise UserCodeError(f"the model factory {spec} raised {type(err).__name__}: {err}") from err
        if not isinstance(model, nn.Module):
            raise ValueError(f"{spec!r} gave a {type(model).__name__}, not an nn.Module")
        return model
    import torchvision

    names = torchvision_names()
    if spec not in names:
        close = difflib.get_close_matches(spec, names, n=5, cutoff=0.5)
        hint = f"close matches: {', '.join(close)}" if close else "no close match"
        raise ValueError(f"unknown model {spec!r} ({hint}); `kr report --list` lists all {len(names)} "
                         "torchvision names, or give package.module:factory")
    return torchvision.models.get_model(spec, weights=None)


def parse_shape(text: str) -> tuple[int, ...]:
    """``'3x224x224'`` (or ``'3,224,224'``) -> (3, 224, 224)."""
    parts = text.replace(",", "x").lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--input-shape must be integers joined by 'x' such as 3x224x224, got {text!r}") from None
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"--input-shape needs channels and at least one positive spatial size (e.g. 3x224x224), got {text!r}")
    return shape


def run(args: argparse.Namespace) -> int:
    if args.list:
        print("\n".join(torchvision_names()))
        return 0
    if not args.model:
        raise ValueError("give a MODEL (a torchvision name or package.module:factory); `kr report --list` lists the names")
    if args.batch < 1:
        raise ValueError(f"--batch must be a positive integer, got {args.batch}")
    for flag, path in (("--csv", args.csv), ("--json", args.json)):
        if path:
            writable_file(path, flag)  # before the model is built
    device = resolve_device(args.device)
    shape = parse_shape(args.input_shape) if args.input_shape else None
    model = build_model(args.model).to(device)
    shape = shape or default_input_shape(model)
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    x = torch.randn(args.batch, *shape, device=device, dtype=dtype)
    try:
        report = kr_report(model, x)
    except Exception as err:  # most often an input the model does not take: say which, in one line
        raise UserCodeError(f"{args.model} on an input {'x'.join(map(str, x.shape))} raised "
                            f"{type(err).__name__}: {' '.join(str(err).split())[:500]} (--input-shape sets the "
                            "input)") from err
    summary = kr_summary(report)

    table = report.to_string(index=False, float_format=lambda v: f"{v:.3g}")
    print(f"{args.model}: input {'x'.join(map(str, (args.batch, *shape)))} on {device}")
    print(table)
    print(f"blocks: {summary['blocks']}   parameters: {summary['total_parameters']:,} total, "
          f"{summary['block_parameters']:,} in blocks, {summary['rest_parameters']:,} outside")
    print(f"K/R: parameter-weighted {summary['weighted_kr']:.4g}, max {summary['max_kr']:.4g}; "
          f"share of parameters in blocks with K/R > 1: {summary['share_kr_gt_1']:.1%}")
    print(f"FLOPs (2 per multiply-accumulate): {summary['total_flops']:,} total, {summary['block_flops']:,} in blocks")

    if args.csv:
        with atomic_open(args.csv, "w", encoding="utf-8", newline="") as fh:
            report.to_csv(fh, index=False)
        print(f"wrote {args.csv}")
    if args.json:
        payload = {"model": args.model, "input_shape": [args.batch, *shape], "device": str(device),
                   "summary": summary, "blocks": json.loads(report.to_json(orient="records"))}
        with atomic_open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1)
        print(f"wrote {args.json}")
    return 0
