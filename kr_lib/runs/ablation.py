"""One ablation run: parameters checked, data, network, training, K/R report, one result record.

    params = check_parameters({"dataset": "fashion_mnist", "design": "bottleneck", "kr_ratio": 4, "R": 8})
    run = run_ablation(params)          # params: AblationParams (kr_lib.runs.parameters), params.run_id          # trains; writes <output_dir>/<dataset>/<run_id>.json atomically
    run.record["metrics"]["test_accuracy"], run.report, run.path

``notebooks/ablation.ipynb`` is a thin shell around :func:`run_ablation`; ``kr ablate`` and
``kr sweep`` execute that notebook with papermill. The parameters (:data:`DEFAULTS`) are the
notebook's ``parameters`` cell; every block of the network has K/R = ``kr_ratio`` exactly
(:func:`kr_lib.models.build_model`), at a fixed first-stage rank ``R`` (mode ``fixed_r``) or with R solved
for a parameter budget ``param_budget`` (mode ``budget``).
"""
from __future__ import annotations

import datetime as _dt
import functools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..project import relative_to_project
from ..provenance import files_hash, git_commit, machine, versions
from .identity import SCIENTIFIC, default_output_dir, scientific  # noqa: F401 (re-exported)
from .parameters import (  # noqa: F401 (re-exported: kr_lib.runs.ablation was their home)
    DEFAULTS, AblationParams, build_network, check_parameters, parameters_from_namespace,
)
from .records import SCHEMA, write_record
from .weights import save_weights, weights_path

#: The files whose code decides a run's numbers (its network, data, training and record), relative to the
#: checkout: results pages list the commits that touched them between a dataset's records
#: (:func:`kr_lib.provenance.code_changes`).
RUN_CODE = ("kr_lib/train.py", "kr_lib/models.py", "kr_lib/blocks.py", "kr_lib/complexity.py", "kr_lib/redundancy.py",
            "kr_lib/device.py", "kr_lib/data", "kr_lib/runs/ablation.py", "kr_lib/runs/parameters.py",
            "notebooks/ablation.ipynb")


@functools.lru_cache(maxsize=1)
def run_code_hash() -> str:
    """:func:`kr_lib.provenance.files_hash` of :data:`RUN_CODE`, taken once per process (at the start of
    :func:`run_ablation`, right after its imports): the code this process runs, uncommitted changes
    included. Stored in every record as ``versions.run_code``."""
    return files_hash(RUN_CODE)


def output_dir(params: Mapping[str, Any]) -> Path:
    """The results root of a run: its ``output_dir`` or :func:`kr_lib.runs.identity.default_output_dir`."""
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
    return {"machine": machine(), "versions": {**versions(), "run_code": run_code_hash()}, "git_commit": git_commit()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def base_record(params: Mapping[str, Any], status: str, message: str = "") -> dict:
    """The fields every record has (identity, parameters, provenance) for ``params`` (checked here)."""
    p = check_parameters(params)
    folders = {k: _portable(p[k]) for k in ("output_dir", "data_dir")}
    return {"schema": SCHEMA, "run_id": p.run_id, "status": status, "message": message,
            "parameters": {**p, **folders}, "mode": p.mode, "sweep": p.sweep, "created": _now(),
            **_provenance()}


def _portable(folder: str | None) -> str | None:
    """A folder as a record keeps it: relative to the project (checkout) it is in (a record names no
    machine's paths), else as given."""
    return None if folder is None else relative_to_project(folder)


def failed_record(params: Mapping[str, Any], message: str, wall_time_s: float | None = None) -> dict:
    """A record of a run that raised (status ``"failed"``, ``message`` says why)."""
    record = base_record(params, "failed", message)
    record.update(metrics={}, timing={"wall_time_s": wall_time_s}, device=params["device"])
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
    from ..train import TrainConfig, train

    start = time.perf_counter()
    run_code_hash(), git_commit()  # cached now: the code just imported, not what is on disk when the run ends
    p = check_parameters(params)
    if p.threads is not None:
        torch.set_num_threads(p.threads)
    device = resolve_device(None if p.device == "auto" else p.device)
    data = load_splits(p.dataset, data_dir=p.data_dir, download=p.download, train_limit=p.train_limit,
                       test_limit=p.test_limit, **p.dataset_options)
    info = data[0].info
    torch.manual_seed(p.seed)
    model = build_network(p, info)
    model.eval()
    report = kr_report(model, torch.zeros(1, *info.input_shape))  # structure only: BN in eval, no update
    model.train()

    record = base_record(p, "completed")
    config = TrainConfig(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, optimizer=p.optimizer,
                         weight_decay=p.weight_decay, seed=p.seed, augment=p.augment)
    result = train(model, data, config, device=device, checkpoint_dir=p.checkpoint_dir() if p.checkpoint else None,
                   amp=p.amp, progress=False, on_epoch_end=_print_epoch(p.epochs) if progress else None)
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
    if p.save_record:
        if result.status == "completed":  # weights first: a record that names weights always has them
            record["weights"] = save_weights(model, weights_path(p.record_path()))
        path = write_record(record, p.results_root, staged=p.staged_record)
        if p.checkpoint:
            shutil.rmtree(p.checkpoint_dir(), ignore_errors=True)
    return AblationRun(record, path, model, report, result)
