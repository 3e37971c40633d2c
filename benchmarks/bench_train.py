"""The training loop (kr_lib.train.train) against a plain hand-written PyTorch loop, and the epoch time of
each block design.

1. Throughput on Fashion-MNIST. One timing group, interleaved round by round (``kr_lib.perf.compare``):

   * ``plain loop``: the loop anyone would write -- normalized float tensors made once, a shuffled
     index permutation, ``model(x[idx])``, cross-entropy, ``zero_grad``/``backward``/``step`` (SGD,
     Nesterov momentum, weight decay, cosine schedule), then one evaluation pass over the test split;
   * ``kr_lib.train``: one ``train(...)`` call of one epoch on the same model (a copy of the same
     initial weights), data and batch size -- everything included: moving data to the device, uint8 ->
     normalized floats per batch, the tqdm progress bar with live loss/accuracy, the evaluation pass;
   * ``data only``: the loop's data path alone (shuffled index batches + ``prepare_batch``), to show
     that loading is not the bottleneck.

   ``throughput_ratio = t_plain / t_kr`` (target >= 0.95) and ``data_share = t_data / t_kr``.

2. Epoch time of every block design (2D on a Fashion-MNIST subset, 3D on a moving Fashion-MNIST subset),
   all at one small width (first-stage K = 16, K/R = 2 so R = 8; ``dense`` has R = K = 16), one
   ``train`` call of one epoch each, interleaved; the full-epoch time is extrapolated linearly to the
   whole training set (60000 images / 10000 clips).

    python benchmarks/bench_train.py [--device cpu|cuda] [--quick]
"""
from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from kr_lib import perf  # noqa: E402
from kr_lib.data import load_splits, prepare_batch  # noqa: E402
from kr_lib.data.augment import normalize  # noqa: E402
from kr_lib.models import build_model  # noqa: E402
from kr_lib.train import train  # noqa: E402

SIZES = {  # samples per epoch: (throughput train, throughput test, 2D designs, 3D designs)
    "quick": dict(train=2048, test=256, designs_2d=1024, designs_3d=64, batch=128),
    "full": dict(train=8192, test=1024, designs_2d=4096, designs_3d=384, batch=128),
}
FULL_SETS = {"fashion_mnist": 60000, "moving_fashion_mnist": 10000}
DESIGNS_2D = ("dense", "bottleneck", "resnext", "inverted_residual", "separable")
DESIGNS_3D = ("dense", "r2plus1d", "bottleneck", "resnext", "inverted_residual", "separable")
K0, KR = 16, 2


