"""One ablation run as the executed notebook: ``notebooks/ablation.ipynb`` of the project
(:func:`kr_lib.project.find_project`) run by papermill with a run's parameters; the record
``<output_dir>/<dataset>/<run_id>.json`` is written at the end (staged, then renamed once the executed
notebook ``<run_id>.ipynb`` is saved beside it), or a ``"failed"`` record when the notebook raises.

Everything that can be checked before a kernel starts is checked first (:func:`check_runnable`: the
parameters, the device, the data, the output folder), so a bad input is one line and no record. Ctrl-C
(``KeyboardInterrupt``) records nothing as failed: a run that had finished keeps its record, an unfinished
one its epoch checkpoints, and the same command resumes."""
from __future__ import annotations

import json
import os
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..atomic import write_text_atomic
from ..project import find_project, project_of
from ..validate import writable_folder
from .ablation import failed_record
from .identity import staged_path
from .parameters import AblationParams, check_parameters
from .records import check_run_id, commit_staged, read_record, validate_record, write_record

#: Datasets that ``download`` can fetch (the others are generated, or too large to fetch automatically).
DOWNLOADABLE = ("fashion_mnist", "cifar10", "svhn")


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


def resolved_folder(folder: str | os.PathLike | None) -> str | None:
    """A folder parameter as an absolute path, a relative one taken from the working directory (the one
    rule for ``-p data_dir``, ``--data-dir`` and ``--output-dir``: the kernel runs in the project's root)."""
    if not isinstance(folder, (str, os.PathLike)):
        return folder  # None, or a value the parameter check names (data_dir must be a path)
    return str(Path(folder).expanduser().resolve())


def check_runnable(p: AblationParams, download_flag: str = "download=True") -> None:
    """Raise ``ValueError``/``FileNotFoundError`` (one line naming the problem and the fix) for what would
    make the run fail before it trains: a device this machine lacks (:func:`kr_lib.device.resolve_device`),
    data that is not where it is looked for (:func:`kr_lib.data.check_data`: a data folder that does not
    exist or is a file, files missing without ``download``), an output folder this process cannot write.
    ``download_flag``: how the caller's user asks for a download (``-p download=true``, ``--download``).
    Reads no data and writes nothing."""
    from ..data import check_data
    from ..device import resolve_device

    if p.device == "meta":
        raise ValueError("device 'meta' holds shapes only and cannot train; use auto, cpu, cuda or mps")
    resolve_device(p.device)
    try:
        check_data(p.dataset, p.data_dir, p.download, **p.dataset_options)
    except FileNotFoundError as err:
        if p.download or p.dataset not in DOWNLOADABLE:
            raise
        raise FileNotFoundError(f"{err} To fetch it (online): {download_flag}.") from None
    writable_folder(p.results_root, "the output folder")


def _staged_record(rec_path: Path, rid: str) -> dict | None:
    """The staged record ``<run_id>.json.staged`` when it is a valid record of this run, else None."""
    staged = staged_path(rec_path)
    try:
        record = json.loads(staged.read_text())
        validate_record(record)
        check_run_id(record)
    except (OSError, ValueError):
        return None
    return record if record["run_id"] == rid else None


def portable_notebook(nb_path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Rewrite an executed notebook so that it names the checkout ``root``'s folders relative to it (papermill
    stores its input and output paths, and the parameters cell and outputs print ``output_dir``): a
    committed notebook names no machine's paths. Atomic; True when something was rewritten."""
    nb_path, root = Path(nb_path), Path(root).resolve()
    text = nb_path.read_text()
    new = text
    for form in {str(root), json.dumps(str(root))[1:-1]}:  # as written, and as a JSON string escapes it
        # the root followed by a separator, or ending a name: not a sibling folder that starts alike
        new = re.sub(re.escape(form) + r"(/|(?![\w.-]))", lambda m: "" if m.group(1) == "/" else ".", new)
    if new == text:
        return False
    write_text_atomic(new, nb_path)
    return True


