"""One ablation run: parameters checked, data, network, training, K/R report, one result record.

    params = check_parameters({"dataset": "fashion_mnist", "design": "bottleneck", "kr_ratio": 4, "R": 8})
    run = run_ablation(params)          # trains; writes <output_dir>/<dataset>/<run_id>.json atomically
    run.record["metrics"]["test_accuracy"], run.report, run.path

``notebooks/ablation.ipynb`` is a thin shell around :func:`run_ablation`; ``kr ablate`` and
``kr sweep`` execute that notebook with papermill. The parameters (:data:`DEFAULTS`) are the
notebook's ``parameters`` cell; every block of the network has K/R = ``kr_ratio`` exactly
(:func:`kr_lib.models.build_model`), at a fixed first-stage rank ``R`` (mode ``fixed_r``) or with R solved
for a parameter budget ``param_budget`` (mode ``budget``).
"""
from __future__ import annotations

import copy
import datetime as _dt
import functools
import math
import shutil
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

#: The notebook's parameters and their defaults (small: one epoch on 2,000 Fashion-MNIST images, a few
#: seconds on a laptop CPU).
DEFAULTS: dict[str, Any] = {
    "dataset": "fashion_mnist",   # a name of kr_lib.data.DATASETS
    "design": "bottleneck",       # dense, bottleneck, resnext, inverted_residual, separable, r2plus1d (3D)
    "kr_ratio": 4,                # K/R of every block: a number or a fraction such as "1/4"
    "R": 8,                       # first-stage R (fixed-R mode); stage s has R 2^s; None with param_budget
    "param_budget": None,         # total parameters to aim at (budget mode: R is solved); None with R
    "stages": 3,                  # depth: stages of blocks (widths double, resolution halves)
    "blocks_per_stage": 1,        # depth: blocks per stage
    "kernel_size": 3,
    "stem_stride": None,          # None: 1, or 2 for inputs larger than 64 pixels; 2 quarters the cost
    "group_width": 4,             # channels per group of resnext
    "epochs": 1,
    "batch_size": 128,
    "optimizer": "sgd",           # sgd (Nesterov, cosine schedule) or adamw
    "lr": None,                   # None: 0.1 for sgd, 1e-3 for adamw
    "weight_decay": None,         # None: 5e-4 for sgd, 0.05 for adamw
    "augment": True,              # the dataset's standard training augmentation
    "amp": True,                  # mixed precision on CUDA (no effect on the CPU)
    "seed": 0,
    "train_limit": 2000,          # training subset: the first n samples; None: the whole split
    "test_limit": None,           # test subset; None: the whole split
    "dataset_options": {},        # per dataset, e.g. {"frames": 8, "canvas": 32} for moving_fashion_mnist
    "device": "auto",             # auto (cuda, mps, cpu), cpu, cuda, cuda:1, ...
    "threads": None,              # CPU threads of torch (None: torch's default); the CPU sums depend on it
    "data_dir": None,             # None: $KR_DATA_DIR, then the dataset's default places
    "download": False,            # fetch a missing dataset (cifar10, svhn, fashion_mnist; needs internet)
    "output_dir": None,           # None: $KR_RESULTS_DIR, else _build/runs (scratch); kr ablate/sweep: results
    "save_record": True,          # write the result record
    "staged_record": False,       # kr ablate/sweep: write <run_id>.json.staged, renamed once the notebook is saved
    "checkpoint": True,           # checkpoint each epoch (resumed if the run is started again)
    "sweep": None,                # set by kr sweep: {"file": ..., "preset": ...}; not part of the run id
}

#: Parameters that decide the result: the run id is a hash of these (device and folders are not).
SCIENTIFIC = ("dataset", "dataset_options", "design", "kr_ratio", "R", "param_budget", "stages",
              "blocks_per_stage", "kernel_size", "stem_stride", "group_width", "epochs", "batch_size", "optimizer", "lr",
              "weight_decay", "augment", "amp", "seed", "train_limit", "test_limit")

#: The files whose code decides a run's numbers (its network, data, training and record), relative to the
#: checkout: results pages list the commits that touched them between a dataset's records
#: (:func:`kr_lib.provenance.code_changes`).
RUN_CODE = ("kr_lib/train.py", "kr_lib/models.py", "kr_lib/blocks.py", "kr_lib/complexity.py", "kr_lib/redundancy.py",
            "kr_lib/device.py", "kr_lib/data", "kr_lib/runs/ablation.py", "notebooks/ablation.ipynb")


@functools.lru_cache(maxsize=1)
def run_code_hash() -> str:
    """:func:`kr_lib.provenance.files_hash` of :data:`RUN_CODE`, taken once per process (at the start of
    :func:`run_ablation`, right after its imports): the code this process runs, uncommitted changes
    included. Stored in every record as ``versions.run_code``."""
    from ..provenance import files_hash

    return files_hash(RUN_CODE)

