"""Checks of single values, each raising ``ValueError`` with one line that names the value and what is accepted.

    epochs = positive_int(epochs, "epochs")            # 1, 2, ... (bool refused: True is not a count)
    R = positive_int(R, "R", optional=True)            # ... or None
    seed = non_negative_int(seed, "seed")
    augment = boolean(augment, "augment")
    lr = positive_number(lr, "lr")                      # finite, > 0 (``allow_zero``: >= 0)
    writable_folder("results", "--output-dir")          # a folder this process can create files in

Every function returns the value (ints as ``int``, numbers as ``float``) so a check reads as an assignment.
A count written as a whole float (``1e6``, ``60000.0``: how YAML and users write large numbers) is that int.
"""
from __future__ import annotations

import math
import numbers
import os
import tempfile
from pathlib import Path


def _is_int(value) -> bool:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return True  # 1e6 is a count too
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(value, name: str, optional: bool = False) -> int | None:
    """``value`` as an ``int`` >= 1 (``None`` too when ``optional``); else ``ValueError`` naming ``name``."""
    if optional and value is None:
        return None
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if optional else ''}, got {value!r}")
    return int(value)


def integral_positive_int(value, name: str) -> int:
    """``value`` as an ``int`` >= 1 where only an integer type will do (the theory's functions, where a float
    size is a caller's bug): ``TypeError`` for anything not integral (2.5, 2.0, "3", True), ``ValueError``
    below 1; both name ``name``."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def non_negative_int(value, name: str) -> int:
    """``value`` as an ``int`` >= 0; else ``ValueError`` naming ``name``."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def boolean(value, name: str) -> bool:
    """``value`` when it is ``True`` or ``False`` (not 0/1, not "yes"); else ``ValueError`` naming ``name``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def positive_number(value, name: str, allow_zero: bool = False, hint: str = "") -> float:
    """``value`` as a finite ``float`` > 0 (>= 0 with ``allow_zero``); else ``ValueError`` naming ``name``
    (``hint`` is appended to the message, e.g. ``" or None (the optimizer's default)"``)."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
          and (value >= 0 if allow_zero else value > 0))
    if not ok:
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number{hint}, got {value!r}")
    return float(value)


def one_of(value, name: str, accepted) -> str:
    """``value`` when it is one of ``accepted``; else ``ValueError`` listing them."""
    if value not in accepted:
        raise ValueError(f"{name} must be one of {', '.join(map(str, accepted))}, got {value!r}")
    return value


def writable_folder(path: str | os.PathLike, name: str) -> Path:
    """``path`` when this process can write files into it -- or create it: its nearest existing folder is
    probed with a temporary file, removed at once, so a read-only disk or folder is found before any work;
    else ``ValueError`` "cannot write to ...". Creates nothing that stays."""
    path = Path(path)
    probe = path.resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"cannot write to {path} ({name}): {probe} is a file, not a folder; give a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise ValueError(f"cannot write to {path} ({name}): {err.strerror or err} in {probe}; "
                         f"give a writable folder") from None
    return path


def writable_file(path: str | os.PathLike, name: str) -> Path:
    """``path`` when a file can be written there (its folder is :func:`writable_folder`, and it is not a
    folder itself); else ``ValueError`` "cannot write to ...". Creates nothing that stays."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write to {path} ({name}): it is a folder; give a file name")
    writable_folder(path.parent, name)
    return path
