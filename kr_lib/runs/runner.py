"""Running a sweep's grid of ablations (:func:`run_sweep`), resumable, shared between processes by lock files.

Each run is the notebook ``notebooks/ablation.ipynb`` of the project (:func:`kr_lib.project.find_project`)
executed by papermill (:func:`kr_lib.runs.notebook_run.execute_run`); its record ``<output_dir>/<dataset>/<run_id>.json`` is
written atomically at the end, the executed notebook beside it. A run whose record exists is skipped, so a
sweep killed at any moment (SIGKILL included) and started again redoes only the unfinished runs -- the one
that was cut off resumes from its last epoch checkpoint. A run that raises is recorded with status
``"failed"`` (retried only with ``retry_failed``); a diverged one is recorded as ``"diverged"``; the sweep
goes on. Two sweeps on one results folder (one per GPU, say) share the work: a run is claimed with a lock
file (:func:`run_lock`) and a run claimed by a live process is left to it; ``workers=N`` does the same on
one machine: N processes, each pinned to its share of the cores (:mod:`kr_lib.parallel`), take the runs in
turn. ``backend="ray"`` sends each run to a Ray cluster instead (:mod:`kr_lib.runs.ray_runner`).
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..parallel import available_cpus, worker_pool
from ..progress import progress_bar
from ..project import relative_to_project
from ..validate import positive_int
from .identity import record_path
from .notebook_run import RunOutcome, default_notebook, error_message, execute_run  # noqa: F401 (re-exported)
from .ray_runner import run_ray
from .parameters import check_parameters
from .records import recorded_status
from .sweepfile import load_sweep


@contextlib.contextmanager
def run_lock(record: Path):
    """Claim a run for this process: ``<run_id>.lock`` created exclusively, holding host and pid. Yields
    True when claimed (and removes the lock afterwards), False when a live process on this host holds it.
    A lock left by a killed process (its pid is gone) is taken over, so SIGKILL never blocks a run."""
    lock = record.with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                host, pid = lock.read_text().split()
            except (OSError, ValueError):
                host, pid = "", "0"
            if host == socket.gethostname() and not _alive(int(pid)):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            yield False
            return
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        try:
            yield True
        finally:
            lock.unlink(missing_ok=True)
        return
    yield False


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_and_run(p, output_dir: Path, notebook: Path, retry_failed: bool = False) -> RunOutcome:
    """One run of a sweep, if this process can claim it (:func:`run_lock`) and it is still unrecorded:
    executed (:func:`execute_run`), else skipped with the reason."""
    rec = p.record_path()
    with run_lock(rec) as mine:
        if not mine:  # another sweep (or worker) on this folder is running it now
            return RunOutcome(p.run_id, "skipped", rec, message="running in another process")
        if recorded_status(rec, retry_failed):  # finished by another sweep meanwhile
            return RunOutcome(p.run_id, "skipped", rec, message="recorded meanwhile")
        return execute_run(p, output_dir, notebook=notebook)


def _claim_and_run_in_worker(params: dict, output_dir: str, notebook: str, retry_failed: bool) -> RunOutcome:
    """:func:`claim_and_run` in a worker process: the parameters travel as a plain dict, checked again."""
    return claim_and_run(check_parameters(params), Path(output_dir), Path(notebook), retry_failed)


def _run_in_workers(todo, output_dir: Path, notebook: Path, retry_failed: bool, workers: int, threads: int):
    """Yield the outcomes of ``todo`` as ``workers`` pinned processes finish them (in the sweep's order
    they start). Each run is claimed by its lock as in a sequential sweep, so a killed sweep resumes alike."""
    from concurrent.futures import as_completed

    with worker_pool(workers, threads) as pool:
        futures = [pool.submit(_claim_and_run_in_worker, dict(p), str(output_dir), str(notebook), retry_failed)
                   for p in todo]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:  # stopped early (an error, Ctrl-C): start nothing more
                future.cancel()


@dataclass
class SweepSummary:
    """Counts of a sweep run: every outcome, and how many runs were completed, skipped, failed, diverged."""

    outcomes: list[RunOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def __str__(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in ("completed", "skipped", "diverged", "failed")]
        return f"{len(self.outcomes)} runs: " + ", ".join(parts)


def _log(bar, outcome: RunOutcome) -> None:
    extra = f" -- {outcome.message}" if outcome.message and outcome.status != "completed" else ""
    bar.write(f"{time.strftime('%H:%M:%S')} {outcome.status:9s} {outcome.run_id} ({outcome.wall_time_s:.0f} s){extra}")


def _ignore_scratch(output_dir: Path) -> None:
    """Keep checkpoints and half-written files out of git: a ``.gitignore`` in the results folder."""
    gitignore = output_dir / ".gitignore"
    if not gitignore.exists():
        output_dir.mkdir(parents=True, exist_ok=True)
        gitignore.write_text("# written by kr sweep: checkpoints and partial files are never committed\n"
                             ".checkpoints/\n*.partial\n*.partial.ipynb\n.*.partial\n*.json.staged\n*.lock\n")


def run_sweep(path: str | os.PathLike, preset: str | None = None, output_dir: str | os.PathLike = "results",
              device: str = "auto", threads: int | None = None, data_dir: str | os.PathLike | None = None,
              download: bool = False,
              backend: str = "local",
              address: str | None = None, retry_failed: bool = False, limit: int | None = None,
              progress: bool = True, notebook: str | os.PathLike | None = None, workers: int = 1) -> SweepSummary:
    """Run a sweep file's grid (see the module docstring); returns a :class:`SweepSummary`.

    ``backend="local"``: one run after another in this process's machine. ``backend="ray"``: each run is
    a Ray task (one GPU each when the cluster has GPUs, else one CPU) on the cluster at ``address``
    (None: start a local one); records are written here as the tasks finish. ``limit``: at most that many
    runs are executed in this call (the rest wait for the next). ``device``/``threads``/``data_dir``/``download``
    are passed to every run (they are not part of a run's identity). ``notebook``: the ablation notebook
    (default: the project's, :func:`default_notebook`). ``workers``: local runs side by side in that many
    processes (:func:`claim_and_run` in each), ``threads`` torch threads each (default: the available cores
    divided among them), pinned to their own cores when they fit; the summary counts every worker's runs.
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    workers = positive_int(workers, "workers")
    threads = positive_int(threads, "threads", optional=True)
    if workers > 1 and backend != "local":
        raise ValueError("workers is for backend 'local'; Ray places its tasks itself")
    if workers > 1 and threads is None:
        threads = max(1, len(available_cpus()) // workers)
    sweep = load_sweep(path, preset)
    notebook = Path(notebook) if notebook is not None else default_notebook()
    output_dir = Path(output_dir).resolve()
    _ignore_scratch(output_dir)
    extra = {"device": device, "threads": threads, "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
             "download": download, "sweep": {"file": relative_to_project(sweep.path), "preset": preset},
             "output_dir": str(output_dir)}
    summary = SweepSummary()
    todo = []
    for p in sweep.runs:
        rec = record_path(output_dir, sweep.dataset, p.run_id)
        status = recorded_status(rec, retry_failed)
        if status is None:
            todo.append(p.replace(**extra))  # checked again: the device and folders of this machine
        else:
            summary.outcomes.append(RunOutcome(p.run_id, "skipped", rec, message=f"record exists ({status})"))
    if limit is not None:
        todo = todo[:limit]
    bar = progress_bar(total=len(sweep.runs), initial=len(summary.outcomes), desc=f"sweep {sweep.path.name}"
                       + (f" [{preset}]" if preset else ""), unit="run", enabled=progress, dynamic_ncols=True)
    bar.write(f"{len(sweep.runs)} runs in the grid, {len(summary.outcomes)} already recorded, {len(todo)} to run "
              f"-> {output_dir / sweep.dataset}"
              + (f" ({workers} workers, {threads} thread(s) each)" if workers > 1 and backend == "local" else ""))
    try:
        if backend == "local" and workers > 1 and todo:
            for outcome in _run_in_workers(todo, output_dir, notebook, retry_failed, min(workers, len(todo)), threads):
                summary.outcomes.append(outcome)
                _log(bar, outcome)
                bar.update(1)
        elif backend == "local":
            for p in todo:
                outcome = claim_and_run(p, output_dir, notebook, retry_failed)
                summary.outcomes.append(outcome)
                _log(bar, outcome)
                bar.update(1)
        elif todo:  # nothing to do: no Ray started
            for outcome in run_ray(todo, output_dir, address, notebook):
                summary.outcomes.append(outcome)
                _log(bar, outcome)
                bar.update(1)
    finally:
        bar.close()
    return summary