def _keep_finished(rec_path: Path, rid: str) -> RunOutcome | None:
    """A run cut off after its notebook wrote the staged record (it trained to the end): keep that record,
    with the executed notebook as far as papermill saved it (``<run_id>.ipynb``, else the ``.failed`` or
    ``.partial`` notebook of the cut-off attempt, renamed), instead of throwing the result away. None when
    there is no finished result to keep (a staged file without a valid record is removed)."""
    staged = staged_path(rec_path)
    if not staged.exists():
        return None
    record = _staged_record(rec_path, rid)
    nb_path = rec_path.with_suffix(".ipynb")
    saved = [nb_path.with_name(nb_path.stem + suffix) for suffix in (".failed.ipynb", ".partial.ipynb")]
    if record is None or not (nb_path.is_file() or any(s.is_file() for s in saved)):
        staged.unlink(missing_ok=True)  # half a result: the run is redone (from its checkpoint)
        return None
    for s in saved:
        if s.is_file():
            if nb_path.is_file():
                s.unlink()
            else:
                os.replace(s, nb_path)
    commit_staged(rec_path)
    return RunOutcome(rid, record["status"], rec_path, 0.0, "kept the record of a run finished before an interruption")


def _interrupted(rec_path: Path, rid: str) -> KeyboardInterrupt:
    """Ctrl-C during a run: keep its record if it had finished, else remove the notebook of the cut-off
    attempt (it is not a failure; the epoch checkpoints stay, so the same command resumes)."""
    if _keep_finished(rec_path, rid) is None:
        nb_path = rec_path.with_suffix(".ipynb")
        for suffix in (".failed.ipynb", ".partial.ipynb"):
            nb_path.with_name(nb_path.stem + suffix).unlink(missing_ok=True)
    return KeyboardInterrupt()


def execute_run(params: Mapping[str, Any], output_dir: str | os.PathLike, notebook: str | os.PathLike | None = None,
                progress: bool = False, download_flag: str = "download=True") -> RunOutcome:
    """Execute the ablation notebook (default: the project's, :func:`default_notebook`) for one run: record
    and executed notebook land in ``<output_dir>/<dataset>/<run_id>.{json,ipynb}``. A run that raises gets a
    ``"failed"`` record (the message says why; the executed notebook is kept as ``<run_id>.failed.ipynb``).
    Never raises for a failed run; raises ``ValueError``/``FileNotFoundError`` for parameters that do not
    check or a run that cannot start (:func:`check_runnable`, before any kernel), and ``KeyboardInterrupt``
    on Ctrl-C (nothing recorded as failed). ``data_dir`` and ``output_dir`` relative to the working directory."""
    from ..execute import execute_notebook

    output_dir = Path(output_dir).resolve()
    p = check_parameters({**params, "output_dir": str(output_dir), "save_record": True, "staged_record": True,
                          "data_dir": resolved_folder(params.get("data_dir"))})
    check_runnable(p, download_flag)
    notebook = Path(notebook) if notebook is not None else default_notebook()
    rec_path = p.record_path()
    staged = staged_path(rec_path)
    kept = _keep_finished(rec_path, p.run_id)  # an attempt cut off after it finished (Ctrl-C, SIGKILL)
    if kept is not None:
        return kept
    nb_path = rec_path.with_suffix(".ipynb")
    failed_nb = nb_path.with_name(nb_path.stem + ".failed.ipynb")
    start = time.perf_counter()
    try:
        # the notebook writes <run_id>.json.staged; the record exists only once the notebook is saved
        root = project_of(notebook) or notebook.resolve().parent
        execute_notebook(notebook, nb_path, p.notebook_parameters(), cwd=root, progress=progress,
                         cell_timeout=None)  # runs take hours
        if not staged.is_file():
            raise RuntimeError(f"the notebook {notebook.name} finished without writing {staged.name}")
        portable_notebook(nb_path, root)  # before the record exists: a committed pair names no machine path
        record = read_record(commit_staged(rec_path))
        failed_nb.unlink(missing_ok=True)  # from an earlier failed attempt
        return RunOutcome(p.run_id, record["status"], rec_path, time.perf_counter() - start, record.get("message", ""))
    except KeyboardInterrupt:
        raise _interrupted(rec_path, p.run_id) from None
    except Exception as err:  # the sweep goes on; the failure is recorded
        if getattr(err, "ename", None) == "KeyboardInterrupt":  # the kernel got the Ctrl-C: not a failure
            raise _interrupted(rec_path, p.run_id) from None
        message = error_message(err)
        wall = time.perf_counter() - start
        if staged.is_file():  # this run wrote its record, a later cell failed: keep the record
            return RunOutcome(p.run_id, read_record(commit_staged(rec_path))["status"], rec_path, wall, message)
        record = failed_record(p, message, wall)
        record["traceback"] = traceback.format_exception_only(type(err), err)[-1][-4000:]
        write_record(record, output_dir)
        return RunOutcome(p.run_id, "failed", rec_path, wall, message)
