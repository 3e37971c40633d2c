"""Decomposing kernels: ``kr_lib.decompose.decompose_conv`` against TensorLy-Torch's
``FactorizedConv.from_conv`` (both make a factorized layer from a trained conv), CP and Tucker, on every
convolution of ResNet-50 and on a large Conv3d kernel: time, reconstruction error, peak memory.

(The comparison with TensorLy's NumPy backend is ``bench_decompose.py``.)

Pairs, at the same ranks and the same number of ALS / HOOI iterations (``--iters``):

* CP of rank R = K/4, at most a quarter of the CP rank bound (min(K, P)/4 for a 1x1 conv): ``decompose_conv(conv, "cp", R)`` vs ``from_conv(conv, factorization="cp", rank=R)``;
* Tucker on the channel modes, ranks (R, R_in) = (K/4, P/4) (for a 1x1 conv both min(K, P)/4, the
  attainable ranks of a K x P matrix): ``decompose_conv(conv, "tucker2", (R, R_in))``
  vs ``from_conv(conv, factorization="tucker", rank=(R, R_in, l_1..l_N), fixed_rank_modes="spatial")``
  (a Tucker decomposition whose spatial factors keep full rank: the same set of kernels).

Each pair is timed interleaved (``--repeats`` rounds); the ratio is ``t_tltorch / t_kr`` (> 1: kr_lib
is faster). The relative error is ``||A - A_hat||_F / ||A||_F`` of each; peak memory is measured in one
extra call each (``kr_lib.perf.peak_memory``). ResNet-50 is built with random (Kaiming) weights --
nothing is downloaded -- so errors are those of random kernels, larger than a trained network's.
``--quick`` takes one convolution of each distinct ResNet-50 shape up to 256 channels and a smaller
Conv3d.

Both libraries run TensorLy on its PyTorch backend (importing tltorch sets TensorLy's global backend
to PyTorch; kr_lib uses a thread-local backend context), so the comparison is of what each does around
TensorLy's ``parafac`` / ``tucker``.

    python benchmarks/bench_decompose_peers.py [--device cpu|cuda] [--quick]
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from kr_lib import perf  # noqa: E402
from kr_lib.decompose import cp_rank_bound, decompose_conv  # noqa: E402

LARGE_CONV3D = {"quick": (128, 128, (3, 3, 3)), "full": (512, 512, (3, 3, 3))}


def resnet50_convs(quick: bool) -> list[tuple[str, nn.Conv2d]]:
    """(path, conv) for every conv of a randomly initialized ResNet-50; with ``quick`` one per shape, <= 256 channels."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not quick:
        return convs
    seen, out = set(), []
    for name, m in convs:
        key = tuple(m.weight.shape)
        if key not in seen and max(m.in_channels, m.out_channels) <= 256:
            seen.add(key)
            out.append((name, m))
    return out


