"""Writing files so that no reader, and no process killed at any moment, ever sees half of one.

Every result, record and report of the library is written through here: a temporary file in the
target's folder, flushed to disk, then renamed over the target (``os.replace`` is atomic on POSIX and
Windows). On an error the temporary file is removed and the old target, if any, is untouched.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Mapping


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[Any]:
    """``open(path, mode)`` whose content appears at ``path`` only when the block ends without error."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def json_safe(obj: Any) -> Any:
    """``obj`` with what strict JSON cannot hold made plain: NaN/inf -> None, Fraction and Path -> str,
    numpy/torch scalars -> Python numbers, tuples -> lists, keys -> str."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (Fraction, Path)):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return json_safe(obj.item())
    return obj


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented strict JSON to ``path`` atomically; return the path."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(json_safe(obj), fh, indent=1, allow_nan=False)
        fh.write("\n")
    return Path(path)
