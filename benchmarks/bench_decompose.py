"""Decomposing ResNet-50's convs: ``kr_lib.decompose.decompose_conv`` (TensorLy, PyTorch backend) against
TensorLy's NumPy backend on the same kernels, ranks and number of iterations; and peak memory on a large
Conv3d kernel.

Timing. ResNet-50 (torchvision, ``weights=None``, seeded init: nothing is downloaded) has 53 convs but
only ~20 distinct kernel shapes, and the cost of a decomposition depends on the shape alone. By default
each distinct shape up to ``--max-numel`` entries is decomposed once per repeat (``--all`` takes every
conv, every size); the JSON lists the shapes used. Methods: Tucker-2 at half rank (``rank=0.5``) and
CP at rank ``--cp-rank`` (clipped to each kernel's bound), both with ``init="svd"``, ``n_iter_max=--n-iter``
and ``tol=0`` so that both backends run exactly the same number of iterations. The torch time includes
building the block and the error; the NumPy baseline is the bare TensorLy call. Reported: the median over
``--repeats`` of the total time over the shapes, and the ratio NumPy / torch (> 1: torch is faster),
for the CPU and, when CUDA is available, the GPU (with synchronization).

Memory. A (256, 256, 3, 3, 3) Conv3d kernel (6.75 MiB in float32), Tucker-2 at half rank, each measurement
in a fresh process: on the CPU the peak resident set size during the call (Linux ``VmHWM``, reset through
``/proc/self/clear_refs`` just before) minus the resident size just before it, and for NumPy also
``tracemalloc``'s peak; on CUDA ``torch.cuda.max_memory_allocated`` above the memory allocated before.

CPU threads: 1 for both backends unless ``KR_BENCH_THREADS`` says otherwise (set before the libraries load).

    .venv/bin/python benchmarks/bench_decompose.py [--device auto] [--repeats 3] [--max-numel 300000]

Writes ``benchmarks/results/decompose_<device>.json`` (device: cpu or cuda).
"""
from __future__ import annotations

import os

# Both backends get the same number of CPU threads, set before NumPy/OpenBLAS and torch load (default 1:
# on a shared machine thread oversubscription otherwise dominates the timings). KR_BENCH_THREADS=n changes it.
THREADS = os.environ.get("KR_BENCH_THREADS", "1")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import tensorly as tl  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from tensorly.decomposition import parafac, partial_tucker  # noqa: E402