_OPTIONAL_INTS = ("R", "param_budget", "stem_stride", "train_limit", "test_limit", "threads")
_INTS = ("stages", "blocks_per_stage", "kernel_size", "group_width", "epochs", "batch_size")
_BOOLS = ("augment", "amp", "download", "save_record", "staged_record", "checkpoint")


def _accepted(name: str) -> str:
    return f"{name} (default {DEFAULTS[name]!r})"


def check_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Complete ``params`` with :data:`DEFAULTS` and check every name and value before anything is trained.

    Raises ``ValueError``/``TypeError`` naming the culprit and what is accepted. Returns the resolved
    parameters: ``kr_ratio`` as an exact fraction string (``"1/4"``), ``design`` as its canonical name,
    ``lr``/``weight_decay`` filled in from the optimizer's defaults, ``mode`` added ("fixed_r"/"budget").
    The network is built on the meta device (shapes only) so that an impossible K/R, R or budget fails here.
    """
    from ..data import DATASETS, dataset_info
    from ..models import as_fraction, build_model
    from ..train import DEFAULT_LR, DEFAULT_WEIGHT_DECAY, OPTIMIZERS

    if not isinstance(params, Mapping):
        raise TypeError(f"parameters must be a mapping of name -> value, got {type(params).__name__}")
    unknown = sorted(set(params) - set(DEFAULTS) - {"mode"})
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; accepted: "
                         + ", ".join(_accepted(n) for n in DEFAULTS))
    p = {**copy.deepcopy(DEFAULTS), **dict(params)}
    p.pop("mode", None)

    if p["dataset"] not in DATASETS:
        raise ValueError(f"unknown dataset {p['dataset']!r}; accepted: {', '.join(DATASETS)}")
    if not isinstance(p["dataset_options"], Mapping):
        raise TypeError(f"dataset_options must be a mapping (e.g. {{'frames': 8}}), got {p['dataset_options']!r}")
    p["dataset_options"] = dict(p["dataset_options"])
    for key in ("limit", "train_limit", "test_limit"):
        if key in p["dataset_options"]:
            raise ValueError(f"give the subset as the parameters train_limit/test_limit, not dataset_options[{key!r}]")
    info = dataset_info(p["dataset"], **p["dataset_options"])  # unknown options are named here

    for name in _INTS:
        v = p[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    for name in _OPTIONAL_INTS:
        v = p[name]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive int or None, got {v!r}")
    for name in _BOOLS:
        if not isinstance(p[name], bool):
            raise ValueError(f"{name} must be true or false, got {p[name]!r}")
    if isinstance(p["seed"], bool) or not isinstance(p["seed"], int) or p["seed"] < 0:
        raise ValueError(f"seed must be a non-negative int, got {p['seed']!r}")
    if (p["R"] is None) == (p["param_budget"] is None):
        raise ValueError("give exactly one of R (fixed-R mode) and param_budget (budget mode); got "
                         f"R={p['R']!r}, param_budget={p['param_budget']!r}")
    if p["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {p['optimizer']!r}")
    for name, default in (("lr", DEFAULT_LR), ("weight_decay", DEFAULT_WEIGHT_DECAY)):
        v = p[name]
        if v is None:
            p[name] = default[p["optimizer"]]
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (name == "lr" and v == 0):
            raise ValueError(f"{name} must be a positive number or None (the optimizer's default), got {v!r}")
        else:
            p[name] = float(v)
    if not isinstance(p["device"], str):
        raise TypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {p['device']!r}")
    for name in ("data_dir", "output_dir"):
        if p[name] is not None and not isinstance(p[name], (str, Path)):
            raise TypeError(f"{name} must be a path or None, got {p[name]!r}")
        if p[name] is not None:
            p[name] = str(p[name])
    if p["sweep"] is not None and not isinstance(p["sweep"], Mapping):
        raise TypeError(f"sweep must be a mapping or None, got {p['sweep']!r}")

    p["kr_ratio"] = str(as_fraction(p["kr_ratio"]))
    p["design"] = _meta_design(p["dataset"], _freeze(p["dataset_options"]), p["design"], p["kr_ratio"], p["R"],
                               p["param_budget"], p["stages"], p["blocks_per_stage"], p["kernel_size"],
                               p["stem_stride"], p["group_width"])
    p["mode"] = "fixed_r" if p["R"] is not None else "budget"
    return p


def _freeze(options: Mapping) -> tuple:
    return tuple(sorted((k, _freeze(v) if isinstance(v, Mapping) else v) for k, v in options.items()))


@functools.lru_cache(maxsize=1024)
def _meta_design(dataset, options, design, kr_ratio, R, param_budget, stages, blocks_per_stage, kernel_size,
                 stem_stride, group_width) -> str:
    """Build the network on the meta device (shapes only) so that an impossible K/R, R or budget fails
    while checking; returns the canonical design name. Cached: a sweep checks each network once, not per seed."""
    import torch

    from ..data import dataset_info

    p = {"design": design, "kr_ratio": kr_ratio, "R": R, "param_budget": param_budget, "stages": stages,
         "blocks_per_stage": blocks_per_stage, "kernel_size": kernel_size, "stem_stride": stem_stride,
         "group_width": group_width}
    with torch.device("meta"):
        return build_network(p, dataset_info(dataset, **dict(options))).spec["design"]


def parameters_from_namespace(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The ablation parameters defined in a notebook's namespace (``globals()``), checked.

    Any other plain value defined there (not a module, function or class, not ``_private``, not one of
    IPython's own names) is an unknown parameter -- a misspelt ``-p`` name that papermill injected -- and
    raises ``ValueError`` with the accepted names.
    """
    hidden: set[str] = set()
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            hidden = set(shell.user_ns_hidden)
    except ImportError:
        pass
    params, unknown = {}, []
    for name, value in namespace.items():
        if name in DEFAULTS:
            params[name] = value
        elif not (name.startswith("_") or name in hidden or name in ("In", "Out", "exit", "quit", "get_ipython")
                  or isinstance(value, (types.ModuleType, types.FunctionType, type)) or callable(value)):
            unknown.append(name)
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(sorted(unknown))}; accepted: "
                         + ", ".join(_accepted(n) for n in DEFAULTS))
    return check_parameters(params)


