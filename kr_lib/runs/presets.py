"""The book's sweeps: which preset of ``sweeps/<dataset>.yaml`` each dataset's results page shows, how far
its records have got, what the missing runs would cost, and the commands that fill them. Reads sweep files
and records only: drawing a results page never loads the runner."""
from __future__ import annotations

import os
import statistics
from pathlib import Path

from ..project import find_project
from .identity import record_path, run_id, scientific
from .records import read_records, recorded_status, run_time_s
from .sweepfile import load_sweep

#: The preset whose records a dataset's book page shows, and how to make them.
BOOK_PRESETS = {"fashion_mnist": "book", "moving_fashion_mnist": "book", "cifar10": "paper", "svhn": "paper",
                "ucf101": "paper"}
_FILL_OPTIONS = {"cifar10": " --device cuda --download", "svhn": " --device cuda --download",
                 "ucf101": " --device cuda --data-dir DATA_DIR"}


def seed_time_estimates(runs, output_dir: str | os.PathLike, dataset: str) -> list[float | None]:
    """For each of ``runs`` (checked parameters), the median run time (seconds,
    :func:`~kr_lib.runs.records.run_time_s`) of the completed records in ``<output_dir>/<dataset>`` that ran
    the same configuration with another seed; None where there is none. Those records' machine, device and
    thread count set the scale: an estimate for running the rest where they ran."""

    def key(params):  # the run id with the seed left out: one per configuration
        return run_id({**scientific(params), "seed": None})

    times: dict[str, list[float]] = {}
    for record in read_records(Path(output_dir) / dataset)[0]:
        seconds = run_time_s(record)
        if record["status"] == "completed" and seconds:
            times.setdefault(key(record["parameters"]), []).append(seconds)
    return [statistics.median(times[k]) if (k := key(p)) in times else None for p in runs]


def _check_dataset(dataset: str) -> None:
    if dataset not in BOOK_PRESETS:
        raise ValueError(f"no sweep file for {dataset!r}; sweeps exist for {', '.join(BOOK_PRESETS)}")


def book_progress(dataset: str, output_dir: str | os.PathLike | None = None,
                  project: str | os.PathLike | None = None) -> dict:
    """How far the book preset of ``sweeps/<dataset>.yaml`` has got in ``<output_dir>/<dataset>``
    (default: the project's ``results/``; the project: :func:`kr_lib.project.find_project`): ``preset``,
    ``planned`` (runs in its grid), ``completed``, ``failed`` (diverged or failed records), ``missing`` (no
    record yet), ``cost`` (the sweep file's words), ``command`` (the one that runs the missing ones; it skips
    the recorded), and ``estimated``: how many missing runs have a recorded other seed, whose run times sum
    to ``estimated_hours`` (:func:`seed_time_estimates`)."""
    _check_dataset(dataset)
    root = find_project(project)
    sweep = load_sweep(root / "sweeps" / f"{dataset}.yaml", BOOK_PRESETS[dataset])
    output_dir = Path(output_dir) if output_dir is not None else root / "results"
    statuses = [recorded_status(record_path(output_dir, dataset, p.run_id)) for p in sweep.runs]
    missing = [p for p, s in zip(sweep.runs, statuses) if s is None]
    estimates = [t for t in seed_time_estimates(missing, output_dir, dataset) if t is not None]
    return {"preset": sweep.preset, "planned": len(sweep.runs), "completed": statuses.count("completed"),
            "failed": sum(s not in (None, "completed") for s in statuses), "missing": len(missing),
            "cost": " ".join(sweep.cost.split()), "command": fill_commands(dataset)[0],
            "estimated": len(estimates), "estimated_hours": sum(estimates) / 3600}


def fill_commands(dataset: str) -> list[str]:
    """The exact commands that would fill ``results/<dataset>`` with the book preset's records."""
    _check_dataset(dataset)
    cmd = f"kr sweep sweeps/{dataset}.yaml --preset {BOOK_PRESETS[dataset]}{_FILL_OPTIONS.get(dataset, '')}"
    return [cmd, f"kr results {dataset}", f"git add results/{dataset}"]
