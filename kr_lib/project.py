"""The kr-book project a command works in: the folder with the book (``_toc.yml``), the ablation notebook,
the sweep files and the results.

    root = find_project()            # --project / $KR_PROJECT, else the working directory or a parent of it
    root / "notebooks" / "ablation.ipynb", root / "sweeps", root / "results"

The library itself never needs a project (it works installed from a wheel); the commands that run or read
ablations (``kr ablate``, ``kr sweep``, ``kr results``, ``kr reproduce``) and ``kr book`` do, and say so in
one line when there is none.
"""
from __future__ import annotations

import os
from pathlib import Path

#: Files that mark a project's root folder.
MARKERS = ("_toc.yml", "notebooks/ablation.ipynb")
ENV = "KR_PROJECT"


class NoProject(ValueError):
    """No kr-book project where one was looked for (a ``ValueError``: ``kr`` prints it as one line)."""


def is_project(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a project's root (it has every file of :data:`MARKERS`)."""
    return all((Path(folder) / marker).is_file() for marker in MARKERS)


def project_of(path: str | os.PathLike) -> Path | None:
    """The project that contains ``path`` (the path itself or its nearest parent that is one), or None."""
    path = Path(path).resolve()
    for folder in (path, *path.parents):
        if is_project(folder):
            return folder
    return None


def find_project(explicit: str | os.PathLike | None = None) -> Path:
    """The project root: ``explicit`` (a ``--project`` flag), else ``$KR_PROJECT``, else the working
    directory or its nearest parent that is a project. Raises :class:`NoProject` saying how to name one."""
    given = explicit if explicit is not None else os.environ.get(ENV) or None
    if given is not None:
        root = Path(given).resolve()
        if not is_project(root):
            source = "--project" if explicit is not None else f"${ENV}"
            raise NoProject(f"{source} {given} is not a kr-book project (it needs {' and '.join(MARKERS)})")
        return root
    root = project_of(Path.cwd())
    if root is None:
        raise NoProject(f"no kr-book project in {Path.cwd()} or its parents (a folder with "
                        f"{' and '.join(MARKERS)}); run inside a checkout, or give --project DIR or set ${ENV}")
    return root


def relative_to_project(path: str | os.PathLike) -> str:
    """``path`` relative to the project that contains it (records name no machine's folders), else as given."""
    root = project_of(path)
    if root is None:
        return str(path)
    return str(Path(path).resolve().relative_to(root))


def add_project_argument(parser) -> None:
    """``--project DIR`` on a command's ``argparse`` parser (default: ``$KR_PROJECT``, then the working
    directory or a parent of it; :func:`find_project`)."""
    parser.add_argument("--project", default=None, metavar="DIR",
                        help=f"the kr-book checkout to work in (default: ${ENV}, else the working directory "
                             "or the nearest parent that is one)")
