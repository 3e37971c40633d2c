"""Counting FLOPs and parameters: ``kr report`` against fvcore, ptflops (aten backend) and
``torch.utils.flop_counter`` on the torchvision zoo -- the time each takes and whether the counts agree.

Per model (built with ``weights=None``, eval mode, one input of batch 1), the four counters are timed
interleaved, round by round:

* ``kr_report`` -- ``kr_lib.redundancy.kr_report(model, x)`` (what ``kr report MODEL`` runs: the
  block analysis and the counts, in one traced forward pass);
* ``fvcore`` -- ``FlopCountAnalysis(model, x).total()`` (a JIT trace) and ``parameter_count``;
* ``ptflops`` -- ``get_model_complexity_info(..., backend='aten')``;
* ``flop_counter`` -- ``torch.utils.flop_counter.FlopCounterMode`` around a plain inference pass
  (``torch.no_grad``). Its count is also taken once with autograd on (``flop_counter_grad_flops``, not
  timed): in inference mode ``nn.MultiheadAttention`` takes a fused path whose matrix products
  FlopCounterMode does not see, while ``kr_report`` traces with autograd on.

Conventions differ, so agreement is checked on like terms. kr_lib and torch count 2 FLOPs per
multiply-accumulate of convolutions and matrix products and nothing else; fvcore and ptflops count
multiply-accumulates, fvcore also for BatchNorm, pooling and upsampling, ptflops also one per bias
addition of a conv or linear layer. The *standard layers* are convolutions and linear /
matrix-product layers: ``kr FLOPs == 2 * fvcore(conv + linear + matmul)`` and
``kr FLOPs == 2 * (ptflops MACs - bias additions)`` (the bias additions counted here by hooks on the
``nn.Conv*`` / ``nn.Linear`` modules that have a bias) are the exact-agreement checks; parameter
counts are compared directly. Attention (``scaled_dot_product_attention``) is counted by torch and kr_lib only, so
transformers disagree by design; the row says so.

    python benchmarks/bench_counting.py [--device cpu|cuda] [--quick]

**One model in detail** (``--model NAME``, e.g. ``resnet50``): ``kr report`` against fvcore's
``FlopCountAnalysis`` on that torchvision model (weights=None) and one input of ``--input-size`` (default
224), timed interleaved round by round, with the report on the meta device (``kr report --device meta``:
shapes and the autograd graph only, no arithmetic) as a third candidate. The ratio is
``median(kr) / median(fvcore)`` (below 1: kr is faster). The run also checks that the two agree on FLOPs
(``kr FLOPs == 2 * fvcore(conv + linear)``, network-wide and per block: fvcore counts 1 per MAC and also
BatchNorm and pooling) and that the meta-device report is identical. It writes its own record,
``benchmarks/results/report_<device>.json``: one row per tool, the agreement in the summary.

    python benchmarks/bench_counting.py --model resnet50 [--input-size 224] [--device cpu] [--quick]
"""
from __future__ import annotations

import copy
import io
import logging
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from kr_lib import perf  # noqa: E402
from kr_lib.redundancy import default_input_shape, kr_report, kr_summary  # noqa: E402

MODELS = {
    "quick": ["resnet18", "mobilenet_v2", "squeezenet1_0", "shufflenet_v2_x1_0", "efficientnet_b0"],
    "full": ["resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2", "mobilenet_v3_large",
             "efficientnet_b0", "shufflenet_v2_x1_0", "squeezenet1_0", "densenet121", "regnet_y_400mf",
             "mnasnet1_0", "googlenet", "vgg11", "alexnet", "convnext_tiny", "vit_b_16", "r2plus1d_18", "r3d_18"],
}
#: fvcore operator names that are convolutions or linear / matrix products (the standard layers).
FVCORE_STANDARD = ("conv", "linear", "addmm", "matmul", "bmm", "einsum", "mm")


def build(name: str, device: torch.device) -> torch.nn.Module:
    import torchvision

    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    return torchvision.models.get_model(name, weights=None, **kwargs).eval().to(device)


def count_kr(model, x):
    report = kr_report(model, x)
    return {"flops": report.attrs["total_flops"], "params": report.attrs["total_parameters"],
            "blocks": len(report)}


def count_fvcore(model, x):
    from fvcore.nn import FlopCountAnalysis, parameter_count

    analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = analysis.by_operator()
    return {"macs_all": int(analysis.total()),
            "macs_standard": int(sum(v for k, v in by_op.items() if k in FVCORE_STANDARD)),
            "params": int(parameter_count(model)[""]),
            "other_ops": sorted(k for k, v in by_op.items() if k not in FVCORE_STANDARD and v)}


def count_ptflops(model, x):
    from ptflops import get_model_complexity_info

    # ptflops registers hooks it never removes: count on a copy so the model stays clean
    clone = copy.deepcopy(model)
    macs, params = get_model_complexity_info(clone, tuple(x.shape[1:]), as_strings=False, backend="aten",
                                             print_per_layer_stat=False, ost=io.StringIO(),
                                             input_constructor=lambda _: x)
    return {"macs": None if macs is None else int(macs), "params": None if params is None else int(params)}


