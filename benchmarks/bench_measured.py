"""Measuring one trained network's redundancy (``kr_lib.measured.measure_record``): now against the measurement
as first built, on the same network, interleaved round by round (``kr_lib.perf.compare``).

The target (the measured-redundancy issue): under 30 s per Fashion-MNIST network on its full test set, and a
peak memory that stays well under 2 GB. The pruning test is what costs: after each block, what follows it runs
on one stacked copy of the block's output per tested rank. Candidates, both at the chapter's parameters
(``kr_lib.measured.cache.DEFAULTS``: spectrum from 2000 training images, accuracies on the whole test split,
Torch-Pruning's channel removal on):

* ``as first built``: every power of two below K *and* K/2, R, R/2 as ranks (8-10 per block), the pruned
  versions concatenated (``torch.cat``), ``batch_size`` inputs per test batch (so ``batch_size x versions``
  stacked inputs after the block), the covariance summed from a channels-last float64 copy;
* ``now``: K halved down to 1 with R and R/2 (``pruning.rank_grid``: about log2 K ranks), the versions written
  into one preallocated tensor, ``batch_size / versions`` inputs per test batch (memory of one unpruned
  batch), the covariance from the activations' own layout, and the pruned passes on a copy of the network
  with its BatchNorms folded into the convs, in the channels-last layout (``measure._pruning_copy``);
* ``now, every core`` (wall clock only, on a machine with more than one core): ``now`` with torch's threads
  set to every core of the machine, as ``kr measure`` runs by default. The target is judged on it: a user
  measures with the whole CPU.

Each candidate's peak resident memory is sampled during its timed calls (``kr_lib.perf.peak_memory``). The
default network is the largest of the committed Fashion-MNIST ones (bottleneck, K/R = 4, R = 16); ``--record``
picks another. The rows also say whether both candidates give the same accuracies at R (they test different
rank grids, so only the ranks both test are compared).

    python benchmarks/bench_measured.py [--quick] [--record results/fashion_mnist/<run_id>.json]
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from kr_lib import perf  # noqa: E402
from kr_lib.measured import measure, pruning, spectrum  # noqa: E402
from kr_lib.measured.cache import DEFAULTS  # noqa: E402

DEFAULT_RECORD = "results/fashion_mnist/bottleneck-kr4-R16-seed2-bd9f40bd90.json"
QUICK_TEST_LIMIT = 1000


# -- the measurement as first built (the baseline) -----------------------------------------------------------------

def first_rank_grid(K: int, R: int) -> list[int]:
    K, R = int(K), int(R)
    grid = {max(K // 2, 1), R, max(R // 2, 1), 1}
    power = 1
    while power < K:
        grid.add(power)
        power *= 2
    return sorted((r for r in grid if r < K), reverse=True) or [K]


def first_project(self, y: torch.Tensor) -> torch.Tensor:
    shape = (1, -1, *([1] * (y.ndim - 2)))
    mu = self.mean.view(shape)
    z = torch.movedim(y - mu, 1, -1) @ self.directions
    outs = [torch.movedim(z[..., :r] @ self.directions[:, :r].T, -1, 1) + mu for r in self.ranks]
    outs += [y * mask.view(shape) for mask in self.masks]
    return torch.cat(outs, dim=0)


def first_update(self, a: torch.Tensor) -> None:
    x = a.detach().movedim(1, -1).reshape(-1, self.K).to(dtype=torch.float64)
    if self._shift is None:
        self._shift = x.mean(dim=0)
        self._sum = torch.zeros(self.K, dtype=torch.float64)
        self._outer = torch.zeros(self.K, self.K, dtype=torch.float64)
    x = x - self._shift
    self._sum += x.sum(dim=0)
    self._outer += x.T @ x
    self.count += x.shape[0]


def first_accuracies(model, split, batch_size, device, layout=None, hook_module=None, projection=None):
    G = projection.versions if projection is not None else 1
    correct = torch.zeros(G, dtype=torch.long, device=device)
    handle = hook_module.register_forward_hook(projection) if projection is not None else None
    try:
        for x, y in measure._batches(split, batch_size, device):  # batch_size inputs, G x batch_size after the block
            logits = model(x)
            correct += (logits.argmax(dim=1).view(G, -1) == y.view(1, -1)).sum(dim=1)
    finally:
        if handle is not None:
            handle.remove()
    return correct.cpu().numpy() / len(split)


@contextlib.contextmanager
def as_first_built():
    saved = (pruning.rank_grid, pruning.PrunedOutputs.project, spectrum.StreamingCovariance.update, measure._accuracies,
             measure._pruning_copy)
    pruning.rank_grid, pruning.PrunedOutputs.project = first_rank_grid, first_project
    spectrum.StreamingCovariance.update, measure._accuracies = first_update, first_accuracies
    measure._pruning_copy = lambda model, layout: model  # the pruned passes on the model itself, as trained
    try:
        yield
    finally:
        (pruning.rank_grid, pruning.PrunedOutputs.project, spectrum.StreamingCovariance.update,
         measure._accuracies, measure._pruning_copy) = saved


@contextlib.contextmanager
def threads(n: int | None):
    """torch's thread count set to ``n`` for the call (None: unchanged)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], repeats=2, quick_repeats=1)
    p.add_argument("--record", default=DEFAULT_RECORD, help=f"the network to measure (default {DEFAULT_RECORD})")
    args = p.parse_args()
    device, out, command = _common.setup(args, "measured")
    record = Path(args.record)
    if not record.is_absolute():
        record = _common.REPO_ROOT / record
    params = {k: DEFAULTS[k] for k in ("fit_limit", "test_limit", "batch_size", "channel_removal", "threshold")}
    if args.quick:
        params["test_limit"] = QUICK_TEST_LIMIT
    tables, peaks = {}, {"as first built": 0, "now": 0}
    cores = os.cpu_count() or 1
    if args.clock == "wall" and cores > 1 and torch.get_num_threads() < cores and device.type == "cpu":
        peaks["now, every core"] = 0

    def run(name):
        def call():
            with as_first_built() if name == "as first built" else contextlib.nullcontext(), \
                    threads(cores if name == "now, every core" else None):
                table, peak = perf.peak_memory(lambda: measure.measure_record(record, device=device, progress=False,
                                                                              **params), device=device)
            tables[name], peaks[name] = table, max(peaks[name], peak)
        return call

    measure.measure_record(record, device=device, progress=False, **{**params, "test_limit": 64})  # data loaded, warm
    times = perf.compare({name: run(name) for name in peaks}, device=device, repeats=args.repeats, warmup=0,
                         clock=args.clock)
    rows = []
    for name in peaks:
        t = tables[name]
        rows.append({"candidate": name, "record": record.stem, "seconds": perf.median(times[name]),
                     "rounds": times[name], "peak_memory_mb": peaks[name] / 2**20,
                     "ranks_per_block": [len(r) for r in t["ranks"]], "blocks": len(t),
                     "test_samples": t.attrs.get("test_split"), "fit_samples": t.attrs.get("fit_split")})
    before, now = tables["as first built"], tables["now"]
    same_at_R = all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(before["accuracy at R"], now["accuracy at R"]))
    summary = {"speedup (as first built / now)": perf.ratio(times, "as first built", "now"),
               "seconds per network now": perf.median(times["now"]),
               "seconds per network as first built": perf.median(times["as first built"]),
               "peak memory MB now": peaks["now"] / 2**20, "peak memory MB as first built": peaks["as first built"] / 2**20,
               "same accuracy at R (both test r = R)": same_at_R, "clock": args.clock}
    best = "now, every core" if "now, every core" in times else "now"
    if best != "now":
        summary[f"seconds per network now, {cores} threads"] = perf.median(times[best])
        summary["same accuracy at R on every core"] = all(
            math.isclose(a, b, abs_tol=1e-4) for a, b in zip(tables[best]["accuracy at R"], now["accuracy at R"]))
    summary[f"target: under 30 s per Fashion-MNIST network on its full test set ({best})"] = perf.median(times[best]) < 30
    rec = perf.make_record("measured", device, rows, quick=args.quick, command=command,
                           parameters={**params, "record": str(record.relative_to(_common.REPO_ROOT))
                                       if record.is_relative_to(_common.REPO_ROOT) else record.name,
                                       "repeats": args.repeats, "threads": torch.get_num_threads()},
                           summary=summary)
    perf.write_record(rec, out)
    for k, v in summary.items():
        print(f"{k}: {v}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
