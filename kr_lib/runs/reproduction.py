"""Cross-CPU reproduction records: a committed run rerun on another CPU, and the spread of the differences.

``kr reproduce`` holds a rerun to *identical* metrics only on the record's own CPU (``kr_lib.runs.reproduce``,
:func:`~kr_lib.runs.reproduce.exact_rule`); elsewhere oneDNN, ATen and MKL pick kernels for another
instruction set, sum in another order, and the rounding differences grow over the epochs of training. Each
comparison is kept as one small JSON file under ``results/reproduction/`` (the record's id, the CPU
capability of both runs, the recorded and rerun test accuracy and loss, their difference, the rerun's wall
time); :func:`cross_cpu_spread` reads them and gives the largest difference, which the Rerun page and the
results pages print beside the thread-count noise floor.

The committed comparisons were made on one machine with the kernels capped at AVX2
(:data:`AVX2_EMULATION`): an emulated second CPU, not a second machine. Reruns on the machine's own kernels
(nothing emulated) are kept beside them as same-CPU controls: they show whether the record still reproduces
exactly here, so that a cross-CPU difference is the CPU's and not a change of the code since the record.
``scripts/cross_cpu_reproduction.py`` makes both.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Iterable, Mapping

from ..atomic import write_json_atomic
from .pages import TITLES

SCHEMA = 1
#: The folder of the comparisons under a results root (``results/reproduction``).
FOLDER = "reproduction"
#: Environment that makes torch (ATen), oneDNN and MKL pick the kernels an AVX2-only x86 CPU would.
AVX2_EMULATION = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
#: The metrics a comparison keeps.
METRICS = ("test_accuracy", "test_loss")


def _side(record: Mapping) -> dict:
    """What a comparison keeps of one run: where it ran (CPU, threads, run code) and its metrics."""
    machine, timing = record.get("machine") or {}, record.get("timing") or {}
    metrics = record.get("metrics") or {}
    return {"cpu_model": machine.get("cpu_model"), "cpu_capability": machine.get("cpu_capability"),
            "torch_threads": timing.get("torch_threads"), "run_code": (record.get("versions") or {}).get("run_code"),
            "torch": (record.get("versions") or {}).get("torch"), "wall_time_s": timing.get("wall_time_s"),
            **{k: metrics.get(k) for k in METRICS}}


def comparison_record(original: Mapping, rerun: Mapping, *, rule: str, reason: str,
                      environment: Mapping[str, str] | None = None, note: str = "") -> dict:
    """One comparison: the record's id and dataset, both runs (:func:`_side`), ``difference`` (rerun minus
    recorded, per metric; None where either is missing), the ``kr reproduce`` rule and its reason, and the
    ``environment`` variables the rerun ran under (the AVX2 cap, when emulated). No machine paths."""
    a, b = _side(original), _side(rerun)
    difference = {k: (b[k] - a[k] if a[k] is not None and b[k] is not None else None) for k in METRICS}
    return {"schema": SCHEMA, "run_id": original["run_id"], "dataset": original["parameters"]["dataset"],
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "environment": dict(environment or {}), "emulated": bool(environment), "note": note,
            "recorded": a, "rerun": b, "difference": difference, "rule": rule, "reason": reason}


def comparison_path(folder: str | os.PathLike, record: Mapping) -> Path:
    """``<folder>/<run_id>-<rerun capability>.json``: one comparison per record and rerun instruction set."""
    capability = str(record["rerun"].get("cpu_capability") or "unknown").lower()
    return Path(folder) / f"{record['run_id']}-{capability}.json"


def write_comparison(record: Mapping, folder: str | os.PathLike) -> Path:
    """Write one comparison atomically into ``folder``; return its path."""
    return write_json_atomic(record, comparison_path(folder, record))


def read_comparisons(folder: str | os.PathLike) -> list[dict]:
    """Every comparison ``*.json`` in ``folder`` (sorted by name); ``ValueError`` naming a file that is not one.
    A missing folder gives ``[]``."""
    out = []
    for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        try:
            record = json.loads(path.read_text())
            if record.get("schema") != SCHEMA or not all(k in record for k in ("run_id", "recorded", "rerun", "difference")):
                raise ValueError("not a reproduction record (schema, run_id, recorded, rerun, difference)")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, ValueError) as err:
            raise ValueError(f"{path.name}: {err}") from None
        out.append(record)
    return out


def is_cross_cpu(comparison: Mapping) -> bool:
    """Did the two runs of a comparison use different CPUs? Yes for a rerun under an emulation environment,
    or when both runs name their CPU (model and capability) and these differ; no for a same-CPU control,
    or when the record names no CPU and nothing was emulated (it cannot be told)."""
    if comparison.get("emulated"):
        return True
    a, b = comparison["recorded"], comparison["rerun"]
    keys = ("cpu_model", "cpu_capability")
    return all(a.get(k) is not None and b.get(k) is not None for k in keys) and any(a[k] != b[k] for k in keys)


def cross_cpu(records: Iterable[Mapping]) -> list[dict]:
    """The cross-CPU comparisons (:func:`is_cross_cpu`) of ``records``, as opposed to same-CPU controls."""
    return [r for r in records if is_cross_cpu(r)]


def cross_cpu_spread(folder: str | os.PathLike) -> dict:
    """The spread of the cross-CPU comparisons in ``folder`` (:func:`cross_cpu`): ``count``,
    ``max_abs_accuracy`` (the largest absolute difference of the rerun's test accuracy from the record's;
    None without comparisons), ``max_rel_loss`` (the largest absolute difference of the test loss over the
    recorded loss) and ``differences``, one dict per comparison (run_id, both capabilities, recorded and rerun accuracy, the accuracy and loss difference,
    the rerun's wall time), in file order; ``datasets`` the datasets of the records compared; ``controls``
    the same-CPU reruns (nothing emulated) and ``controls_identical`` how many of them gave identical metrics."""
    every = read_comparisons(folder)
    rows, chosen = [], cross_cpu(every)
    for r in chosen:
        loss = r["recorded"].get("test_loss")
        dloss = r["difference"].get("test_loss")
        rows.append({"run_id": r["run_id"], "recorded_capability": r["recorded"].get("cpu_capability"),
                     "rerun_capability": r["rerun"].get("cpu_capability"),
                     "recorded_accuracy": r["recorded"].get("test_accuracy"),
                     "rerun_accuracy": r["rerun"].get("test_accuracy"),
                     "accuracy_difference": r["difference"].get("test_accuracy"), "loss_difference": dloss,
                     "loss_relative": abs(dloss) / loss if dloss is not None and loss else None,
                     "rerun_wall_time_s": r["rerun"].get("wall_time_s")})
    acc = [abs(r["accuracy_difference"]) for r in rows if r["accuracy_difference"] is not None]
    rel = [r["loss_relative"] for r in rows if r["loss_relative"] is not None]
    controls = [r for r in every if not is_cross_cpu(r)]
    return {"count": len(rows), "max_abs_accuracy": max(acc) if acc else None,
            "max_rel_loss": max(rel) if rel else None, "differences": rows,
            "datasets": sorted({r["dataset"] for r in chosen}),
            "controls": len(controls),
            "controls_identical": sum(all(v == 0 for v in r["difference"].values()) for r in controls)}


def spread_text(spread: Mapping) -> str:
    """One sentence for a page: the largest cross-CPU test-accuracy difference and what it rests on."""
    if not spread["count"]:
        return "Cross-CPU spread: not measured (no rerun on another CPU in `results/reproduction/`)."
    diffs = ", ".join(f"{r['accuracy_difference']:+.4f}" for r in spread["differences"])
    names = ", ".join(TITLES.get(d, d) for d in spread["datasets"])
    return (f"Cross-CPU spread = {spread['max_abs_accuracy']:.4f}: the largest test-accuracy difference when a "
            f"committed {names} record is rerun with another CPU's kernels ({spread['count']} rerun(s): {diffs}; "
            "emulated on one machine by capping torch, oneDNN and MKL at AVX2, not measured on a second machine).")


def beside_noise_floor(spread: Mapping, floor: float | None) -> str:
    """:func:`spread_text` and which is larger, the cross-CPU spread or the thread-count noise floor ``floor``
    (:func:`kr_lib.runs.findings.noise_floor`), and that the verdict rule uses the latter."""
    text = spread_text(spread)
    if not spread["count"]:
        return text
    x = spread["max_abs_accuracy"]
    if floor is None:
        compare = "There is no thread-count floor on this page to set it against"
    elif x > floor:
        compare = f"It is larger than the thread-count noise floor $f$ = {floor:.4f}"
    elif x < floor:
        compare = f"It is smaller than the thread-count noise floor $f$ = {floor:.4f}"
    else:
        compare = f"It equals the thread-count noise floor $f$ = {floor:.4f}"
    return (f"{text} {compare}. The verdicts above use $f$ alone; rerun on another CPU, each accuracy here "
            f"may move by up to about {x:.4f}.")
