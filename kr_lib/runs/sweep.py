"""Sweeps: a YAML file's grid of ablation runs, run one after another (or as Ray tasks), resumable.

A sweep file (read with ``yaml.safe_load``)::

    dataset: fashion_mnist
    description: what the sweep is for
    parameters: {stages: 3, epochs: 4}         # notebook parameters shared by every run
    grids:                                      # named sub-grids; each is a product over its lists
      dense:  {design: [dense], kr_ratio: [1], R: [16], seed: [0, 1]}
      fixed_r: {design: [bottleneck, separable], kr_ratio: ["1/4", 1, 4], R: [16], seed: [0, 1]}
      budget: {design: [bottleneck], kr_ratio: ["1/4", 1, 4], param_budget: [60000], seed: [0, 1]}
    presets:                                    # --preset NAME: overrides
      quick:
        description: ..., cost: ...
        parameters: {epochs: 1}                 # merged into every run's parameters
        axes: {seed: [0]}                       # replaces that axis in every grid that has it
        grids: {fixed_r: {kr_ratio: [1, 4]}}    # replaces axes of one grid (null drops the grid)

A grid entry with ``param_budget`` and no ``R`` is a budget run (R is solved). Every run of the grid is
checked (:func:`kr_lib.runs.check_parameters`) before the first one starts.

Running (:func:`run_sweep`): each run is the notebook ``notebooks/ablation.ipynb`` executed by papermill
(:func:`execute_run`); its record ``<output_dir>/<dataset>/<run_id>.json`` is written atomically at the
end, the executed notebook beside it. A run whose record exists is skipped, so a sweep killed at any
moment (SIGKILL included) and started again redoes only the unfinished runs -- the one that was cut off
resumes from its last epoch checkpoint. A run that raises is recorded with status ``"failed"`` (retried
only with ``retry_failed``); a diverged one is recorded as ``"diverged"``; the sweep goes on. Two sweeps
on one results folder (one per GPU, say) share the work: a run is claimed with a lock file
(:func:`run_lock`) and a run claimed by a live process is left to it.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..atomic import atomic_open, write_text_atomic
from .ablation import DEFAULTS, check_parameters, failed_record, scientific
from .records import REPO_ROOT, commit_staged, read_record, record_path, run_id, staged_path, write_record
from .weights import weights_path

NOTEBOOK = REPO_ROOT / "notebooks" / "ablation.ipynb"
SWEEP_KEYS = {"dataset", "description", "parameters", "grids", "presets"}
PRESET_KEYS = {"description", "cost", "parameters", "axes", "grids"}
#: Parameters a sweep file may not set: where things go is the command's business.
NOT_IN_SWEEP = {"output_dir", "device", "threads", "data_dir", "download", "staged_record", "save_record", "checkpoint", "sweep", "dataset"}


@dataclass
class Sweep:
    """A sweep file expanded for one preset: ``runs`` are checked parameter dicts (no device, no folders)."""

    path: Path
    dataset: str
    preset: str | None
    description: str
    cost: str
    runs: list[dict]


def _check_names(where: str, names, allowed) -> None:
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; accepted: {', '.join(sorted(allowed))}")


def load_sweep(path: str | os.PathLike, preset: str | None = None) -> Sweep:
    """Read a sweep file (safe YAML) and expand its grid for ``preset``; every run is checked here."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} not found")
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a sweep file is a YAML mapping with keys {', '.join(sorted(SWEEP_KEYS))}")
    _check_names(str(path), spec, SWEEP_KEYS)
    if "dataset" not in spec or "grids" not in spec:
        raise ValueError(f"{path}: needs 'dataset' and 'grids'")
    param_names = set(DEFAULTS) - NOT_IN_SWEEP
    base = dict(spec.get("parameters") or {})
    _check_names(f"{path}: parameters", base, param_names)
    presets = spec.get("presets") or {}
    description, cost, axes, grid_overrides = spec.get("description", ""), "", {}, {}
    if preset is not None:
        if preset not in presets:
            raise ValueError(f"{path}: no preset {preset!r}; it has: {', '.join(presets) or 'none'}")
        pre = presets[preset] or {}
        _check_names(f"{path}: preset {preset}", pre, PRESET_KEYS)
        _check_names(f"{path}: preset {preset}: parameters", pre.get("parameters") or {}, param_names)
        _check_names(f"{path}: preset {preset}: axes", pre.get("axes") or {}, param_names)
        base.update(pre.get("parameters") or {})
        axes = dict(pre.get("axes") or {})
        grid_overrides = dict(pre.get("grids") or {})
        _check_names(f"{path}: preset {preset}: grids", grid_overrides, spec["grids"] or {})
        description, cost = pre.get("description", description), str(pre.get("cost", ""))
    grids = spec["grids"]
    if not isinstance(grids, dict) or not grids:
        raise ValueError(f"{path}: 'grids' must map grid names to {{parameter: [values]}}")
    runs, seen = [], set()
    for name, grid in grids.items():
        if not isinstance(grid, dict):
            raise ValueError(f"{path}: grid {name!r} must map parameter names to lists of values")
        if name in grid_overrides and grid_overrides[name] is None:
            continue  # the preset drops this grid
        override = grid_overrides.get(name) or {}
        _check_names(f"{path}: grid {name}", {**grid, **override}, param_names)
        grid = {k: axes.get(k, v) for k, v in grid.items()}
        grid.update(override)
        for k, v in grid.items():
            if not isinstance(v, list) or not v:
                raise ValueError(f"{path}: grid {name!r}, {k}: give a non-empty list of values, got {v!r}")
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            params = {**base, **dict(zip(keys, values)), "dataset": spec["dataset"]}
            if "param_budget" in grid and params.get("param_budget") is not None and "R" not in grid:
                params["R"] = None
            try:
                checked = check_parameters(params)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{path}: grid {name!r}, run {dict(zip(keys, values))}: {err}") from None
            rid = run_id(scientific(checked))
            if rid not in seen:
                seen.add(rid)
                runs.append(checked)
    runs.sort(key=lambda p: p["seed"])  # every configuration once before the second seed: useful early
    return Sweep(path, spec["dataset"], preset, description, cost, runs)


