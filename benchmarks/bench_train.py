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

3. How far from the hardware limit training runs: for each design of the Fashion-MNIST book preset
   (``sweeps/fashion_mnist.yaml --preset book``, the fixed-R grid at K/R = 1, R = 16, and the dense
   network), the FLOPs of one training step (forward, loss and backward counted by
   ``torch.utils.flop_counter.FlopCounterMode``: 2 per multiply-accumulate) over its measured time (batch
   preparation with augmentation, forward, backward, SGD step) is the achieved FLOP rate, reported as a
   fraction of the machine's peak: a large float32 matmul (``2 n^3`` FLOPs) timed in the same run with the
   same threads. Tried against the eager step, interleaved: ``torch.compile`` of the network (its first
   call, the compilation, timed apart by the wall clock) and, on CUDA only, channels-last memory format
   (on the CPU a oneDNN bug corrupts memory in channels-last 1x1 stride-2 convolution backward with fewer
   than 8 input channels on AVX2 machines: never enabled there). Evaluation: ``kr_lib.train.evaluate``
   samples per second at the batch ``train`` uses (twice the training batch) and at larger ones.

    python benchmarks/bench_train.py [--device cpu|cuda] [--quick] [--no-compile] [--only peak]
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
from kr_lib.runs.parameters import build_network  # noqa: E402
from kr_lib.runs.sweepfile import load_sweep  # noqa: E402
from kr_lib.train import evaluate, train  # noqa: E402

SIZES = {  # samples per epoch: (throughput train, throughput test, 2D designs, 3D designs)
    "quick": dict(train=2048, test=256, designs_2d=1024, designs_3d=64, batch=128, peak_steps=8, eval=1024,
                  compile_all=False),
    "full": dict(train=8192, test=1024, designs_2d=4096, designs_3d=384, batch=128, peak_steps=24, eval=10000,
                 compile_all=True),
}
MATMUL_N = 2048   # peak: a (2048 x 2048) @ (2048 x 2048) float32 product, 17.2 GFLOP
EVAL_BATCHES = (256, 1024, 4096)
COMPILE_QUICK = ("bottleneck",)  # --quick compiles one network: a compilation takes minutes on a small CPU
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


def matmul_peak(device, clock, repeats) -> float:
    """FLOP/s of a large float32 matmul (``2 n^3`` FLOPs per product) on ``device``: the machine's peak."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(MATMUL_N, MATMUL_N, generator=g).to(device) for _ in range(2))
    times = perf.compare({"matmul": lambda: a @ b}, device=device, repeats=max(3, repeats), warmup=1, clock=clock)
    return 2 * MATMUL_N ** 3 / min(times["matmul"])  # the best round: a peak


def book_preset_networks() -> dict:
    """Design -> checked parameters of the book preset's network at K/R = 1, R = 16 (dense: its one network)."""
    sweep = load_sweep(_common.REPO_ROOT / "sweeps" / "fashion_mnist.yaml", "book")
    chosen = {}
    for p in sweep.runs:
        if p["R"] == 16 and p["kr_ratio"] == "1" and p["param_budget"] is None:
            chosen.setdefault(p["design"], p)
    return chosen


