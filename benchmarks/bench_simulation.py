"""Sample-complexity simulations: repetitions batched against a loop over them, and the device against the CPU.

Parts (ratios always against a baseline timed in the same run, ``kr_lib.perf.compare``):

* ``fit gradient``: ``reps`` ReLU students (dense, K = 16) trained together -- stacked weights, one batched
  matrix product per layer (``kr_lib.simulation.network_output``) -- against the same students trained one
  at a time; a fixed number of epochs (no early stopping), so both do the same arithmetic;
* ``fit als``: ``tucker_als`` on a batch of ``reps`` Gram matrices against one at a time;
* ``experiment``: ``run_sample_complexity`` end to end for the notebook's configurations (linear with
  ALS, ReLU with gradient training; ``--quick``: smaller grids), timed once.

On CUDA every part is also timed on the CPU in the same run, and the summary gives the GPU speedup.

    python benchmarks/bench_simulation.py [--device cpu|cuda] [--quick]
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch
from torch.func import stack_module_state

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from kr_lib import perf  # noqa: E402
from kr_lib.simulation import (  # noqa: E402
    SimulationConfig, build_cnn, fit_gradient, network_output, normal_equations, patches, pooling_matrix,
    run_sample_complexity, tucker_als,
)

SIZES = {
    "quick": dict(reps=8, n=1000, epochs=3, experiment=dict(n_grid=(200, 400, 800, 1600), reps=3),
                  relu=dict(n_grid=(200, 400), K_grid=(2, 16), reps=2)),
    # the notebook's defaults (notebooks/sample_complexity.ipynb)
    "full": dict(reps=8, n=2000, epochs=5, experiment=dict(n_grid=(100, 200, 400, 800, 1600, 3200, 6400), reps=5),
                 relu=dict(n_grid=(200, 400, 800, 1600), reps=2)),
}
BASE = SimulationConfig()  # the notebook's geometry, ranks and K grid


def gradient_workload(device, reps: int, n: int, epochs: int):
    """(batched, looped): ``reps`` dense ReLU students (K = 16) on n samples, ``epochs`` epochs each."""
    g = BASE.geometry
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(reps, n, g.in_channels, *g.spatial, generator=gen)
    Xp = patches(X.flatten(0, 1), g).reshape(reps, n, g.in_channels * g.kernel_numel, -1).to(device)
    Xp = Xp.transpose(1, 2).contiguous()  # (reps, D, n, M), samples on dimension 2: as run_sample_complexity keeps them
    y = torch.randn(reps, n, generator=gen).to(device)
    S = pooling_matrix(g, device=device)
    torch.manual_seed(0)
    models = [build_cnn(g, "dense", 16, activation="relu") for _ in range(reps)]
    start, _ = stack_module_state(models)
    start = {k: v.detach().to(device) for k, v in start.items()}
    split = int(0.8 * n)
    kw = dict(lr=3e-3, batch_size=64, max_epochs=epochs, patience=10 ** 6, min_steps=10 ** 9)

    def predict(p, xp):
        return network_output("dense", "relu", p, g, xp.transpose(1, 2), S).squeeze(-1)

    def fit(params, lo, hi):
        train = (Xp[lo:hi, :, :split], y[lo:hi, :split])
        val = (Xp[lo:hi, :, split:], y[lo:hi, split:])
        return fit_gradient(predict, {k: v[lo:hi].clone() for k, v in params.items()}, train, val,
                            generator=torch.Generator().manual_seed(1), sample_dim=2, **kw)

    return (lambda: fit(start, 0, reps)), (lambda: [fit(start, r, r + 1) for r in range(reps)])


def als_workload(device, reps: int, n: int):
    """(batched, looped): Tucker ALS of the compressed students' ranks on ``reps`` Gram matrices."""
    g = BASE.geometry
    dims = (g.in_channels, g.kernel_numel, g.pooled_numel)
    gen = torch.Generator().manual_seed(0)
    Z = torch.randn(reps, n, dims[0] * dims[1] * dims[2], generator=gen, dtype=torch.float64)
    W = torch.randn(dims[0] * dims[1] * dims[2], generator=gen, dtype=torch.float64)
    gram, moment = (t.to(device) for t in normal_equations(Z, Z @ W + torch.randn(reps, n, generator=gen,
                                                                                    dtype=torch.float64)))
    kw = dict(iters=30, tol=0.0)  # always 30 sweeps: equal work
    return ((lambda: tucker_als(gram, moment, dims, (BASE.R_in, BASE.R), **kw)),
            (lambda: [tucker_als(gram[r:r + 1], moment[r:r + 1], dims, (BASE.R_in, BASE.R), **kw)
                      for r in range(reps)]))


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0], repeats=5, quick_repeats=3).parse_args(argv)
    device, out, command = _common.setup(args, "simulation")
    size = SIZES["quick" if args.quick else "full"]
    devices = [device] if device.type == "cpu" else [device, torch.device("cpu")]
    started = time.perf_counter()
    rows, summary = [], {}

    for part, make in (("fit gradient", lambda d: gradient_workload(d, size["reps"], size["n"], size["epochs"])),
                       ("fit als", lambda d: als_workload(d, size["reps"], size["n"]))):
        fns = {}
        for d in devices:
            batched, looped = make(d)
            fns[f"batched ({d.type})"], fns[f"looped ({d.type})"] = batched, looped
        times = perf.compare(fns, device=device, repeats=args.repeats, warmup=1, clock=args.clock)
        for name, t in times.items():
            rows.append({"part": part, "candidate": name, "reps": size["reps"], "n": size["n"],
                         "seconds": perf.median(t), "rounds": t})
        summary[f"{part}: batched speedup over a loop of {size['reps']} ({device.type})"] = perf.ratio(
            times, f"looped ({device.type})", f"batched ({device.type})")
        if device.type != "cpu":
            summary[f"{part}: {device.type} speedup over the CPU (batched)"] = perf.ratio(
                times, "batched (cpu)", f"batched ({device.type})")

    experiments = {"linear, als": dataclasses.replace(BASE, **size["experiment"]),
                   "relu, gradient": dataclasses.replace(BASE, activation="relu", **size["relu"])}
    for name, config in experiments.items():
        for d in devices:
            cfg = dataclasses.replace(config, device=str(d))
            t = perf.time_call(lambda: run_sample_complexity(cfg, progress=False), device=d,
                               clock=args.clock if d.type == device.type else "wall")
            rows.append({"part": "experiment", "candidate": f"{name} ({d.type})", "n_grid": list(cfg.n_grid),
                         "K_grid": list(cfg.K_grid), "reps": cfg.reps, "seconds": t})
            summary[f"experiment {name}: seconds ({d.type})"] = t
        if device.type != "cpu":
            summary[f"experiment {name}: {device.type} speedup over the CPU"] = (
                summary[f"experiment {name}: seconds (cpu)"] / summary[f"experiment {name}: seconds ({device.type})"])

    for k, v in summary.items():
        print(f"{k}: {v:.3f}", flush=True)
    record = perf.make_record("simulation", device, rows, quick=args.quick, command=command, summary=summary,
                              parameters={**{k: v for k, v in size.items()}, "repeats": args.repeats,
                                          "threads": torch.get_num_threads(), "clock": args.clock,
                                          "seconds": round(time.perf_counter() - started, 1)})
    print(f"wrote {perf.write_record(record, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
