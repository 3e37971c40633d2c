"""Decomposing ResNet-50's convs: ``kr_lib.decompose.decompose_conv`` (TensorLy on its PyTorch backend)
against TensorLy on its NumPy backend, same kernels, ranks and iterations; and the peak memory of
decomposing a large Conv3d kernel.

Timing. ResNet-50 (torchvision, ``weights=None``, seeded init: nothing is downloaded) has 53 convs but
only 20 distinct kernel shapes, and a decomposition's cost depends on the shape alone. Each distinct
shape up to ``--max-numel`` entries is timed (default 300,000, which keeps 13 of the 20 shapes and this
run under 3 minutes on a 2-core CPU; ``--quick``: 40,000, 6 shapes; ``--max-numel 0``: every shape).
Methods: Tucker-2 at half rank (``rank=0.5``: R = K/2, R_in = P/2) and CP at rank ``--cp-rank``
(clipped to each kernel's CP rank bound), both ``init="svd"``, ``n_iter_max=--n-iter`` and ``tol=0``, so
both backends run exactly the same iterations. The torch candidate is the whole ``decompose_conv`` (it
also builds the block and computes the error); the NumPy baseline is the bare TensorLy call. Candidates
are interleaved round by round (``kr_lib.perf.compare``); each row is one kernel with the median per
candidate and ``ratio = numpy / torch`` (> 1: torch is faster); the summary has the ratio of the summed
medians per method. On CUDA the torch candidate also runs on the GPU (wall clock, synchronized).

Memory. A (256, 256, 3, 3, 3) Conv3d kernel (6.75 MiB in float32), Tucker-2 at half rank, each
measurement in a fresh process: on the CPU the peak resident set size during the call (Linux ``VmHWM``,
reset through ``/proc/self/clear_refs`` just before) minus the resident size just before it (for NumPy
also ``tracemalloc``'s peak); on CUDA ``torch.cuda.max_memory_allocated`` above what was allocated before.
TensorLy's ``truncated_svd`` (economy SVD of each unfolding) and ``randomized_svd`` are both measured.

CPU threads: one for torch (``--threads``) and one for NumPy's OpenBLAS unless ``OPENBLAS_NUM_THREADS``
is set (it must be set before NumPy loads, hence an environment variable).

    python benchmarks/bench_decompose.py [--device cpu|cuda] [--quick] [--repeats 3]
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads
os.environ.setdefault("OMP_NUM_THREADS", "1")

import multiprocessing as mp  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import tensorly as tl  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from tensorly.decomposition import parafac, partial_tucker  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from kr_lib.decompose import decompose_conv, resolve_ranks  # noqa: E402
from kr_lib.perf import compare, make_record, median, write_record  # noqa: E402


def resnet50_kernels(max_numel: int | None, seed: int = 0) -> list[torch.Tensor]:
    """One kernel of each distinct ResNet-50 conv shape (seeded init), up to ``max_numel`` entries."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None)
    kernels, seen = [], set()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            w = module.weight.detach()
            if tuple(w.shape) in seen or (max_numel and w.numel() > max_numel):
                continue
            seen.add(tuple(w.shape))
            kernels.append(w)
    return kernels


def _ranks(shape, method: str, cp_rank: int) -> tuple[int, ...]:
    if method == "tucker2":
        return resolve_ranks(shape, "tucker2", 0.5)
    return (min(cp_rank, resolve_ranks(shape, "cp", 1.0)[0]),)


def torch_candidate(w: torch.Tensor, method: str, ranks, n_iter: int, device: torch.device):
    conv = torch.nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), bias=False, device=device)
    with torch.no_grad():
        conv.weight.copy_(w)
    return lambda: decompose_conv(conv, method, ranks, n_iter_max=n_iter, tol=0)


