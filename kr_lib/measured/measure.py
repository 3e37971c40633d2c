"""Measured redundancy of a trained network's blocks: spectrum, effective dimension, pruning test.

    table = measure_redundancy(model, (train, test))          # one row per block (kr_lib.redundancy.find_blocks)
    table = measure_record("results/fashion_mnist/<run_id>.json")  # its saved weights and its dataset
    table = measure_records("results/fashion_mnist")          # every record with weights there

For every block (book section 4, :ref:`sec-kr`) two activations are taken with forward hooks on real inputs:

* the **output**: the block's K channels as the next layer receives them (after the shortcut and the output
  activation: the block module's own output);
* the **projection**: the output of the block's closing conv (its last pointwise K x R projection, before
  its BatchNorm), the in-block control: rank at most R by construction, whatever the activations.

Each is centred over samples and positions and summed into a K x K covariance in one streaming pass over
the *training* split (``kr_lib.measured.spectrum``). The pruning test (``kr_lib.measured.pruning``) uses the
output's mean and principal directions from that pass and measures accuracy on the *test* split. Everything
runs in float32 on the model's device (TF32 off on CUDA, no autocast); the sums are float64.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..progress import progress_bar
from . import pruning, spectrum

__all__ = ["measure_redundancy", "measure_record", "measure_records", "records_with_weights", "check_record", "linear_control", "COLUMNS",
           "SUMMARY_COLUMNS", "DROP_THRESHOLD"]

#: Points of test accuracy: a block carries redundancy at level r when pruning it to r directions costs less.
DROP_THRESHOLD = 0.5

#: Scalar columns of :func:`measure_redundancy`, in order (the list-valued ones follow them).
COLUMNS = ["block", "design", "K", "R", "K/R", "P", "vectors", "effective rank", "components 99%",
           "components 99.9%", "stable rank", "numerical rank", "projection numerical rank",
           "projection effective rank", "kernel effective rank", "kernel stable rank", "accuracy",
           "r at R", "accuracy at R", "r at R/2", "accuracy at R/2", "accuracy at K/2", "drop at R", "drop at R/2",
           "drop at K/2", "pruned dimension", "magnitude pruning accuracy at R", "magnitude pruning accuracy at R/2",
           "closing conv"]
LIST_COLUMNS = ["eigenvalues", "projection eigenvalues", "kernel singular values", "ranks", "pruned accuracy"]

#: What ``kr measure`` prints.
SUMMARY_COLUMNS = ["block", "K", "R", "K/R", "effective rank", "components 99%", "accuracy", "accuracy at R",
                   "accuracy at R/2", "pruned dimension"]


def _splits(data, prune: bool):
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"data must be one split or a (train, test) pair, got {len(data)} items")
        return data[0], data[1]
    if prune:
        raise ValueError("the pruning test needs (train, test): directions from the first, accuracy on the second; "
                         "pass both or prune=False")
    return data, None


def _device_of(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _float32(device: torch.device):
    """No TF32 on CUDA: the rank controls need float32's rounding, not TF32's 1e-3."""
    if device.type == "cuda":
        return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False)
    return contextlib.nullcontext()


def _layout(dim: int, channels_last: bool) -> torch.memory_format:
    """The memory layout the measurement runs in: channels-last (``kr_lib.fastpath.channels_last_format``) when
    asked and the data has one (2D, 3D), else contiguous. Inference only: on the CPU oneDNN's channels-last
    forward pass gives the contiguous one's outputs up to rounding (``kr_lib.fastpath``) and is faster on the
    book's networks (``benchmarks/bench_measured.py``); its *backward* pass is what is unsafe on AVX2 machines."""
    from ..fastpath import channels_last_format

    fmt = channels_last_format(dim) if channels_last else None
    return fmt or torch.contiguous_format