def plain_loop(model, train_x, train_y, test_x, test_y, batch_size, lr, weight_decay, momentum, seed):
    """One epoch of a hand-written loop on pre-normalized float tensors, then one test pass."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    n = train_x.shape[0]
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=math.ceil(n / batch_size))
    model.train()
    order = torch.randperm(n, generator=g).to(train_x.device)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, test_x.shape[0], 2 * batch_size):
            correct += (model(test_x[start:start + 2 * batch_size]).argmax(1) == test_y[start:start + 2 * batch_size]).sum()
    return int(correct) / test_x.shape[0]


def data_only(split, batch_size, seed):
    g, aug = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    order = torch.randperm(len(split), generator=g).to(split.x.device)
    total = 0.0
    for start in range(0, len(split), batch_size):
        idx = order[start:start + batch_size]
        total += float(prepare_batch(split.x[idx], split.info, train=True, generator=aug)[0, 0, 0, 0])
    return total


def throughput(device, size, repeats, clock) -> tuple[dict, list[dict]]:
    train_split, test_split = load_splits("fashion_mnist", train_limit=size["train"], test_limit=size["test"])
    train_split, test_split = train_split.to(device), test_split.to(device)
    info = train_split.info
    norm = lambda x: normalize(x.float() / 255, info.mean, info.std)  # noqa: E731
    tx, ty, vx, vy = norm(train_split.x), train_split.y, norm(test_split.x), test_split.y
    torch.manual_seed(0)
    model0 = build_model(info, "bottleneck", KR, K=K0).to(device)
    models = {"plain": copy.deepcopy(model0), "kr": copy.deepcopy(model0)}
    lr, wd, mom, bs = 0.1, 5e-4, 0.9, size["batch"]
    fns = {
        "plain loop": lambda: plain_loop(models["plain"], tx, ty, vx, vy, bs, lr, wd, mom, 0),
        "kr_lib.train": lambda: train(models["kr"], (train_split, test_split), epochs=1, batch_size=bs, lr=lr,
                                      weight_decay=wd, momentum=mom, seed=0, device=device, progress=True,
                                      augment=False),
        "data only": lambda: data_only(train_split, bs, 0),
    }
    times = perf.compare(fns, device=device, repeats=repeats, warmup=1, clock=clock)
    t_plain, t_kr, t_data = (perf.median(times[k]) for k in ("plain loop", "kr_lib.train", "data only"))
    rows = [{"part": "throughput", "candidate": name, "dataset": "fashion_mnist", "design": "bottleneck",
             "K": K0, "R": K0 // KR, "batch": bs, "train_samples": size["train"], "test_samples": size["test"],
             "seconds": perf.median(times[name]), "rounds": times[name],
             "train_samples_per_s": size["train"] / perf.median(times[name])} for name in fns]
    summary = {"throughput_ratio (plain / kr_lib.train, target >= 0.95)": t_plain / t_kr,
               "data_share (data path / kr_lib.train epoch)": t_data / t_kr}
    return summary, rows


def design_times(device, size, repeats, clock) -> tuple[dict, list[dict]]:
    rows, summary = [], {}
    for name, designs, n in (("fashion_mnist", DESIGNS_2D, size["designs_2d"]),
                             ("moving_fashion_mnist", DESIGNS_3D, size["designs_3d"])):
        tr, te = load_splits(name, train_limit=n, test_limit=32)
        tr, te = tr.to(device), te.to(device)
        models = {}
        for d in designs:
            torch.manual_seed(0)
            models[d] = build_model(tr.info, d, 1 if d == "dense" else KR, K=K0).to(device)
        fns = {d: (lambda m=m: train(m, (tr, te), epochs=1, batch_size=size["batch"], seed=0, device=device,
                                     progress=False, augment=False)) for d, m in models.items()}
        times = perf.compare(fns, device=device, repeats=repeats, warmup=1, clock=clock)
        t_dense = perf.median(times["dense"])
        for d, m in models.items():
            t = perf.median(times[d])
            rows.append({"part": "design epoch", "dataset": name, "dim": tr.info.dim, "design": d,
                         "K": m.spec["K"], "R": m.spec["R"], "K/R": m.spec["kr_ratio"],
                         "parameters": m.spec["parameters"], "input_shape": "x".join(map(str, tr.info.input_shape)),
                         "subset_samples": n, "batch": size["batch"], "seconds": t, "rounds": times[d],
                         "samples_per_s": n / t, "relative_to_dense": t / t_dense,
                         "full_epoch_seconds_extrapolated": t * FULL_SETS[name] / n})
            summary[f"{name} {d}: full-epoch seconds (extrapolated from {n})"] = t * FULL_SETS[name] / n
    return summary, rows


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0], repeats=5, quick_repeats=3).parse_args(argv)
    device, out, command = _common.setup(args, "train")
    size = SIZES["quick" if args.quick else "full"]
    started = time.perf_counter()
    summary, rows = throughput(device, size, args.repeats, args.clock)
    for k, v in summary.items():
        print(f"{k}: {v:.3f}", flush=True)
    design_summary, design_rows = design_times(device, size, max(1, args.repeats // 2), args.clock)
    for r in design_rows:
        print(f"{r['dataset']:>21} {r['design']:>18}: {r['seconds']:.2f} s per {r['subset_samples']} samples "
              f"({r['samples_per_s']:.0f}/s, x{r['relative_to_dense']:.2f} of dense), full epoch ~"
              f"{r['full_epoch_seconds_extrapolated']:.0f} s", flush=True)
    record = perf.make_record("train", device, rows + design_rows, quick=args.quick, command=command,
                              summary={**summary, **design_summary},
                              parameters={**size, "K0": K0, "kr_ratio": KR, "repeats": args.repeats,
                                          "threads": torch.get_num_threads(), "clock": args.clock,
                                          "seconds": round(time.perf_counter() - started, 1)})
    print(f"wrote {perf.write_record(record, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