def numpy_candidate(w: torch.Tensor, method: str, ranks, n_iter: int):
    a = w.cpu().numpy()

    def run():
        with tl.backend_context("numpy", local_threadsafe=True), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs")
            if method == "tucker2":
                return partial_tucker(a, rank=list(ranks), modes=[0, 1], init="svd", n_iter_max=n_iter, tol=0,
                                      random_state=0)
            return parafac(a, rank=ranks[0], init="svd", n_iter_max=n_iter, tol=0, random_state=0)

    return run


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _peak_memory_child(backend: str, svd: str, device: str, shape, n_iter: int, threads: int, queue) -> None:
    import tracemalloc

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    w = torch.randn(*shape, device=device)
    ranks = list(resolve_ranks(shape, "tucker2", 0.5))
    out = {"kind": "memory", "backend": backend, "svd": svd, "device": device, "shape": "x".join(map(str, shape))}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    rss0 = _status_kib("VmRSS")
    if backend == "numpy":
        a = w.cpu().numpy()
        tracemalloc.start()
        with tl.backend_context("numpy", local_threadsafe=True):
            partial_tucker(a, rank=ranks, modes=[0, 1], init="svd", svd=svd, n_iter_max=n_iter, tol=0, random_state=0)
        out["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    else:
        conv = torch.nn.Conv3d(shape[1], shape[0], tuple(shape[2:]), bias=False, device=device)
        with torch.no_grad():
            conv.weight.copy_(w)
        decompose_conv(conv, "tucker2", tuple(ranks), n_iter_max=n_iter, tol=0, svd=svd)
    out["rss_peak_increase_mib"] = (_status_kib("VmHWM") - rss0) / 1024
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        out["cuda_peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    queue.put(out)


def peak_memory_fresh(backend: str, svd: str, device: str, shape, n_iter: int, threads: int) -> dict:
    """One memory measurement in a fresh (spawned) process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_memory_child, args=(backend, svd, device, shape, n_iter, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv=None) -> int:
    p = _common.parser(__doc__.split("\n\n")[0], repeats=3, quick_repeats=3)
    p.add_argument("--max-numel", type=int, default=None,
                   help="largest kernel (entries) timed; default 300000 (40000 with --quick); 0: all shapes")
    p.add_argument("--cp-rank", type=int, default=16)
    p.add_argument("--n-iter", type=int, default=10)
    p.add_argument("--memory-shape", type=int, nargs="+", default=[256, 256, 3, 3, 3])
    p.add_argument("--memory-iter", type=int, default=2, help="iterations of the memory runs (the peak does not grow with them)")
    args = p.parse_args(argv)
    device, out, command = _common.setup(args, "decompose")
    if args.max_numel is None:
        args.max_numel = 40_000 if args.quick else 300_000
    kernels = resnet50_kernels(args.max_numel)
    devices = [torch.device("cpu")] + ([device] if device.type == "cuda" else [])
    print(f"{len(kernels)} distinct ResNet-50 kernel shapes (<= {args.max_numel or 'any'} entries); "
          f"torch on {', '.join(map(str, devices))}; {args.repeats} rounds; clock {args.clock}", flush=True)
    rows = []
    for method in ("tucker2", "cp"):
        for w in kernels:
            ranks = _ranks(w.shape, method, args.cp_rank)
            fns = {"numpy": numpy_candidate(w, method, ranks, args.n_iter)}
            for dev in devices:
                fns[f"torch_{dev.type}"] = torch_candidate(w.to(dev), method, ranks, args.n_iter, dev)
            clock = args.clock if device.type == "cpu" else "wall"
            times = compare(fns, device=devices[-1], repeats=args.repeats, warmup=1, clock=clock)
            row = {"kind": "time", "method": method, "shape": "x".join(map(str, w.shape)), "ranks": list(ranks),
                   "numpy_s": median(times["numpy"])}
            for dev in devices:
                row[f"torch_{dev.type}_s"] = median(times[f"torch_{dev.type}"])
                row[f"ratio_numpy_over_torch_{dev.type}"] = row["numpy_s"] / row[f"torch_{dev.type}_s"]
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    summary = {}
    for method in ("tucker2", "cp"):
        mrows = [r for r in rows if r.get("method") == method]
        total_numpy = sum(r["numpy_s"] for r in mrows)
        summary[f"{method}_numpy_total_s"] = total_numpy
        for dev in devices:
            total = sum(r[f"torch_{dev.type}_s"] for r in mrows)
            summary[f"{method}_torch_{dev.type}_total_s"] = total
            summary[f"{method}_ratio_numpy_over_torch_{dev.type}"] = total_numpy / total
    shape = tuple(args.memory_shape)
    runs = [("numpy", "truncated_svd", "cpu"), ("torch", "truncated_svd", "cpu"), ("torch", "randomized_svd", "cpu")]
    if device.type == "cuda":
        runs += [("torch", "truncated_svd", str(device)), ("torch", "randomized_svd", str(device))]
    for backend, svd, dev in runs:
        result = peak_memory_fresh(backend, svd, dev, shape, args.memory_iter, args.threads or 1)
        rows.append(result)
        print({k: (round(v, 1) if isinstance(v, float) else v) for k, v in result.items()}, flush=True)
    summary["memory_kernel_mib"] = 4 * torch.Size(shape).numel() / 2**20
    parameters = {"max_numel": args.max_numel, "kernels": len(kernels), "cp_rank": args.cp_rank, "tucker2_rank": 0.5,
                  "n_iter": args.n_iter, "tol": 0, "repeats": args.repeats, "clock": args.clock,
                  "threads": args.threads, "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                  "memory_shape": list(shape), "memory_iter": args.memory_iter, "tensorly": tl.__version__}
    record = make_record("decompose", device.type, rows, quick=args.quick, command=command, parameters=parameters,
                         summary=summary)
    write_record(record, out)
    print({k: round(v, 3) for k, v in summary.items()})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