def step_flops(model, x, y) -> int:
    """FLOPs of one training step (forward, cross-entropy, backward) on the batch ``x``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def training_steps(model, split, batch, steps, seed, memory_format=torch.contiguous_format):
    """``steps`` training steps as ``kr_lib.train.train_epoch`` takes them (augmented batch preparation,
    forward, loss, backward, SGD with Nesterov momentum) on random index batches, in float32 (no autocast:
    the peak it is compared with is float32's), the batch in ``memory_format``."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)

    def run():
        model.train()
        for _ in range(steps):
            idx = torch.randint(len(split), (batch,), generator=g).to(split.x.device)
            x = prepare_batch(split.x[idx], split.info, train=True, generator=g).contiguous(memory_format=memory_format)
            loss = F.cross_entropy(model(x), split.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return run


def peak_fraction(device, size, repeats, clock, try_compile) -> tuple[dict, list[dict]]:
    peak = matmul_peak(device, clock, repeats)
    print(f"peak: {peak / 1e9:.1f} GFLOP/s (float32 {MATMUL_N}^3 matmul, {torch.get_num_threads()} thread(s))",
          flush=True)
    tr, te = load_splits("fashion_mnist", train_limit=4096, test_limit=size["eval"])
    tr, te = tr.to(device), te.to(device)
    batch, steps = size["batch"], size["peak_steps"]
    rows, summary = [], {"peak GFLOP/s (float32 matmul)": peak / 1e9}
    for design, p in book_preset_networks().items():
        torch.manual_seed(0)
        base = build_network(p, tr.info).to(device)
        x = prepare_batch(tr.x[:batch], tr.info, train=True, generator=torch.Generator().manual_seed(0))
        flops = step_flops(copy.deepcopy(base), x, tr.y[:batch])
        variants = {"eager": copy.deepcopy(base)}
        if device.type == "cuda":  # never on the CPU: see the module docstring
            variants["channels-last"] = copy.deepcopy(base).to(memory_format=torch.channels_last)
        compile_s = {}
        if try_compile and (size["compile_all"] or design in COMPILE_QUICK):
            variants["torch.compile"] = torch.compile(copy.deepcopy(base))
        fns = {name: training_steps(m, tr, batch, steps, 0, torch.channels_last if name == "channels-last"
                                    else torch.contiguous_format) for name, m in variants.items()}
        for name in variants:
            if name == "torch.compile":  # the compilation: the first calls (train mode), by the wall clock
                t0 = time.perf_counter()
                training_steps(variants[name], tr, batch, 2, 1)()
                perf.synchronize(device)
                compile_s[name] = time.perf_counter() - t0
        times = perf.compare(fns, device=device, repeats=repeats, warmup=1, clock=clock)
        t_eager = perf.median(times["eager"])
        for name in variants:
            t = perf.median(times[name])
            rate = flops * steps / t
            rows.append({"part": "peak fraction", "dataset": "fashion_mnist", "design": design, "candidate": name,
                         "K": base.spec["K"], "R": base.spec["R"], "parameters": base.spec["parameters"],
                         "batch": batch, "steps": steps, "step_flops": flops, "seconds": t, "rounds": times[name],
                         "samples_per_s": batch * steps / t, "gflops_per_s": rate / 1e9,
                         "fraction_of_peak": rate / peak, "speedup_vs_eager": t_eager / t,
                         "compile_seconds": compile_s.get(name)})
            summary[f"{design} {name}: fraction of peak"] = rate / peak
            if name != "eager":
                summary[f"{design} {name}: speedup of a step vs eager"] = t_eager / t
        # evaluation: the batch train() uses (2 x 128) against larger ones, on the test split
        model = variants["eager"]
        evals = {f"eval batch {b}": (lambda b=b: evaluate(model, te, batch_size=b, device=device))
                 for b in EVAL_BATCHES}
        etimes = perf.compare(evals, device=device, repeats=max(1, repeats // 2), warmup=1, clock=clock)
        t_ref = perf.median(etimes[f"eval batch {EVAL_BATCHES[0]}"])
        for b in EVAL_BATCHES:
            t = perf.median(etimes[f"eval batch {b}"])
            rows.append({"part": "evaluation batch", "dataset": "fashion_mnist", "design": design,
                         "candidate": f"eval batch {b}", "batch": b, "samples": len(te), "seconds": t,
                         "rounds": etimes[f"eval batch {b}"], "samples_per_s": len(te) / t,
                         "speedup_vs_eager": t_ref / t})
        summary[f"{design} evaluation: speedup of batch {EVAL_BATCHES[-1]} vs {EVAL_BATCHES[0]}"] = (
            t_ref / perf.median(etimes[f"eval batch {EVAL_BATCHES[-1]}"]))
    return summary, rows


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0], repeats=5, quick_repeats=3)
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out of part 3")
    p.add_argument("--only", choices=("throughput", "designs", "peak"), nargs="+", default=None,
                   help="run only these parts (default: all three)")
    args = p.parse_args(argv)
    device, out, command = _common.setup(args, "train")
    size = SIZES["quick" if args.quick else "full"]
    parts = set(args.only or ("throughput", "designs", "peak"))
    started = time.perf_counter()
    summary, rows = throughput(device, size, args.repeats, args.clock) if "throughput" in parts else ({}, [])
    for k, v in summary.items():
        print(f"{k}: {v:.3f}", flush=True)
    design_summary, design_rows = ({}, [])
    if "designs" in parts:
        design_summary, design_rows = design_times(device, size, max(1, args.repeats // 2), args.clock)
    for r in design_rows:
        print(f"{r['dataset']:>21} {r['design']:>18}: {r['seconds']:.2f} s per {r['subset_samples']} samples "
              f"({r['samples_per_s']:.0f}/s, x{r['relative_to_dense']:.2f} of dense), full epoch ~"
              f"{r['full_epoch_seconds_extrapolated']:.0f} s", flush=True)
    peak_summary, peak_rows = ({}, [])
    if "peak" in parts:
        peak_summary, peak_rows = peak_fraction(device, size, args.repeats, args.clock, not args.no_compile)
    for r in peak_rows:
        if r["part"] == "peak fraction":
            print(f"{r['design']:>18} {r['candidate']:>14}: {r['samples_per_s']:.0f} samples/s, "
                  f"{r['gflops_per_s']:.2f} GFLOP/s = {100 * r['fraction_of_peak']:.1f} % of peak, "
                  f"x{r['speedup_vs_eager']:.2f} of eager"
                  + (f" (compiled in {r['compile_seconds']:.0f} s)" if r["compile_seconds"] else ""), flush=True)
        else:
            print(f"{r['design']:>18} {r['candidate']:>14}: {r['samples_per_s']:.0f} samples/s, "
                  f"x{r['speedup_vs_eager']:.2f} of batch {EVAL_BATCHES[0]}", flush=True)
    record = perf.make_record("train", device, rows + design_rows + peak_rows, quick=args.quick, command=command,
                              summary={**summary, **design_summary, **peak_summary},
                              parameters={**size, "K0": K0, "kr_ratio": KR, "repeats": args.repeats,
                                          "parts": sorted(parts), "matmul_n": MATMUL_N,
                                          "threads": torch.get_num_threads(), "clock": args.clock,
                                          "seconds": round(time.perf_counter() - started, 1)})
    print(f"wrote {perf.write_record(record, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
