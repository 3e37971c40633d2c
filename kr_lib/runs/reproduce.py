"""Rerun a record's exact parameters and compare the metrics.

On the CPU with the same library versions and the same number of torch threads (the rerun uses the
record's ``timing.torch_threads``), a run is deterministic (seeded shuffling, augmentation and
initialisation; ``kr_lib.train``), so the metrics must be *identical*. On a GPU (cuDNN's algorithm choice,
atomics in backward kernels, mixed precision) they agree only within a tolerance: by default 0.01 in
test accuracy (one percentage point) and 2 % relative in test loss.

``save_weights=True`` regenerates the trained weights of a record made before weights were kept: the rerun
is made on the CPU with the record's thread count, and its weights are put beside the original record
(which then names them) only when the metrics come out identical -- the same network, not another one.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..atomic import atomic_open, write_json_atomic
from .identity import scientific
from .records import read_record
from .notebook_run import execute_run
from .weights import file_sha256, weights_path

GPU_ACCURACY_TOLERANCE = 0.01
GPU_LOSS_RTOL = 0.02
COMPARED = ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "epochs_completed")


@dataclass
class Comparison:
    """The original and rerun metrics, whether they agree, and under which rule (``exact`` or ``tolerance``)."""

    original: dict
    rerun: dict
    rule: str
    differences: dict
    agree: bool
    rerun_path: Path | None
    weights_path: Path | None = None   # where the regenerated weights were saved (save_weights=True)


def compare_metrics(original: Mapping, rerun: Mapping, exact: bool, accuracy_tol: float = GPU_ACCURACY_TOLERANCE,
                    loss_rtol: float = GPU_LOSS_RTOL) -> tuple[bool, dict]:
    """Do two records' metrics agree? ``exact``: every compared metric equal; else accuracies within
    ``accuracy_tol`` (absolute) and losses within ``loss_rtol`` (relative). Returns (agree, differences)."""
    if original.get("status") != rerun.get("status"):
        return False, {"status": (original.get("status"), rerun.get("status"))}
    a, b = original.get("metrics") or {}, rerun.get("metrics") or {}
    diffs, agree = {}, True
    for key in COMPARED:
        x, y = a.get(key), b.get(key)
        diffs[key] = None if x is None or y is None else y - x
        if exact or x is None or y is None or key == "epochs_completed":
            ok = x == y
        elif "accuracy" in key:
            ok = abs(y - x) <= accuracy_tol
        else:
            ok = math.isclose(x, y, rel_tol=loss_rtol)
        agree &= ok
    return agree, diffs


def reproduce(record_file: str | os.PathLike, device: str = "auto", output_dir: str | os.PathLike | None = None,
              accuracy_tol: float = GPU_ACCURACY_TOLERANCE, loss_rtol: float = GPU_LOSS_RTOL,
              progress: bool = False, save_weights: bool = False,
              notebook: str | os.PathLike | None = None) -> Comparison:
    """Run ``record_file``'s scientific parameters again (through the notebook, into ``output_dir``, by default
    a temporary folder) on ``device`` and compare: exact when both runs used the CPU, else within tolerance.

    ``save_weights``: the rerun must be on the CPU (``device`` "auto" or "cpu") and the original record too;
    when the metrics are identical the rerun's weights are saved beside ``record_file`` and the record names
    them (``weights``); otherwise nothing is saved (``Comparison.weights_path`` is None). ``notebook``: the
    ablation notebook (default: the project's, :func:`kr_lib.runs.notebook_run.default_notebook`)."""
    original = read_record(record_file)
    if save_weights:
        if device not in ("auto", "cpu"):
            raise ValueError(f"--save-weights reruns on the CPU (where the metrics must be identical); got --device {device}")
        if not str(original.get("device", "")).startswith("cpu"):
            raise ValueError(f"{Path(record_file).name} ran on {original.get('device')!r}: its weights cannot be "
                             "regenerated exactly on the CPU; rerun it on that device with kr ablate")
        if original.get("status") != "completed":
            raise ValueError(f"{Path(record_file).name} is {original.get('status')!r}: only completed runs have weights")
        device = "cpu"
    params = scientific(original["parameters"])
    params["device"] = device
    params["threads"] = (original.get("timing") or {}).get("torch_threads")  # CPU sums depend on the thread count
    with tempfile.TemporaryDirectory(prefix="kr-reproduce-") as tmp:
        out = Path(output_dir) if output_dir else Path(tmp)
        outcome = execute_run(params, out, notebook=notebook, progress=progress)
        rerun = read_record(outcome.path)
        exact = str(original.get("device", "")).startswith("cpu") and str(rerun.get("device", "")).startswith("cpu")
        agree, diffs = compare_metrics(original, rerun, exact, accuracy_tol, loss_rtol)
        saved = _keep_weights(record_file, original, outcome.path, rerun) if save_weights and agree and exact else None
        return Comparison(original.get("metrics") or {}, rerun.get("metrics") or {},
                          "exact" if exact else f"tolerance (accuracy {accuracy_tol}, loss {loss_rtol:.0%} relative)",
                          diffs, agree, outcome.path if output_dir else None, saved)


def _keep_weights(record_file, original: dict, rerun_path: Path, rerun: dict) -> Path:
    """Copy the identical rerun's weights beside the original record (atomically), then name them in it."""
    source = weights_path(rerun_path)
    if not rerun.get("weights") or not source.is_file() or file_sha256(source) != rerun["weights"]["sha256"]:
        raise RuntimeError(f"the rerun of {Path(record_file).name} finished without its weights file")
    target = weights_path(record_file)
    with atomic_open(target, "wb") as fh:
        fh.write(source.read_bytes())
    write_json_atomic({**original, "weights": {**rerun["weights"], "file": target.name}}, record_file)
    return target