from kr_lib import __version__  # noqa: E402
from kr_lib.decompose import decompose_conv, resolve_ranks  # noqa: E402
from kr_lib.device import resolve_device  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def resnet50_kernels(max_numel: int | None, all_convs: bool, seed: int = 0) -> list[torch.Tensor]:
    """ResNet-50's conv kernels (seeded init): the distinct shapes up to ``max_numel`` entries, or all convs."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None)
    kernels, seen = [], set()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            w = module.weight.detach()
            if not all_convs and (tuple(w.shape) in seen or (max_numel is not None and w.numel() > max_numel)):
                continue
            seen.add(tuple(w.shape))
            kernels.append(w)
    return kernels


def _ranks(shape, method: str, cp_rank: int):
    if method == "tucker2":
        return resolve_ranks(shape, "tucker2", 0.5)
    return (min(cp_rank, resolve_ranks(shape, "cp", 1.0)[0]),)


def time_torch(kernels, method, cp_rank, n_iter, device) -> float:
    start = time.perf_counter()
    for w in kernels:
        conv = torch.nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), bias=False, device=device)
        with torch.no_grad():
            conv.weight.copy_(w)
        decompose_conv(conv, method, _ranks(w.shape, method, cp_rank), n_iter_max=n_iter, tol=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_numpy(kernels, method, cp_rank, n_iter) -> float:
    arrays = [w.cpu().numpy() for w in kernels]
    start = time.perf_counter()
    with tl.backend_context("numpy", local_threadsafe=True), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs")
        for a in arrays:
            r = _ranks(a.shape, method, cp_rank)
            if method == "tucker2":
                partial_tucker(a, rank=list(r), modes=[0, 1], init="svd", n_iter_max=n_iter, tol=0, random_state=0)
            else:
                parafac(a, rank=r[0], init="svd", n_iter_max=n_iter, tol=0, random_state=0)
    return time.perf_counter() - start


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _peak_memory_child(backend: str, svd: str, device: str, shape, n_iter: int, queue) -> None:
    import tracemalloc

    torch.set_num_threads(int(THREADS))
    torch.manual_seed(0)
    w = torch.randn(*shape, device=device)
    ranks = list(resolve_ranks(shape, "tucker2", 0.5))
    out = {"backend": backend, "svd": svd, "device": device}
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


def peak_memory(backend: str, svd: str, device: str, shape, n_iter: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_memory_child, args=(backend, svd, device, shape, n_iter, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (the GPU ratio is measured when CUDA is used)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-numel", type=int, default=300_000, help="largest kernel (entries) to time; default keeps this CPU run short")
    parser.add_argument("--all", action="store_true", help="time every conv of ResNet-50, every size")
    parser.add_argument("--cp-rank", type=int, default=16)
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--memory-shape", type=int, nargs="+", default=[256, 256, 3, 3, 3])
    parser.add_argument("--memory-iter", type=int, default=2, help="iterations for the memory runs (the peak does not grow with them)")
    parser.add_argument("--out", default=None, help="output JSON (default benchmarks/results/decompose_<device>.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(THREADS))
    device = resolve_device(args.device)
    if device.type == "mps":
        device = torch.device("cpu")
    kernels = resnet50_kernels(None if args.all else args.max_numel, args.all)
    record = {
        "benchmark": "decompose", "kr_lib": __version__, "torch": torch.__version__, "tensorly": tl.__version__,
        "device": device.type, "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
        "n_iter": args.n_iter, "tol": 0, "cp_rank": args.cp_rank, "tucker2_rank": 0.5,
        "kernels": [list(k.shape) for k in kernels], "subsampled": not args.all,
        "max_numel": None if args.all else args.max_numel, "timing": {}, "memory": [],
    }
    print(f"{len(kernels)} kernels ({'all convs' if args.all else f'distinct shapes <= {args.max_numel} entries'}), device {device}",
          flush=True)
    devices = [torch.device("cpu")] + ([device] if device.type == "cuda" else [])
    for method in ("tucker2", "cp"):
        time_torch(kernels[:2], method, args.cp_rank, 1, devices[-1])  # warm-up (library loading, CUDA context)
        base = [time_numpy(kernels, method, args.cp_rank, args.n_iter) for _ in range(args.repeats)]
        entry = {"numpy_s": statistics.median(base), "numpy_all_s": base}
        for dev in devices:
            runs = [time_torch(kernels, method, args.cp_rank, args.n_iter, dev) for _ in range(args.repeats)]
            entry[f"torch_{dev.type}_s"] = statistics.median(runs)
            entry[f"torch_{dev.type}_all_s"] = runs
            entry[f"ratio_numpy_over_torch_{dev.type}"] = entry["numpy_s"] / entry[f"torch_{dev.type}_s"]
        record["timing"][method] = entry
        print(method, {k: round(v, 3) for k, v in entry.items() if not k.endswith("all_s")}, flush=True)
    shape = tuple(args.memory_shape)
    record["memory_shape"] = list(shape)
    record["memory_kernel_mib"] = 4 * torch.Size(shape).numel() / 2**20
    runs = [("numpy", "truncated_svd", "cpu"), ("torch", "truncated_svd", "cpu"), ("torch", "randomized_svd", "cpu")]
    if device.type == "cuda":
        runs += [("torch", "truncated_svd", "cuda"), ("torch", "randomized_svd", "cuda")]
    for backend, svd, dev in runs:
        result = peak_memory(backend, svd, dev, shape, args.memory_iter)
        record["memory"].append(result)
        print("memory", {k: (round(v, 1) if isinstance(v, float) else v) for k, v in result.items()}, flush=True)
    out = Path(args.out) if args.out else RESULTS / f"decompose_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
