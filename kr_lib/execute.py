"""Executing a parameterized notebook with papermill, after checking its parameter names.

papermill only warns about a parameter the notebook does not declare; here it is an error that lists
the names the notebook accepts, raised before any cell runs.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping

KERNEL_NAME = "python3"  # named explicitly: papermill would otherwise trust the notebook's metadata


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    """The names and default values (as source text) of a notebook's ``parameters`` cell."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    if not declared:
        raise ValueError(f"{notebook} has no cell tagged 'parameters'; papermill cannot parameterize it")
    return {name: spec["default"] for name, spec in declared.items()}


def check_parameters(notebook: str | os.PathLike, parameters: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming every parameter that ``notebook`` does not declare."""
    accepted = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(accepted))
    if unknown:
        raise ValueError(
            f"{Path(notebook).name} does not know the parameter(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(sorted(accepted))}"
        )


@contextmanager
def _kernel_environment(**variables: str):
    """Set environment variables for a kernel started inside the block (it inherits the environment),
    and restore them after. Progress bars are off there: a bar redrawn into a saved notebook becomes
    one output per redraw."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


#: Starts of a kernel that dies before it answers (no cell has run): jupyter_client picks the kernel's TCP
#: ports by binding and releasing them, so kernels started at the same moment (a parallel book build beside a
#: sweep) can pick the same ones, and the second to bind dies. A new kernel picks new ports.
KERNEL_START_ATTEMPTS = 3


def _died_at_start(err: RuntimeError) -> bool:
    return "Kernel died before replying to kernel_info" in str(err)


def execute_notebook(
    source: str | os.PathLike,
    output: str | os.PathLike,
    parameters: Mapping[str, Any] | None = None,
    *,
    cwd: str | os.PathLike | None = None,
    cell_timeout: int | None = 1800,
    progress: bool = True,
) -> Path:
    """Run ``source`` with ``parameters`` into ``output`` (written atomically) and return its path.

    A cell error raises papermill's ``PapermillExecutionError`` and leaves no output file behind;
    the executed notebook with the failing cell is kept beside it as ``<output>.failed.ipynb``. A kernel that
    dies before it starts is started again (:data:`KERNEL_START_ATTEMPTS` in all).
    """
    import papermill

    parameters = dict(parameters or {})
    check_parameters(source, parameters)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.stem + ".partial.ipynb")
    try:
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            try:
                with _kernel_environment(TQDM_DISABLE="1"):
                    papermill.execute_notebook(
                        str(source), str(partial), parameters=parameters, kernel_name=KERNEL_NAME,
                        cwd=str(cwd) if cwd else None, execution_timeout=cell_timeout, progress_bar=progress,
                        # the kernel's own log (its transport warning; on Ctrl-C, its reply to a closed socket)
                        # is not the run's output: cell errors reach us through papermill
                        extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                    )
                break
            except RuntimeError as err:
                if not _died_at_start(err) or attempt == KERNEL_START_ATTEMPTS:
                    raise
                print(f"{Path(source).name}: the kernel died before it started (attempt {attempt} of "
                      f"{KERNEL_START_ATTEMPTS}); starting a new one", flush=True)
    except BaseException:
        if partial.exists():
            os.replace(partial, output.with_name(output.stem + ".failed.ipynb"))
        raise
    os.replace(partial, output)
    return output
