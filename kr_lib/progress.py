"""Progress bars: tqdm, switched off by the caller or by the environment variable ``TQDM_DISABLE``.

Executed notebooks set ``TQDM_DISABLE`` (:mod:`kr_lib.execute`): a bar redrawn into a saved notebook
becomes one output per redraw. tqdm reads that variable only for arguments not given, so the library's
``disable=not progress`` would override it; this one function honours both.
"""
from __future__ import annotations

import os
from typing import Iterable

from tqdm import tqdm


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, off when ``enabled`` is false or ``$TQDM_DISABLE`` is set (not "0")."""
    off_by_environment = os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
    return tqdm(iterable, disable=not enabled or off_by_environment, **kwargs)