def _pruning_copy(model: torch.nn.Module, layout: torch.memory_format) -> torch.nn.Module:
    """A copy of ``model`` for the pruning test's passes: every BatchNorm that follows a conv in an
    ``nn.Sequential`` folded into it (``torch.nn.utils.fusion.fuse_conv_bn_eval``: the same affine map, one
    pass over the activations fewer) and in ``layout``. Module paths are kept, so a block's hook goes on the
    same path; the block outputs differ from the model's only by float rounding."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fast = copy.deepcopy(model).eval()
    for seq in [m for m in fast.modules() if isinstance(m, torch.nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, torch.nn.modules.conv._ConvNd) and isinstance(bn, torch.nn.modules.batchnorm._BatchNorm) \
                    and bn.track_running_stats and bn.num_features == conv.out_channels:
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), torch.nn.Identity()
    return fast.to(memory_format=layout)


def _batches(split, batch_size: int, device: torch.device, layout=torch.contiguous_format):
    from ..data.augment import prepare_batch
    from ..train import _batches as split_batches

    for x, y in split_batches(split, batch_size, device, False, None, 0):  # in-memory splits stay where they are
        x = prepare_batch(x.to(device, non_blocking=True), split.info, train=False)
        yield x.contiguous(memory_format=layout), y.to(device, non_blocking=True)


def _kernel_matrix(conv: torch.nn.Module) -> np.ndarray | None:
    """The K x R matrix of a pointwise conv (block diagonal when grouped); None for a spatial conv."""
    if any(k != 1 for k in conv.kernel_size):
        return None
    w = conv.weight.detach().to("cpu", torch.float64).reshape(conv.out_channels, -1)
    g = conv.groups
    if g == 1:
        return w.numpy()
    k = conv.out_channels // g
    return torch.block_diag(*[w[i * k:(i + 1) * k] for i in range(g)]).numpy()  # (K, R): group i maps its R/g to its K/g


def _accumulate(model, blocks, split, batch_size, device, progress) -> tuple[list, list]:
    """One pass over ``split``: the covariance of every block's output and of its closing conv's output."""
    outputs = [spectrum.StreamingCovariance(b.K) for b in blocks]
    projections = [spectrum.StreamingCovariance(b.K) for b in blocks]
    handles = []
    for b, out_acc, proj_acc in zip(blocks, outputs, projections):
        # the hook runs before any later in-place op (the next ReLU) can touch the tensor
        handles.append(b.module.register_forward_hook(lambda m, a, o, acc=out_acc: acc.update(o)))
        handles.append(b.chain[-1].module.register_forward_hook(lambda m, a, o, acc=proj_acc: acc.update(o)))
    try:
        n_batches = math.ceil(len(split) / batch_size)
        for x, _ in progress_bar(_batches(split, batch_size, device), total=n_batches, enabled=progress,
                                 desc="spectrum", leave=False):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return outputs, projections


def _accuracies(model, split, batch_size, device, layout, hook_module=None, projection=None) -> np.ndarray:
    """Test accuracy of each version of ``projection`` (a :class:`~kr_lib.measured.pruning.PrunedOutputs`) hooked
    after ``hook_module``, or unpruned (one value)."""
    G = projection.versions if projection is not None else 1
    correct = torch.zeros(G, dtype=torch.long, device=device)
    handle = hook_module.register_forward_hook(projection) if projection is not None else None
    try:
        # batch_size // G inputs per batch: what follows the block sees about batch_size stacked inputs, so
        # memory stays that of an unpruned batch whatever the number of versions
        for x, y in _batches(split, max(1, batch_size // G), device, layout):
            logits = model(x)
            if logits.shape[0] != G * len(y):
                raise ValueError(f"the pruning test needs what follows a block to see only its output (a sequential "
                                 f"trunk); the network gave {logits.shape[0]} outputs for {G} x {len(y)} inputs")
            correct += (logits.argmax(dim=1).view(G, -1) == y.view(1, -1)).sum(dim=1)
    finally:
        if handle is not None:
            handle.remove()
    return correct.cpu().numpy() / len(split)


def _pruned_dimension(drop: dict, K: int, threshold: float) -> int:
    """r*: the smallest tested r such that pruning to r and to every larger tested r costs < ``threshold`` points
    (``drop``: r -> points lost; r = K, the identity, costs nothing)."""
    best = K
    for r in sorted(set(drop) - {K}, reverse=True):
        if drop[r] >= threshold:
            break
        best = r
    return best


def _pruning_test(model, fast, b, out_acc, test, base, ranks, use_tp, example, batch_size, device, layout,
                  threshold) -> dict:
    """The pruning columns of block ``b``: its output projected to each r (and, with ``use_tp``, its channels
    removed by magnitude down to min(R, K) and min(R/2, K)), all in one pass over ``test`` through ``fast``
    (:func:`_pruning_copy` of ``model``; the channel order is ``model``'s)."""
    K = b.K
    r_R, r_R2, r_K2 = min(b.R, K), min(max(b.R // 2, 1), K), max(K // 2, 1)
    grid = ranks or pruning.rank_grid(K, b.R)
    order = pruning.magnitude_order(model, b.chain[-1].path, example) if use_tp else []
    removal = [r for r in dict.fromkeys((r_R, r_R2)) if r < K] if use_tp else []
    mu, U = pruning.principal_directions(out_acc.mean(), out_acc.covariance())
    hook = pruning.PrunedOutputs(mu, U, grid, [order[:r] for r in removal]).to(device)
    accs = [float(a) for a in _accuracies(fast, test, batch_size, device, layout, fast.get_submodule(b.path), hook)]
    acc = dict(zip(grid, accs))
    removed = dict(zip(removal, accs[len(grid):]))

    def at(r, table):  # r = K keeps every direction (channel): the unpruned accuracy
        return table.get(r, base if r == K else math.nan)

    drop = {r: 100 * (base - a) for r, a in acc.items()}
    return {"accuracy": base, "ranks": grid, "pruned accuracy": acc, "r at R": r_R, "accuracy at R": at(r_R, acc),
            "r at R/2": r_R2, "accuracy at R/2": at(r_R2, acc), "accuracy at K/2": at(r_K2, acc),
            "drop at R": 100 * (base - at(r_R, acc)), "drop at R/2": 100 * (base - at(r_R2, acc)),
            "drop at K/2": 100 * (base - at(r_K2, acc)),
            "pruned dimension": _pruned_dimension(drop, K, threshold),
            "magnitude pruning accuracy at R": at(r_R, removed) if use_tp else math.nan,
            "magnitude pruning accuracy at R/2": at(r_R2, removed) if use_tp else math.nan}


@torch.no_grad()
def measure_redundancy(model: torch.nn.Module, data, *, ranks=None, batch_size: int = 256, device=None,
                       prune: bool = True, channel_removal: bool = True, threshold: float = DROP_THRESHOLD,
                       channels_last: bool = True, progress: bool = True) -> pd.DataFrame:
    """One row per block of ``model`` (the blocks ``kr_lib.redundancy.kr_report`` finds), columns :data:`COLUMNS`
    then the list columns ``eigenvalues`` (K,), ``projection eigenvalues`` (K,), ``kernel singular values``
    (min(K, R); empty when the closing conv is not pointwise), ``ranks`` and ``pruned accuracy`` (r -> accuracy).

    ``data``: a (train, test) pair of splits (``kr_lib.data.load_splits``); the spectrum comes from the
    first, the accuracies from the second (a single split with ``prune=False``). ``ranks``: the r of the
    pruning test (default :func:`~kr_lib.measured.pruning.rank_grid` of each block, r < K; an r larger than
    a block's K is an error). ``device``: where to run (default the model's; the model is moved there).
    The pruning test's passes run on a copy of the model with its BatchNorms folded into their convs
    (:func:`_pruning_copy`), in the channels-last layout (2D and 3D) unless ``channels_last=False``: the same
    outputs up to float rounding, faster (:func:`_layout`, ``benchmarks/bench_measured.py``); the spectrum and
    the unpruned accuracy come from ``model`` as it is.

    Columns: ``effective rank`` of the output (Roy & Vetterli on the singular values of the centred N x K
    activation matrix, i.e. on the square roots of the covariance eigenvalues); ``components 99%`` /
    ``99.9%`` (fewest components holding that share of the variance); ``stable rank`` (sum lambda / lambda_1:
    ||X||_F^2 / ||X||_2^2 of the centred activations X); ``numerical rank`` (singular values above
    ``spectrum.NUMERICAL_RANK_RTOL`` sigma_1); the same of the ``projection`` (closing conv output, rank <= R);
    ``kernel effective rank`` / ``kernel stable rank`` of the K x R pointwise kernel (||W||_F^2 / ||W||_2^2).
    Pruning: ``accuracy`` unpruned; ``accuracy at R`` at r = ``r at R`` = min(R, K) (K/R <= 1: nothing
    removed), likewise R/2 and K/2; ``drop at ...`` in points (100 x accuracy); ``pruned dimension`` r*: the
    smallest tested r such that pruning to r and to every larger tested r costs < ``threshold`` points;
    ``magnitude pruning accuracy at R`` / ``R/2``: the K - r output channels of least Torch-Pruning magnitude
    importance removed from what the next layer receives (``kr_lib.measured.pruning``; NaN when Torch-Pruning
    is not installed or ``channel_removal=False``). ``attrs``: the splits, device, Torch-Pruning version.
    """
    from ..redundancy import find_blocks

    fit, test = _splits(data, prune)
    device = torch.device(device) if device is not None else _device_of(model)
    model = model.to(device).eval()
    info = fit.info
    layout = _layout(info.dim, channels_last)
    example = torch.zeros(1, *info.input_shape, device=device)
    with torch.enable_grad():  # blocks are found on the autograd graph of one forward pass
        blocks = find_blocks(model, example)
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no block (kr_lib.redundancy.find_blocks found none)")
    if ranks is not None:
        ranks = pruning.check_ranks(ranks, [(b.path, b.K) for b in blocks])
    use_tp = bool(channel_removal and prune and pruning.torch_pruning_available())

    rows = []
    with _float32(device):
        # the spectrum (closing convs hooked before their BatchNorm) and the unpruned accuracy on the model as
        # trained and recorded (the recorded accuracy, exactly); the pruned passes on a faster copy (BatchNorm
        # folded, channels-last)
        outputs, projections = _accumulate(model, blocks, fit, batch_size, device, progress)
        base = float(_accuracies(model, test, batch_size, device, torch.contiguous_format)[0]) if prune else math.nan
        fast = _pruning_copy(model, layout) if prune else None
        for b, out_acc, proj_acc in zip(progress_bar(blocks, enabled=progress, desc="blocks", leave=False),
                                        outputs, projections):
            lam = spectrum.eigenvalues(out_acc.covariance())
            lam_proj = spectrum.eigenvalues(proj_acc.covariance())
            sv, sv_proj = np.sqrt(lam), np.sqrt(lam_proj)
            kernel = _kernel_matrix(b.chain[-1].module)
            ksv = np.linalg.svd(kernel, compute_uv=False) if kernel is not None and len(b.chain) > 1 else np.array([])
            row = {"block": b.path, "design": b.design, "K": b.K, "R": b.R, "K/R": b.kr_ratio, "P": b.P,
                   "vectors": out_acc.count, "effective rank": spectrum.effective_rank(sv),
                   "components 99%": spectrum.components(lam, 0.99),
                   "components 99.9%": spectrum.components(lam, 0.999), "stable rank": spectrum.stable_rank(sv),
                   "numerical rank": spectrum.numerical_rank(sv),
                   "projection numerical rank": spectrum.numerical_rank(sv_proj),
                   "projection effective rank": spectrum.effective_rank(sv_proj),
                   "kernel effective rank": spectrum.effective_rank(ksv) if ksv.size else math.nan,
                   "kernel stable rank": spectrum.stable_rank(ksv) if ksv.size else math.nan,
                   "closing conv": b.chain[-1].path, "eigenvalues": lam, "projection eigenvalues": lam_proj,
                   "kernel singular values": ksv}
            if prune:
                row.update(_pruning_test(model, fast, b, out_acc, test, base, ranks, use_tp, example, batch_size,
                                         device, layout, threshold))
            rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=COLUMNS + LIST_COLUMNS)
    for col in ("eigenvalues", "projection eigenvalues", "kernel singular values"):
        table[col] = [r[col] for r in rows]
    tp_version = None
    if use_tp:
        tp_version = _tp_version()
    table.attrs.update(fit_split=f"{info.name} {fit.split} ({len(fit)} samples)", threshold=threshold,
                       test_split=f"{test.info.name} {test.split} ({len(test)} samples)" if test is not None else None,
                       device=str(device), torch_pruning=tp_version, model=type(model).__name__)
    return table


def _tp_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch-pruning")
    except PackageNotFoundError:
        return "installed"


def linear_control(split, K: int = 32, R: int = 8, seed: int = 0, device=None, batch_size: int = 256) -> pd.DataFrame:
    """The control of book section 4, :ref:`sec-kr` on real inputs: a random *linear* block (no BatchNorm, no activation, no
    shortcut; ``kr_lib.blocks.make_block(..., linear=True)``) of every design for the split's dimension, K
    outputs and rank R, applied to ``split``'s samples. :func:`measure_redundancy` rows (``prune=False``): the
    whole output's numerical rank is at most R, by construction. R must stay below 9 P (the rank a 3 x 3
    neighbourhood of P input channels can reach) for R, not the input, to be the limit."""
    from ..blocks import make_block
    from ..complexity import DESIGNS

    dim = split.info.dim
    rows = []
    for design in DESIGNS:
        if design == "dense" or (design == "r2plus1d" and dim != 3):
            continue
        torch.manual_seed(seed)
        extra = {"groups": 2} if design == "resnext" else {}
        block = make_block(design, split.info.channels, K, R, dim=dim, linear=True, **extra)
        rows.append(measure_redundancy(block, split, prune=False, progress=False, device=device,
                                       batch_size=batch_size).assign(design=design))
    return pd.concat(rows, ignore_index=True)


# -- records ---------------------------------------------------------------------------------------------------

def records_with_weights(folder: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """The completed records of ``folder`` whose weights file is beside them, and those without (sorted)."""
    from ..runs.records import read_records
    from ..runs.weights import weights_path

    records, _ = read_records(folder)
    have, lack = [], []
    for r in records:
        if r["status"] != "completed":
            continue
        path = Path(folder) / f"{r['run_id']}.json"
        (have if r.get("weights") and weights_path(path).is_file() else lack).append(path)
    return have, lack


_DATA_CACHE: dict = {}


def _record_data(record: dict, fit_limit, test_limit, data_dir):
    from ..data import load_splits

    p = record["parameters"]
    key = (p["dataset"], repr(sorted((p.get("dataset_options") or {}).items())), fit_limit, test_limit, data_dir)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one dataset in memory at a time
        _DATA_CACHE[key] = load_splits(p["dataset"], data_dir=data_dir, train_limit=fit_limit, test_limit=test_limit,
                                       **(p.get("dataset_options") or {}))
    return _DATA_CACHE[key]


#: The record's columns that :func:`measure_record` puts in front of the block's.
RECORD_COLUMNS = ["run_id", "dataset", "network design", "mode", "kr_fraction", "R_0", "K_0", "param_budget", "seed",
                  "parameters", "recorded accuracy"]


def _record_columns(record: dict) -> dict:
    p, model = record["parameters"], record.get("model") or {}
    return {"run_id": record["run_id"], "dataset": p["dataset"], "network design": model.get("design"),
            "mode": record.get("mode"), "kr_fraction": model.get("kr_fraction"), "R_0": model.get("R"),
            "K_0": model.get("K"), "param_budget": p.get("param_budget"), "seed": p.get("seed"),
            "parameters": model.get("parameters"),
            "recorded accuracy": (record.get("metrics") or {}).get("test_accuracy")}


def check_record(record_path: str | os.PathLike, dataset: str | None = None, ranks=None) -> dict:
    """The record at ``record_path``, checked before any work: its weights exist (else
    :class:`~kr_lib.runs.weights.MissingWeights` naming ``kr reproduce RECORD --save-weights``), its dataset is
    ``dataset`` when given, every r of ``ranks`` is at most each block's K (from the record's blocks)."""
    from ..runs.records import read_record
    from ..runs.weights import MissingWeights, weights_path

    path = Path(record_path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give one record file, or use measure_records for a folder")
    if not path.is_file():
        raise ValueError(f"no record file {path}")
    record = read_record(path)
    if dataset is not None and record["parameters"]["dataset"] != dataset:
        raise ValueError(f"{path.name} is a {record['parameters']['dataset']} record, not {dataset}; "
                         f"measure it with its own dataset")
    if record["status"] != "completed":
        raise ValueError(f"{path.name} has status {record['status']!r}: only completed runs have trained weights")
    fix = f"make them with: kr reproduce {path} --save-weights"
    if not record.get("weights"):
        raise MissingWeights(f"{path.name} has no saved weights (recorded before weights were kept); {fix}")
    if not weights_path(path).is_file():
        raise MissingWeights(f"{path.name} names weights {record['weights']['file']}, not in {path.parent}; {fix}")
    if ranks is not None:
        pruning.check_ranks(ranks, [(b["block"], b["K"]) for b in record.get("blocks") or []])
    return record


def measure_record(record_path: str | os.PathLike, *, dataset: str | None = None, fit_limit: int | None = 5000,
                   test_limit: int | None = None, data_dir=None, device=None, **kwargs) -> pd.DataFrame:
    """:func:`measure_redundancy` of a record's trained network (``kr_lib.runs.weights.model_from_record``) on its
    dataset: the first ``fit_limit`` training samples (no augmentation) for the spectrum, the first
    ``test_limit`` test samples (None: all) for the accuracies. Adds the record's columns (run id, mode,
    K/R, R_0, K_0, seed, its recorded accuracy) in front."""
    from ..device import resolve_device
    from ..runs.weights import model_from_record

    record = check_record(record_path, dataset, kwargs.get("ranks"))
    device = resolve_device(device)
    model = model_from_record(record_path, device=device)
    table = measure_redundancy(model, _record_data(record, fit_limit, test_limit, data_dir), device=device, **kwargs)
    front = pd.DataFrame([_record_columns(record)] * len(table))
    out = pd.concat([front, table], axis=1)
    out.attrs.update(table.attrs)
    return out


def measure_records(paths, *, dataset: str | None = None, progress: bool = True, **kwargs) -> pd.DataFrame:
    """:func:`measure_record` of every record in ``paths`` (a list of record files, or a folder: its records with
    weights), concatenated; all must be ``dataset``'s when given, and are checked before any is measured."""
    if isinstance(paths, (str, os.PathLike)):
        folder = Path(paths)
        if not folder.is_dir():
            raise ValueError(f"no results folder {folder}")
        paths = records_with_weights(folder)[0]
    paths = [Path(p) for p in paths]
    for p in paths:
        check_record(p, dataset, kwargs.get("ranks"))
    tables = [measure_record(p, dataset=dataset, progress=False, **kwargs)
              for p in progress_bar(paths, enabled=progress, desc="records")]
    if not tables:
        return pd.DataFrame(columns=RECORD_COLUMNS + COLUMNS + LIST_COLUMNS)
    out = pd.concat(tables, ignore_index=True)
    out.attrs.update(tables[0].attrs)
    return out