def count_torch(model, x, grad: bool = False):
    """FlopCounterMode around a forward pass, in inference mode (``torch.no_grad``) unless ``grad``."""
    counter = FlopCounterMode(display=False)
    with torch.set_grad_enabled(grad), counter:
        model(x)
    return {"flops": int(counter.get_total_flops()), "params": sum(p.numel() for p in model.parameters())}


def bias_additions(model, x) -> int:
    """Output elements of the conv / linear modules that have a bias: the additions ptflops counts."""
    total = 0

    def hook(module, args, out):
        nonlocal total
        total += out.numel()

    layers = (torch.nn.Linear, torch.nn.modules.conv._ConvNd)
    biased = [m for m in model.modules() if isinstance(m, layers) and getattr(m, "bias", None) is not None]
    _common.forward_with_hooks(model, x, biased, hook)
    return total


COUNTERS = {"kr_report": count_kr, "fvcore": count_fvcore, "ptflops": count_ptflops, "flop_counter": count_torch}


def run_model(name: str, device: torch.device, repeats: int, clock: str) -> dict:
    torch.manual_seed(0)
    model = build(name, device)
    shape = default_input_shape(model)
    x = torch.randn(1, *shape, device=device)
    counts = {tool: fn(model, x) for tool, fn in COUNTERS.items()}  # also the warm-up round
    times = perf.compare({tool: (lambda fn=fn: fn(model, x)) for tool, fn in COUNTERS.items()}, device=device,
                         repeats=repeats, warmup=0, clock=clock)
    kr, fv, pt, tc = (counts[t] for t in COUNTERS)
    bias = bias_additions(model, x)
    with_grad = count_torch(model, x, grad=True)["flops"]
    ptflops_flops = None if pt["macs"] is None else 2 * (pt["macs"] - bias)
    row = {
        "model": name, "input": "x".join(map(str, (1, *shape))), "blocks": kr["blocks"],
        "kr_flops": kr["flops"], "flop_counter_flops": tc["flops"], "flop_counter_grad_flops": with_grad, "fvcore_standard_flops": 2 * fv["macs_standard"],
        "fvcore_all_macs": fv["macs_all"], "ptflops_flops": ptflops_flops, "ptflops_macs": pt["macs"],
        "bias_additions": bias,
        "kr_params": kr["params"], "fvcore_params": fv["params"], "ptflops_params": pt["params"],
        "torch_params": tc["params"],
        "flops_agree_flop_counter": kr["flops"] == tc["flops"],
        "flops_agree_flop_counter_grad": kr["flops"] == with_grad,
        "flops_agree_fvcore": kr["flops"] == 2 * fv["macs_standard"],
        "flops_agree_ptflops": ptflops_flops is not None and kr["flops"] == ptflops_flops,
        "params_agree_fvcore": kr["params"] == fv["params"],
        "params_agree_ptflops": kr["params"] == pt["params"],
        "fvcore_other_ops": ", ".join(fv["other_ops"]),
    }
    for tool in COUNTERS:
        row[f"{tool}_seconds"] = perf.median(times[tool])
    for tool in ("fvcore", "ptflops", "flop_counter"):
        row[f"kr_report_vs_{tool}"] = row["kr_report_seconds"] / row[f"{tool}_seconds"]
    return row


def _macs(ops) -> int:
    return int(ops.get("conv", 0) + ops.get("linear", 0) + ops.get("addmm", 0) + ops.get("matmul", 0))


#: timed rounds of the one-model run (``--model``): its default, and with ``--quick``
REPORT_REPEATS, REPORT_QUICK_REPEATS = 5, 2


