"""Compressed blocks against the dense conv they replace and against TensorLy-Torch's factorized layers.

For each input configuration (2D and 3D) and each rank R = f K (f = 1/2, 1/4, 1/8), one interleaved
timing group holds the dense conv (the baseline) and the candidates:

* kr_lib's linear blocks (``make_block(..., linear=True)``: just the decomposed convs): ``bottleneck``
  (Tucker-2, R_in = R), ``separable`` (CP of rank R), ``inverted_residual`` (depthwise core, R
  channels), and ``r2plus1d`` in 3D;
* a proposed faster path for ``separable``: its per-mode depthwise 1D convs merged into one depthwise
  conv with their outer-product kernel (exact; ``merged_separable`` below, library column "proposal");
* TensorLy-Torch's ``FactorizedConv`` with ``implementation='factorized'``: ``tucker`` (spatial modes
  kept, ranks (R, R, l..)) and ``cp`` (rank R).

Forward (under ``torch.no_grad``) and forward+backward (gradients of the weights) are timed separately.
Each row: median seconds of the candidate and of the dense conv in the same rounds, the speedup
``t_dense / t``, the FLOP reduction ``FLOPs_dense / FLOPs`` (both counted by
``torch.utils.flop_counter`` for the same pass) and the efficiency ``speedup / FLOP reduction``
(1.0 is the limit; the issue's target is >= 0.5 at f <= 1/4). For the proposal the FLOP reduction is
the separable block's (``evaluated_flops`` holds what the merged layers count: a full l_1 x l_2
depthwise kernel costs more multiply-adds than the per-mode ones).

Where a block is slower than the dense conv, the library's faster path is
``kr_lib.decompose.reconstructed_conv(block)``: one conv with the composite kernel, which has the
dense conv's shape and so exactly its cost -- the dense column.

    python benchmarks/bench_blocks.py [--device cpu|cuda] [--quick]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from kr_lib import perf  # noqa: E402
from kr_lib.blocks import make_block  # noqa: E402

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}

CONFIGS = {
    "quick": [
        dict(config="2d 256ch 14x14", dim=2, channels=256, size=(14, 14), batch=2),
        dict(config="2d 64ch 56x56", dim=2, channels=64, size=(56, 56), batch=2),
        dict(config="2d 512ch 7x7", dim=2, channels=512, size=(7, 7), batch=2),
        dict(config="3d 64ch 4x28x28", dim=3, channels=64, size=(4, 28, 28), batch=1),
    ],
    "full": [
        dict(config="2d 256ch 14x14", dim=2, channels=256, size=(14, 14), batch=8),
        dict(config="2d 64ch 56x56", dim=2, channels=64, size=(56, 56), batch=8),
        dict(config="2d 128ch 28x28", dim=2, channels=128, size=(28, 28), batch=8),
        dict(config="2d 512ch 7x7", dim=2, channels=512, size=(7, 7), batch=8),
        dict(config="3d 64ch 8x28x28", dim=3, channels=64, size=(8, 28, 28), batch=2),
        dict(config="3d 128ch 8x14x14", dim=3, channels=128, size=(8, 14, 14), batch=2),
    ],
}
RANK_FRACTIONS = (0.5, 0.25, 0.125)
GPU_SCALE = 16  # batch multiplier on CUDA, so that kernels are not launch-bound


def candidates(dim: int, channels: int, R: int, device: torch.device) -> dict[str, nn.Module]:
    """The dense baseline and the compressed layers that replace it (kernel 3 per mode, 'same' padding):
    input (batch, channels, d_1..d_dim) -> (batch, channels, d_1..d_dim)."""
    import tltorch

    P = K = channels
    l = (3,) * dim
    layers: dict[str, nn.Module] = {"dense": _CONV[dim](P, K, 3, padding=1, bias=False)}
    for design in ("bottleneck", "separable", "inverted_residual") + (("r2plus1d",) if dim == 3 else ()):
        layers[f"kr {design}"] = make_block(design, P, K, R, dim=dim, kernel_size=3, linear=True)
    layers["kr separable, one depthwise conv"] = merged_separable(layers["kr separable"])
    layers["tltorch tucker"] = tltorch.FactorizedConv(P, K, l, factorization="tucker", rank=(R, R, *l),
                                                      fixed_rank_modes="spatial", implementation="factorized", padding=1)
    layers["tltorch cp"] = tltorch.FactorizedConv(P, K, l, factorization="cp", rank=R, implementation="factorized",
                                                  padding=1)
    for layer in layers.values():
        if hasattr(getattr(layer, "weight", None), "normal_") and not isinstance(layer.weight, torch.Tensor):
            layer.weight.normal_(0, 0.02)  # tltorch layers start uninitialized
    return {name: layer.to(device) for name, layer in layers.items()}


def merged_separable(block: nn.Module) -> nn.Sequential:
    """A proposed faster path for a linear ``separable`` (CP) block: its per-mode depthwise 1D convs merged
    into one depthwise conv whose kernel is their outer product (exact: the same composite kernel).

    (batch, P, d..) -> (batch, K, m..), equal to ``block``; built here from ``block.convs()``.
    """
    first, *spatial, last = block.convs()
    kernel = spatial[0].weight.detach()
    for conv in spatial[1:]:
        kernel = kernel * conv.weight.detach()  # broadcast (R, 1, l_1, 1) * (R, 1, 1, l_2) -> (R, 1, l_1, l_2)
    stride = tuple(max(c.stride[j] for c in spatial) for j in range(len(kernel.shape) - 2))
    padding = tuple(max(c.padding[j] for c in spatial) for j in range(len(kernel.shape) - 2))
    depthwise = _CONV[len(stride)](kernel.shape[0], kernel.shape[0], tuple(kernel.shape[2:]), stride=stride,
                                   padding=padding, groups=kernel.shape[0], bias=False)
    with torch.no_grad():
        depthwise.weight.copy_(kernel)
    return nn.Sequential(first, depthwise, last)


def step(layer: nn.Module, x: torch.Tensor, backward: bool):
    if not backward:
        with torch.no_grad():
            return layer(x)

    def fn():
        for p in layer.parameters():
            p.grad = None
        layer(x).sum().backward()
    return fn()


def counted_flops(layer: nn.Module, x: torch.Tensor, backward: bool) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step(layer, x, backward)
    return int(counter.get_total_flops())


def run_group(cfg: dict, fraction: float, device: torch.device, repeats: int, clock: str = "wall") -> list[dict]:
    torch.manual_seed(0)
    R = max(1, round(fraction * cfg["channels"]))
    batch = cfg["batch"] * (GPU_SCALE if device.type == "cuda" else 1)
    x = torch.randn(batch, cfg["channels"], *cfg["size"], device=device)
    layers = candidates(cfg["dim"], cfg["channels"], R, device)
    with torch.no_grad():
        ref_shape = layers["dense"](x).shape
        for name, layer in layers.items():
            if layer(x).shape != ref_shape:
                raise AssertionError(f"{name} gives {tuple(layer(x).shape)}, the dense conv {tuple(ref_shape)}")
        if not torch.allclose(layers["kr separable, one depthwise conv"](x), layers["kr separable"](x), atol=1e-4, rtol=1e-3):
            raise AssertionError("the merged separable block differs from the separable block")
    rows = []
    for backward in (False, True):
        flops = {name: counted_flops(layer, x, backward) for name, layer in layers.items()}
        fns = {name: (lambda layer=layer: step(layer, x, backward)) for name, layer in layers.items()}
        times = perf.compare(fns, device=device, repeats=repeats, warmup=1, clock=clock)
        t_dense = perf.median(times["dense"])
        for name in layers:
            if name == "dense":
                continue
            t = perf.median(times[name])
            speedup = t_dense / t
            # a proposal evaluates the separable block's kernel: its FLOP reduction is the CP block's
            counted = flops["kr separable"] if "one depthwise" in name else flops[name]
            reduction = flops["dense"] / counted
            rows.append({
                "config": cfg["config"], "dim": cfg["dim"], "channels": cfg["channels"],
                "size": "x".join(map(str, cfg["size"])), "batch": batch, "rank_fraction": fraction, "R": R,
                "pass": "forward+backward" if backward else "forward", "layer": name,
                "library": "tltorch" if name.startswith("tltorch") else "proposal" if "one depthwise" in name else "kr_lib",
                "seconds": t, "dense_seconds": t_dense, "speedup": speedup, "flops": counted,
                "evaluated_flops": flops[name],
                "dense_flops": flops["dense"], "flop_reduction": reduction, "efficiency": speedup / reduction,
                "params": sum(p.numel() for p in layers[name].parameters()),
                "dense_params": sum(p.numel() for p in layers["dense"].parameters()),
                "samples_per_s": batch / t, "dense_samples_per_s": batch / t_dense,
                # reconstructed_conv(block) has the dense conv's shape, hence its cost
                "faster_path": "block" if speedup >= 1 else "reconstructed_conv",
            })
    return rows


def summarize(rows: list[dict]) -> dict:
    """Share of kr_lib rows at f <= 1/4 that reach half of the FLOP-predicted speedup, per pass and dim."""
    out = {}
    for pass_ in ("forward", "forward+backward"):
        sel = [r for r in rows if r["library"] == "kr_lib" and r["rank_fraction"] <= 0.25 and r["pass"] == pass_]
        if sel:
            out[f"{pass_}: kr rows at f<=1/4 with efficiency >= 0.5"] = f"{sum(r['efficiency'] >= 0.5 for r in sel)}/{len(sel)}"
            for design in sorted({r["layer"] for r in sel}):
                eff = sorted(r["efficiency"] for r in sel if r["layer"] == design)
                out[f"{pass_}: median efficiency {design} (f<=1/4)"] = perf.median(eff)
        gain = [p["speedup"] / s["speedup"] for p in rows for s in rows
                if p["library"] == "proposal" and s["layer"] == "kr separable" and p["pass"] == pass_ == s["pass"]
                and p["config"] == s["config"] and p["rank_fraction"] == s["rank_fraction"]]
        if gain:
            out[f"{pass_}: median speedup of one depthwise conv over the separable block"] = perf.median(gain)
    return out


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    device, out, command = _common.setup(args, "blocks")
    configs = CONFIGS["quick" if args.quick else "full"]
    rows, started = [], time.perf_counter()
    for cfg in configs:
        for fraction in RANK_FRACTIONS:
            group = run_group(cfg, fraction, device, args.repeats, args.clock)
            rows.extend(group)
            for r in group:
                print(f"{r['config']:>17} f={fraction:<5} {r['pass']:>16} {r['layer']:>22}: speedup {r['speedup']:5.2f}"
                      f"  FLOP reduction {r['flop_reduction']:6.2f}  efficiency {r['efficiency']:5.2f}", flush=True)
    record = perf.make_record("blocks", device, rows, quick=args.quick, command=command, summary=summarize(rows),
                              parameters={"configs": configs, "rank_fractions": list(RANK_FRACTIONS),
                                          "repeats": args.repeats, "threads": torch.get_num_threads(), "clock": args.clock,
                                          "gpu_batch_scale": GPU_SCALE, "seconds": round(time.perf_counter() - started, 1)})
    print(f"wrote {perf.write_record(record, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
