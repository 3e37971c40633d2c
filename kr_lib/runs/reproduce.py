"""Rerun a record's exact parameters and compare the metrics.

On the CPU a run is deterministic (seeded shuffling, augmentation and initialisation; ``kr_lib.train``), so
on the *same* CPU -- the same model and the same instruction set torch's kernels use (oneDNN and ATen pick
their kernels by it, and an AVX2 kernel sums in another order than an AVX-512 one) -- with the same number
of torch threads (the rerun uses the record's ``timing.torch_threads``), the same torch and the same run
code (``versions.run_code``) the metrics must be *identical*: :func:`exact_rule` says whether that holds and
why not. On another CPU, or for a record that does not name its CPU or predates the run-code hash, they
agree within :data:`CPU_ACCURACY_TOLERANCE` / :data:`CPU_LOSS_RTOL`, chosen from the measured cross-CPU
spread (:mod:`kr_lib.runs.reproduction`, the Rerun page). On a GPU (cuDNN's algorithm choice, atomics in
backward kernels, mixed precision) within :data:`GPU_ACCURACY_TOLERANCE` (one percentage point) and
:data:`GPU_LOSS_RTOL` relative in loss.

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
#: Another CPU (or one the record does not name): a little above the largest test-accuracy and relative
#: test-loss differences measured across CPUs (:func:`kr_lib.runs.reproduction.cross_cpu_spread`; a test
#: keeps them above it).
CPU_ACCURACY_TOLERANCE = 0.005
CPU_LOSS_RTOL = 0.02
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
    reason: str = ""                   # why this rule: what matches, or what differs or is not recorded
    original_record: dict | None = None
    rerun_record: dict | None = None


def _on_cpu(record: Mapping) -> bool:
    return str(record.get("device", "")).startswith("cpu")


def exact_rule(original: Mapping, rerun: Mapping) -> tuple[bool, str]:
    """May ``rerun`` be held to identical metrics with ``original``? Only when both ran on the CPU with the
    same CPU model, the same CPU capability (``machine.cpu_capability``), the same torch thread count, the
    same torch version and the same run-code hash (``versions.run_code``), each recorded. Returns
    (exact, reason): the reason names every condition that fails or is not recorded, or what matched."""
    def get(record, *keys):
        value = record
        for key in keys:
            value = (value or {}).get(key) if isinstance(value, Mapping) else None
        return value

    if not (_on_cpu(original) and _on_cpu(rerun)):
        return False, f"the record ran on {original.get('device')!r}, the rerun on {rerun.get('device')!r}"
    checks = [("CPU model", ("machine", "cpu_model")), ("CPU capability", ("machine", "cpu_capability")),
              ("thread count", ("timing", "torch_threads")), ("torch version", ("versions", "torch"))]
    reasons = []
    for name, keys in checks:
        a, b = get(original, *keys), get(rerun, *keys)
        if a is None:
            reasons.append(f"the record names no {name}")
        elif a != b:
            reasons.append(f"the {name} differs ({a} recorded, {b} here)")
    a, b = get(original, "versions", "run_code"), get(rerun, "versions", "run_code")
    if a is None:
        reasons.append("it predates run_code")
    elif a != b:
        reasons.append(f"the run code differs ({a} recorded, {b} here)")
    if reasons:
        return False, "; ".join(reasons)
    return True, (f"same CPU ({get(original, 'machine', 'cpu_model')}, {get(original, 'machine', 'cpu_capability')}), "
                  f"{get(original, 'timing', 'torch_threads')} thread(s), torch {get(original, 'versions', 'torch')}, "
                  f"run code {a}")


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
              accuracy_tol: float | None = None, loss_rtol: float | None = None,
              progress: bool = False, save_weights: bool = False,
              notebook: str | os.PathLike | None = None) -> Comparison:
    """Run ``record_file``'s scientific parameters again (through the notebook, into ``output_dir``, by default
    a temporary folder) on ``device`` and compare: exact when :func:`exact_rule` allows it, else within
    ``accuracy_tol`` / ``loss_rtol`` (None: the CPU tolerance when both ran on the CPU, else the GPU one).

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
        exact, reason = exact_rule(original, rerun)
        cpu = _on_cpu(original) and _on_cpu(rerun)
        accuracy_tol = accuracy_tol if accuracy_tol is not None else (CPU_ACCURACY_TOLERANCE if cpu else GPU_ACCURACY_TOLERANCE)
        loss_rtol = loss_rtol if loss_rtol is not None else (CPU_LOSS_RTOL if cpu else GPU_LOSS_RTOL)
        agree, diffs = compare_metrics(original, rerun, exact, accuracy_tol, loss_rtol)
        # the weights are the record's only when the rerun came out identical (whatever rule judged it: an
        # older record names no CPU, and may still be rerun bit for bit on its own)
        identical = compare_metrics(original, rerun, exact=True)[0]
        saved = _keep_weights(record_file, original, outcome.path, rerun) if save_weights and identical else None
        return Comparison(original.get("metrics") or {}, rerun.get("metrics") or {},
                          "exact" if exact else f"tolerance {accuracy_tol:g} in accuracy, {loss_rtol:.0%} relative in loss",
                          diffs, agree, outcome.path if output_dir else None, saved, reason, original, rerun)


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
