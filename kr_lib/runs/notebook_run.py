"""One ablation run as the executed notebook: ``notebooks/ablation.ipynb`` of the project
(:func:`kr_lib.project.find_project`) run by papermill with a run's parameters; the record
``<output_dir>/<dataset>/<run_id>.json`` is written at the end (staged, then renamed once the executed
notebook ``<run_id>.ipynb`` is saved beside it), or a ``"failed"`` record when the notebook raises."""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..project import find_project, project_of
from .ablation import failed_record
from .identity import staged_path
from .parameters import check_parameters
from .records import commit_staged, read_record, write_record


def default_notebook(project: str | os.PathLike | None = None) -> Path:
    """``notebooks/ablation.ipynb`` of the project (:func:`kr_lib.project.find_project`)."""
    return find_project(project) / "notebooks" / "ablation.ipynb"


@dataclass
class RunOutcome:
    """What became of one run of a sweep."""

    run_id: str
    status: str                    # completed, diverged, failed, or skipped (record existed)
    path: Path | None
    wall_time_s: float = 0.0
    message: str = ""


def error_message(err: BaseException) -> str:
    """One line for a failed run: papermill's cell error (its ``ename: evalue``) or the exception."""
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(err).__name__}: {err}"


def execute_run(params: Mapping[str, Any], output_dir: str | os.PathLike, notebook: str | os.PathLike | None = None,
                progress: bool = False) -> RunOutcome:
    """Execute the ablation notebook (default: the project's, :func:`default_notebook`) for one run: record
    and executed notebook land in ``<output_dir>/<dataset>/<run_id>.{json,ipynb}``. A run that raises gets a
    ``"failed"`` record (the message says why; the executed notebook is kept as ``<run_id>.failed.ipynb``).
    Never raises for a failed run; raises ``ValueError`` for parameters that do not check."""
    from ..execute import execute_notebook

    output_dir = Path(output_dir).resolve()
    p = check_parameters({**params, "output_dir": str(output_dir), "save_record": True, "staged_record": True})
    notebook = Path(notebook) if notebook is not None else default_notebook()
    rec_path = p.record_path()
    staged = staged_path(rec_path)
    staged.unlink(missing_ok=True)  # from an attempt killed between the two writes
    nb_path = rec_path.with_suffix(".ipynb")
    failed_nb = nb_path.with_name(nb_path.stem + ".failed.ipynb")
    start = time.perf_counter()
    try:
        # the notebook writes <run_id>.json.staged; the record exists only once the notebook is saved
        execute_notebook(notebook, nb_path, p.notebook_parameters(),
                         cwd=project_of(notebook) or notebook.resolve().parent, progress=progress,
                         cell_timeout=None)  # runs take hours
        if not staged.is_file():
            raise RuntimeError(f"the notebook {notebook.name} finished without writing {staged.name}")
        record = read_record(commit_staged(rec_path))
        failed_nb.unlink(missing_ok=True)  # from an earlier failed attempt
        return RunOutcome(p.run_id, record["status"], rec_path, time.perf_counter() - start, record.get("message", ""))
    except Exception as err:  # the sweep goes on; the failure is recorded
        message = error_message(err)
        wall = time.perf_counter() - start
        if staged.is_file():  # this run wrote its record, a later cell failed: keep the record
            return RunOutcome(p.run_id, read_record(commit_staged(rec_path))["status"], rec_path, wall, message)
        record = failed_record(p, message, wall)
        record["traceback"] = traceback.format_exception_only(type(err), err)[-1][-4000:]
        write_record(record, output_dir)
        return RunOutcome(p.run_id, "failed", rec_path, wall, message)