def report_one_model(args) -> int:
    """``--model``: kr report vs fvcore (and on the meta device) on one model; record ``report_<device>.json``."""
    import torchvision

    if args.repeats is None:
        args.repeats = REPORT_REPEATS
    device, out, command = _common.setup(args, "report")
    from fvcore.nn import FlopCountAnalysis

    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model, weights=None).to(device).eval()
    x = torch.randn(1, 3, args.input_size, args.input_size, device=device)
    meta_model, meta_x = copy.deepcopy(model).to("meta"), x.to("meta")
    results = {}

    def run_kr():
        results["kr"] = kr_report(model, x)

    def run_meta():
        results["meta"] = kr_report(meta_model, meta_x)

    def run_fvcore():
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        results["fvcore"] = analysis.total(), analysis.by_operator(), analysis.by_module_and_operator()

    started = time.perf_counter()
    repeats = REPORT_QUICK_REPEATS if args.quick else args.repeats
    times = perf.compare({"kr report": run_kr, "fvcore": run_fvcore, "kr report (meta device)": run_meta},
                         device=device, repeats=repeats, warmup=1, clock=args.clock)
    report, meta_report = results["kr"], results["meta"]
    fv_total, fv_by_op, fv_by_module = results["fvcore"]
    summary = kr_summary(report)
    fv_macs = _macs(fv_by_op)
    every_block = all(int(f) == 2 * _macs(fv_by_module.get(b, {})) for b, f in zip(report["block"], report["FLOPs"]))
    fv_median = perf.median(times["fvcore"])
    flops = {"kr report": summary["total_flops"], "kr report (meta device)": kr_summary(meta_report)["total_flops"],
             "fvcore": int(fv_total)}
    rows = [{"model": args.model, "input": "x".join(map(str, x.shape)), "tool": tool, "seconds": perf.median(t),
             "seconds_per_round": t, "ratio_to_fvcore": perf.median(t) / fv_median, "flops": flops[tool],
             "flops_convention": "1 per MAC, conv + linear + BatchNorm + pooling" if tool == "fvcore"
             else "2 per MAC, conv + matmul"} for tool, t in times.items()]
    record = perf.make_record("report", device, rows, quick=args.quick, command=command, summary={
        "ratio kr report / fvcore (time)": perf.median(times["kr report"]) / fv_median,
        "ratio kr report on the meta device / fvcore (time)": perf.median(times["kr report (meta device)"]) / fv_median,
        "kr FLOPs = 2 x fvcore conv+linear MACs, whole network": summary["total_flops"] == 2 * fv_macs,
        "kr FLOPs = 2 x fvcore conv+linear MACs, every block": bool(every_block),
        "meta-device report identical": bool(meta_report.equals(report) and meta_report.attrs == report.attrs),
        "blocks found": summary["blocks"],
    }, parameters={"model": args.model, "input_size": args.input_size, "repeats": repeats, "clock": args.clock,
                   "threads": torch.get_num_threads(), "fvcore_conv_linear_macs": fv_macs,
                   "fvcore_by_operator": {k: int(v) for k, v in fv_by_op.items()},
                   "seconds": round(time.perf_counter() - started, 1)})
    for r in rows:
        print(f"{r['tool']:>24}: {r['seconds']:.3f} s  ({r['ratio_to_fvcore']:.2f} x fvcore)")
    for k, v in record["summary"].items():
        print(f"  {k}: {v}")
    print(f"wrote {perf.write_record(record, out)}")
    return 0


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0], repeats=3, quick_repeats=2)
    p.add_argument("--model", default=None, metavar="NAME",
                   help="one torchvision model in detail: kr report vs fvcore and on the meta device, "
                        "record report_<device>.json (the book's: resnet50)")
    p.add_argument("--input-size", type=int, default=None,
                   help="with --model: height = width of the input (default 224)")
    args = p.parse_args(argv)
    if args.model is not None:
        args.input_size = 224 if args.input_size is None else args.input_size
        return report_one_model(args)
    if args.input_size is not None:
        p.error("--input-size sets the input of --model NAME; the zoo run uses each model's default input")
    device, out, command = _common.setup(args, "counting")
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")  # TracerWarnings of the JIT trace
    models = MODELS["quick" if args.quick else "full"]
    rows, started = [], time.perf_counter()
    for name in models:
        row = run_model(name, device, args.repeats, args.clock)
        rows.append(row)
        agree = "".join("Y" if row[k] else "n" for k in ("flops_agree_fvcore", "flops_agree_ptflops",
                                                          "flops_agree_flop_counter", "params_agree_fvcore",
                                                          "params_agree_ptflops"))
        print(f"{name:>20}: kr {row['kr_flops'] / 1e9:7.3f} GFLOPs, agree (fv, pt, torch | params fv, pt) {agree};"
              f" seconds kr {row['kr_report_seconds']:.2f} fvcore {row['fvcore_seconds']:.2f} "
              f"ptflops {row['ptflops_seconds']:.2f} torch {row['flop_counter_seconds']:.2f}", flush=True)
    summary = {
        "models": len(rows),
        "flops agree with fvcore (standard layers)": sum(r["flops_agree_fvcore"] for r in rows),
        "flops agree with ptflops (aten)": sum(r["flops_agree_ptflops"] for r in rows),
        "flops agree with torch flop_counter": sum(r["flops_agree_flop_counter"] for r in rows),
        "flops agree with torch flop_counter (autograd on)": sum(r["flops_agree_flop_counter_grad"] for r in rows),
        "params agree with fvcore": sum(r["params_agree_fvcore"] for r in rows),
        "params agree with ptflops": sum(r["params_agree_ptflops"] for r in rows),
        "median time kr_report / fvcore": perf.median(r["kr_report_vs_fvcore"] for r in rows),
        "median time kr_report / ptflops": perf.median(r["kr_report_vs_ptflops"] for r in rows),
        "median time kr_report / flop_counter": perf.median(r["kr_report_vs_flop_counter"] for r in rows),
    }
    record = perf.make_record("counting", device, rows, quick=args.quick, command=command, summary=summary,
                              parameters={"models": models, "repeats": args.repeats, "clock": args.clock,
                                          "threads": torch.get_num_threads(),
                                          "seconds": round(time.perf_counter() - started, 1)})
    print(f"wrote {perf.write_record(record, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