def pairs(conv: nn.modules.conv._ConvNd, iters: int):
    """{method: {"kr": fn, "tltorch": fn}}: each fn returns (layer, relative error)."""
    import tltorch

    K, P, *l = conv.weight.shape
    # CP rank: K/4, and at most a quarter of the CP rank bound (for a 1x1 conv, a K x P matrix: min(K, P)/4)
    R = max(1, min(K // 4, cp_rank_bound(conv.weight.shape) // 4))
    R_in = max(1, P // 4)
    taps = 1
    for size in l:
        taps *= size
    # attainable Tucker ranks: R <= R_in prod(l), R_in <= R prod(l) (a 1x1 conv is a K x P matrix)
    R_t = min(R, R_in * taps)
    R_in_t = min(R_in, R_t * taps)
    W = conv.weight.detach()

    def error(layer):
        A_hat = layer.weight.to_tensor()
        return (torch.linalg.vector_norm(W - A_hat) / torch.linalg.vector_norm(W)).item()

    def kr(method, rank):
        def fn():
            layer = decompose_conv(conv, method, rank, n_iter_max=iters)
            return layer, layer.relative_error
        return fn

    def tl(**kwargs):
        def fn():
            layer = tltorch.FactorizedConv.from_conv(conv, implementation="factorized",
                                                     decomposition_kwargs={"n_iter_max": iters}, **kwargs)
            return layer, error(layer)
        return fn

    return {
        "cp": {"kr": kr("cp", R), "tltorch": tl(factorization="cp", rank=R)},
        "tucker": {"kr": kr("tucker2", (R_t, R_in_t)),
                   "tltorch": tl(factorization="tucker", rank=(R_t, R_in_t, *l), fixed_rank_modes="spatial")},
    }, (R, (R_t, R_in_t))


def run_conv(name: str, conv, device, iters: int, repeats: int, clock: str) -> list[dict]:
    conv = conv.to(device)
    by_method, (R, (R_t, R_in_t)) = pairs(conv, iters)
    rows = []
    for method, fns in by_method.items():
        errors = {lib: fn()[1] for lib, fn in fns.items()}  # also the warm-up round
        times = perf.compare(fns, device=device, repeats=repeats, warmup=0, clock=clock)
        memory = {lib: perf.peak_memory(fn, device)[1] for lib, fn in fns.items()}
        t_kr, t_tl = perf.median(times["kr"]), perf.median(times["tltorch"])
        rows.append({
            "conv": name, "shape": "x".join(map(str, conv.weight.shape)), "numel": conv.weight.numel(),
            "method": method, "rank": str(R) if method == "cp" else f"{R_t}x{R_in_t}", "iters": iters,
            "kr_seconds": t_kr, "tltorch_seconds": t_tl, "speedup_vs_tltorch": t_tl / t_kr,
            "kr_error": errors["kr"], "tltorch_error": errors["tltorch"],
            "kr_peak_bytes": memory["kr"], "tltorch_peak_bytes": memory["tltorch"],
        })
    return rows


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0], repeats=2, quick_repeats=2)
    p.add_argument("--iters", type=int, default=None, help="ALS / HOOI iterations for both (default 5, 3 with --quick)")
    args = p.parse_args(argv)
    device, out, command = _common.setup(args, "decompose_peers")
    iters = args.iters or (3 if args.quick else 5)
    warnings.filterwarnings("ignore", message="Trying to compute SVD")
    started = time.perf_counter()
    targets = resnet50_convs(args.quick)
    P, K, l = LARGE_CONV3D["quick" if args.quick else "full"]
    torch.manual_seed(0)
    targets.append((f"large Conv3d {P}->{K} {'x'.join(map(str, l))}", nn.Conv3d(P, K, l, padding=1)))
    rows = []
    for name, conv in targets:
        for row in run_conv(name, conv, device, iters, args.repeats, args.clock):
            rows.append(row)
            print(f"{name:>34} {row['shape']:>16} {row['method']:>6}: kr {row['kr_seconds']:7.3f}s "
                  f"tltorch {row['tltorch_seconds']:7.3f}s (x{row['speedup_vs_tltorch']:.2f}); error "
                  f"{row['kr_error']:.4f} / {row['tltorch_error']:.4f}; peak MB {row['kr_peak_bytes'] / 2**20:.0f} / "
                  f"{row['tltorch_peak_bytes'] / 2**20:.0f}", flush=True)
    summary = {}
    for method in ("cp", "tucker"):
        sel = [r for r in rows if r["method"] == method]
        summary[f"{method}: median speedup vs tltorch"] = perf.median(r["speedup_vs_tltorch"] for r in sel)
        summary[f"{method}: total kr seconds"] = sum(r["kr_seconds"] for r in sel)
        summary[f"{method}: total tltorch seconds"] = sum(r["tltorch_seconds"] for r in sel)
        summary[f"{method}: max error difference (kr - tltorch)"] = max(r["kr_error"] - r["tltorch_error"] for r in sel)
    record = perf.make_record("decompose_peers", device, rows, quick=args.quick, command=command, summary=summary,
                              parameters={"iters": iters, "repeats": args.repeats, "clock": args.clock,
                                          "threads": torch.get_num_threads(), "large_conv3d": [P, K, list(l)],
                                          "convs": len(targets), "weights": "random (Kaiming) initialization",
                                          "seconds": round(time.perf_counter() - started, 1)})
    print(f"wrote {perf.write_record(record, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