def seed_time_estimates(runs, output_dir: str | os.PathLike, dataset: str) -> list[float | None]:
    """For each of ``runs`` (checked parameters), the median run time (seconds,
    :func:`~kr_lib.runs.records.run_time_s`) of the completed records in ``<output_dir>/<dataset>`` that ran
    the same configuration with another seed; None where there is none. Those records' machine, device and
    thread count set the scale: an estimate for running the rest where they ran."""
    import statistics

    from .records import read_records, run_time_s

    def key(params):  # the run id with the seed left out: one per configuration
        return run_id({**scientific(params), "seed": None})

    times: dict[str, list[float]] = {}
    for record in read_records(Path(output_dir) / dataset)[0]:
        seconds = run_time_s(record)
        if record["status"] == "completed" and seconds:
            times.setdefault(key(record["parameters"]), []).append(seconds)
    return [statistics.median(times[k]) if (k := key(p)) in times else None for p in runs]


@dataclass
class RunOutcome:
    """What became of one run of a sweep."""

    run_id: str
    status: str                    # completed, diverged, failed, or skipped (record existed)
    path: Path | None
    wall_time_s: float = 0.0
    message: str = ""


def _done(path: Path, retry_failed: bool) -> str | None:
    """The status of an existing valid record at ``path`` (None: the run must be done)."""
    if not path.is_file():
        return None
    try:
        status = read_record(path)["status"]
    except ValueError:
        return None  # a corrupt record is redone (kr results reports it until then)
    return None if (retry_failed and status == "failed") else status


def _error_message(err: BaseException) -> str:
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(err).__name__}: {err}"


def execute_run(params: Mapping[str, Any], output_dir: str | os.PathLike, notebook: str | os.PathLike = NOTEBOOK,
                progress: bool = False) -> RunOutcome:
    """Execute the ablation notebook for one run: record and executed notebook land in
    ``<output_dir>/<dataset>/<run_id>.{json,ipynb}``. A run that raises gets a ``"failed"`` record
    (the message says why; the executed notebook is kept as ``<run_id>.failed.ipynb``). Never raises for a
    failed run; raises ``ValueError`` for parameters that do not check."""
    from ..execute import execute_notebook

    output_dir = Path(output_dir).resolve()
    p = check_parameters({**params, "output_dir": str(output_dir), "save_record": True, "staged_record": True})
    p.pop("mode")
    rid = run_id(scientific(p))
    rec_path = record_path(output_dir, p["dataset"], rid)
    staged = staged_path(rec_path)
    staged.unlink(missing_ok=True)  # from an attempt killed between the two writes
    nb_path = rec_path.with_suffix(".ipynb")
    failed_nb = nb_path.with_name(nb_path.stem + ".failed.ipynb")
    start = time.perf_counter()
    try:
        # the notebook writes <run_id>.json.staged; the record exists only once the notebook is saved
        execute_notebook(notebook, nb_path, p, cwd=REPO_ROOT, progress=progress, cell_timeout=None)  # runs take hours
        if not staged.is_file():
            raise RuntimeError(f"the notebook {Path(notebook).name} finished without writing {staged.name}")
        record = read_record(commit_staged(rec_path))
        failed_nb.unlink(missing_ok=True)  # from an earlier failed attempt
        return RunOutcome(rid, record["status"], rec_path, time.perf_counter() - start, record.get("message", ""))
    except Exception as err:  # the sweep goes on; the failure is recorded
        message = _error_message(err)
        wall = time.perf_counter() - start
        if staged.is_file():  # this run wrote its record, a later cell failed: keep the record
            return RunOutcome(rid, read_record(commit_staged(rec_path))["status"], rec_path, wall, message)
        record = failed_record(check_parameters(p), message, wall)
        record["traceback"] = traceback.format_exception_only(type(err), err)[-1][-4000:]
        write_record(record, output_dir)
        return RunOutcome(rid, "failed", rec_path, wall, message)


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