def scientific(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that decide the result (:data:`SCIENTIFIC`), from checked parameters."""
    return {k: params[k] for k in SCIENTIFIC}


def build_network(p: Mapping[str, Any], info):
    """The untrained network of checked parameters ``p`` for the dataset ``info`` (``build_model``)."""
    from ..models import build_model

    return build_model(info, p["design"], p["kr_ratio"], R=p["R"], param_budget=p["param_budget"],
                       stages=p["stages"], blocks_per_stage=p["blocks_per_stage"], kernel_size=p["kernel_size"],
                       stem_stride=p["stem_stride"], group_width=p["group_width"])


def output_dir(params: Mapping[str, Any]) -> Path:
    """The results root of a run: its ``output_dir`` or :func:`kr_lib.runs.records.default_output_dir`."""
    from .records import default_output_dir

    return Path(params["output_dir"]) if params.get("output_dir") else default_output_dir()


def checkpoint_dir(params: Mapping[str, Any], rid: str) -> Path:
    """``<output_dir>/<dataset>/.checkpoints/<run_id>``: per-epoch checkpoints (git-ignored)."""
    return output_dir(params) / params["dataset"] / ".checkpoints" / rid


@dataclass
class AblationRun:
    """What :func:`run_ablation` returns: the record (also written to ``path``), the trained network,
    its K/R report (a ``kr_report`` DataFrame) and the :class:`~kr_lib.train.TrainResult`."""

    record: dict
    path: Path | None
    model: Any
    report: Any
    result: Any


def _provenance() -> dict:
    from ..provenance import git_commit, machine, versions

    return {"machine": machine(), "versions": {**versions(), "run_code": run_code_hash()}, "git_commit": git_commit()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def base_record(params: Mapping[str, Any], status: str, message: str = "") -> dict:
    """The fields every record has (identity, parameters, provenance) for checked ``params``."""
    from .records import SCHEMA, run_id

    folders = {k: _portable(params.get(k)) for k in ("output_dir", "data_dir")}
    return {"schema": SCHEMA, "run_id": run_id(scientific(params)), "status": status, "message": message,
            "parameters": {**params, **folders}, "mode": params["mode"], "sweep": params.get("sweep"), "created": _now(),
            **_provenance()}


def _portable(folder: str | None) -> str | None:
    """A folder as a record keeps it: relative to the checkout when inside it (a record names no machine's
    paths), else as given."""
    from .records import REPO_ROOT

    if folder is None:
        return None
    try:
        return str(Path(folder).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(folder)


def failed_record(params: Mapping[str, Any], message: str, wall_time_s: float | None = None) -> dict:
    """A record of a run that raised (status ``"failed"``, ``message`` says why); ``params`` must be checked."""
    record = base_record(params, "failed", message)
    record.update(metrics={}, timing={"wall_time_s": wall_time_s}, device=params.get("device"))
    return record


def _network_row(report, spec: Mapping[str, Any]) -> dict:
    summary = {k: v for k, v in report.attrs.items() if k != "model"}
    block_df = int(report["df"].sum())
    return {
        **summary,
        "block_df": block_df,
        # df of the network: each block's composite-kernel df, plus the stem and head counted naively
        "df": block_df + int(summary["rest_parameters"]),
        "naive_count": int(summary["total_parameters"]),
        "flops_per_sample": int(summary["total_flops"]),
        "kr_ratio": spec["kr_ratio"],
    }


def _print_epoch(epochs: int):
    """One line per finished epoch (a per-batch bar would fill the executed notebook)."""

    def show(h: dict) -> None:
        print(f"epoch {h['epoch']}/{epochs}: train loss {h['train_loss']:.4f} acc {h['train_accuracy']:.4f} | "
              f"test loss {h['test_loss']:.4f} acc {h['test_accuracy']:.4f} | {h['train_time_s']:.0f} s, "
              f"{h['samples_per_second']:.0f} samples/s", flush=True)

    return show


def run_ablation(params: Mapping[str, Any], progress: bool = True) -> AblationRun:
    """Train and evaluate one network of the ablation family and write its result record.

    ``params``: as :func:`check_parameters` takes them (checked again here). Steps: load the splits
    (``load_splits``), seed and build the network (``build_model``), its K/R report on one example input
    (``kr_report``: FLOPs are per sample), train with per-epoch checkpoints in :func:`checkpoint_dir`
    (``train``; a run started again resumes there), assemble the record, write it atomically when
    ``save_record`` (then the checkpoints are removed). A diverged run gives a record with status
    ``"diverged"`` and no test metrics. A completed run saves its trained weights beside the record
    (``<run_id>.pt``, :func:`kr_lib.runs.weights.save_weights`) and names them in ``record["weights"]``.
    """
    import torch

    from ..data import load_splits
    from ..device import resolve_device
    from ..redundancy import kr_report
    from ..train import train
    from ..provenance import git_commit
    from .records import record_path, write_record
    from .weights import save_weights, weights_path

    start = time.perf_counter()
    run_code_hash(), git_commit()  # cached now: the code just imported, not what is on disk when the run ends
    p = check_parameters(params)
    if p["threads"] is not None:
        torch.set_num_threads(p["threads"])
    device = resolve_device(None if p["device"] == "auto" else p["device"])
    data = load_splits(p["dataset"], data_dir=p["data_dir"], download=p["download"], train_limit=p["train_limit"],
                       test_limit=p["test_limit"], **p["dataset_options"])
    info = data[0].info
    torch.manual_seed(p["seed"])
    model = build_network(p, info)
    model.eval()
    report = kr_report(model, torch.zeros(1, *info.input_shape))  # structure only: BN in eval, no update
    model.train()

    record = base_record(p, "completed")
    ckpt = checkpoint_dir(p, record["run_id"]) if p["checkpoint"] else None
    result = train(model, data, epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"], optimizer=p["optimizer"],
                   weight_decay=p["weight_decay"], seed=p["seed"], device=device, checkpoint_dir=ckpt, amp=p["amp"],
                   augment=p["augment"], progress=False, on_epoch_end=_print_epoch(p["epochs"]) if progress else None)
    history = result.history
    last = history[-1] if history else {}
    record.update(
        status=result.status,
        message=result.message,
        metrics={
            "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
            "train_accuracy": last.get("train_accuracy") if result.status == "completed" else None,
            "train_loss": last.get("train_loss") if result.status == "completed" else None,
            "best_test_accuracy": max((h["test_accuracy"] for h in history), default=None),
            "epochs_completed": result.epochs_completed,
        },
        history=history,
        model=dict(model.spec),
        network=_network_row(report, model.spec),
        blocks=report.drop(columns=["type", "closing conv"]).to_dict(orient="records"),
        data={"train_size": len(data[0]), "test_size": len(data[1]), "input_shape": list(info.input_shape),
              "num_classes": info.num_classes},
        timing={"wall_time_s": time.perf_counter() - start, "train_wall_time_s": result.wall_time_s,
                "samples_per_second": result.samples_per_second, "peak_memory_bytes": result.peak_memory_bytes,
                "peak_memory_kind": result.peak_memory_kind, "resumed_from_epoch": result.resumed_from_epoch,
                "torch_threads": torch.get_num_threads()},
        device=result.device,
        amp_dtype=result.amp,
    )
    path = None
    if p["save_record"]:
        if result.status == "completed":  # weights first: a record that names weights always has them
            rec = record_path(output_dir(p), p["dataset"], record["run_id"])
            record["weights"] = save_weights(model, weights_path(rec))
        path = write_record(record, output_dir(p), staged=p["staged_record"])
        if ckpt is not None:
            shutil.rmtree(ckpt, ignore_errors=True)
    return AblationRun(record, path, model, report, result)