def _ray_task(params: dict, notebook_text: str) -> dict:
    """Body of a Ray task: run in a temporary folder and send back the record and the executed notebook
    (so the cluster needs no shared file system)."""
    with tempfile.TemporaryDirectory(prefix="kr-sweep-") as tmp:
        nb = Path(tmp) / "ablation.ipynb"
        nb.write_text(notebook_text)
        outcome = execute_run(params, Path(tmp) / "results", notebook=nb)
        rec = read_record(outcome.path)
        executed = outcome.path.with_suffix(".ipynb")
        failed = outcome.path.with_name(outcome.path.stem + ".failed.ipynb")
        nb_file = executed if executed.is_file() else failed if failed.is_file() else None
        weights = weights_path(outcome.path)
        return {"record": rec, "notebook": nb_file.read_text() if nb_file else None,
                "notebook_name": nb_file.name if nb_file else None, "wall_time_s": outcome.wall_time_s,
                "weights": weights.read_bytes() if weights.is_file() else None}


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


def run_sweep(path: str | os.PathLike, preset: str | None = None, output_dir: str | os.PathLike = "results",
              device: str = "auto", threads: int | None = None, data_dir: str | os.PathLike | None = None,
              download: bool = False,
              backend: str = "local",
              address: str | None = None, retry_failed: bool = False, limit: int | None = None,
              progress: bool = True, notebook: str | os.PathLike = NOTEBOOK) -> SweepSummary:
    """Run a sweep file's grid (see the module docstring); returns a :class:`SweepSummary`.

    ``backend="local"``: one run after another in this process's machine. ``backend="ray"``: each run is
    a Ray task (one GPU each when the cluster has GPUs, else one CPU) on the cluster at ``address``
    (None: start a local one); records are written here as the tasks finish. ``limit``: at most that many
    runs are executed in this call (the rest wait for the next). ``device``/``threads``/``data_dir``/``download``
    are passed to every run (they are not part of a run's identity).
    """
    from tqdm import tqdm  # text bars: the same in a terminal, a notebook and the static book

    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    sweep = load_sweep(path, preset)
    output_dir = Path(output_dir).resolve()
    _ignore_scratch(output_dir)
    extra = {"device": device, "threads": threads, "data_dir": str(Path(data_dir).resolve()) if data_dir else None, "download": download,
             "sweep": {"file": _relative(sweep.path), "preset": preset}}
    summary = SweepSummary()
    todo = []
    for p in sweep.runs:
        rid = run_id(scientific(p))
        status = _done(record_path(output_dir, sweep.dataset, rid), retry_failed)
        if status is None:
            todo.append({**{k: v for k, v in p.items() if k != "mode"}, **extra})
        else:
            summary.outcomes.append(RunOutcome(rid, "skipped", record_path(output_dir, sweep.dataset, rid),
                                               message=f"record exists ({status})"))
    if limit is not None:
        todo = todo[:limit]
    bar = tqdm(total=len(sweep.runs), initial=len(summary.outcomes), desc=f"sweep {sweep.path.name}"
               + (f" [{preset}]" if preset else ""), unit="run", disable=not progress, dynamic_ncols=True)
    bar.write(f"{len(sweep.runs)} runs in the grid, {len(summary.outcomes)} already recorded, {len(todo)} to run "
              f"-> {output_dir / sweep.dataset}")
    try:
        if backend == "local":
            for params in todo:
                rid = run_id(scientific(check_parameters(params)))
                rec = record_path(output_dir, sweep.dataset, rid)
                with run_lock(rec) as mine:
                    if not mine:  # another sweep on this folder is running it now
                        outcome = RunOutcome(rid, "skipped", rec, message="running in another process")
                    elif _done(rec, retry_failed):  # finished by another sweep meanwhile
                        outcome = RunOutcome(rid, "skipped", rec, message="recorded meanwhile")
                    else:
                        outcome = execute_run(params, output_dir, notebook=notebook)
                summary.outcomes.append(outcome)
                _log(bar, outcome)
                bar.update(1)
        elif todo:  # nothing to do: no Ray started
            for outcome in _run_ray(todo, output_dir, sweep.dataset, address, notebook):
                summary.outcomes.append(outcome)
                _log(bar, outcome)
                bar.update(1)
    finally:
        bar.close()
    return summary


def _run_ray(todo: list[dict], output_dir: Path, dataset: str, address: str | None, notebook):
    """Send each run to Ray as a task; yield outcomes as they finish, after writing their files here."""
    try:
        import ray
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install 'kr-lib[ray]' (or pip install ray)") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        task = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=0)(_ray_task)
        text = Path(notebook).read_text()
        pending = {task.remote(p, text): p for p in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            params = pending.pop(ready[0])
            rid = run_id(scientific(check_parameters(params)))
            try:
                out = ray.get(ready[0])
                record = out["record"]
                if out.get("weights") is not None:  # before the record, as in run_ablation
                    with atomic_open(weights_path(record_path(output_dir, dataset, rid)), "wb") as fh:
                        fh.write(out["weights"])
                path = write_record(record, output_dir)
                if out["notebook"] is not None:
                    write_text_atomic(out["notebook"], path.with_name(out["notebook_name"]))
                yield RunOutcome(rid, record["status"], path, out["wall_time_s"], record.get("message", ""))
            except Exception as err:  # the task itself died (worker lost, ...): recorded as failed
                message = _error_message(err)
                record = failed_record(check_parameters({**params, "output_dir": str(output_dir)}), message)
                path = write_record(record, output_dir)
                yield RunOutcome(rid, "failed", path, 0.0, message)
    finally:
        if started_here:
            ray.shutdown()


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _ignore_scratch(output_dir: Path) -> None:
    """Keep checkpoints and half-written files out of git: a ``.gitignore`` in the results folder."""
    gitignore = output_dir / ".gitignore"
    if not gitignore.exists():
        output_dir.mkdir(parents=True, exist_ok=True)
        gitignore.write_text("# written by kr sweep: checkpoints and partial files are never committed\n"
                             ".checkpoints/\n*.partial\n*.partial.ipynb\n.*.partial\n*.json.staged\n*.lock\n")


#: The preset whose records a dataset's book page shows, and how to make them.
BOOK_PRESETS = {"fashion_mnist": "book", "moving_fashion_mnist": "book", "cifar10": "paper", "svhn": "paper",
                "ucf101": "paper"}
_FILL_OPTIONS = {"cifar10": " --device cuda --download", "svhn": " --device cuda --download",
                 "ucf101": " --device cuda --data-dir DATA_DIR"}


def book_progress(dataset: str, output_dir: str | os.PathLike | None = None) -> dict:
    """How far the book preset of ``sweeps/<dataset>.yaml`` has got in ``<output_dir>/<dataset>``
    (default: the checkout's ``results/``): ``preset``, ``planned`` (runs in its grid), ``completed``,
    ``failed`` (diverged or failed records), ``missing`` (no record yet), ``cost`` (the sweep file's
    words), ``command`` (the one that runs the missing ones; it skips the recorded), and ``estimated``:
    how many missing runs have a recorded other seed, whose run times sum to ``estimated_hours``
    (:func:`seed_time_estimates`)."""
    if dataset not in BOOK_PRESETS:
        raise ValueError(f"no sweep file for {dataset!r}; sweeps exist for {', '.join(BOOK_PRESETS)}")
    sweep = load_sweep(REPO_ROOT / "sweeps" / f"{dataset}.yaml", BOOK_PRESETS[dataset])
    output_dir = Path(output_dir) if output_dir is not None else REPO_ROOT / "results"
    statuses = [_done(record_path(output_dir, dataset, run_id(scientific(p))), False) for p in sweep.runs]
    missing = [p for p, s in zip(sweep.runs, statuses) if s is None]
    estimates = [t for t in seed_time_estimates(missing, output_dir, dataset) if t is not None]
    return {"preset": sweep.preset, "planned": len(sweep.runs), "completed": statuses.count("completed"),
            "failed": sum(s not in (None, "completed") for s in statuses), "missing": len(missing),
            "cost": " ".join(sweep.cost.split()), "command": fill_commands(dataset)[0],
            "estimated": len(estimates), "estimated_hours": sum(estimates) / 3600}


def fill_commands(dataset: str) -> list[str]:
    """The exact commands that would fill ``results/<dataset>`` with the book preset's records."""
    if dataset not in BOOK_PRESETS:
        raise ValueError(f"no sweep file for {dataset!r}; sweeps exist for {', '.join(BOOK_PRESETS)}")
    cmd = f"kr sweep sweeps/{dataset}.yaml --preset {BOOK_PRESETS[dataset]}{_FILL_OPTIONS.get(dataset, '')}"
    return [cmd, f"kr results {dataset}", f"git add results/{dataset}"]
