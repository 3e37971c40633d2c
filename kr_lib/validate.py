"""Checks of single values, each raising ``ValueError`` with one line that names the value and what is accepted.

    epochs = positive_int(epochs, "epochs")            # 1, 2, ... (bool refused: True is not a count)
    R = positive_int(R, "R", optional=True)            # ... or None
    seed = non_negative_int(seed, "seed")
    augment = boolean(augment, "augment")
    lr = positive_number(lr, "lr")                      # finite, > 0 (``allow_zero``: >= 0)

Every function returns the value (ints as ``int``, numbers as ``float``) so a check reads as an assignment.
"""
from __future__ import annotations

import math
import numbers


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(value, name: str, optional: bool = False) -> int | None:
    """``value`` as an ``int`` >= 1 (``None`` too when ``optional``); else ``ValueError`` naming ``name``."""
    if optional and value is None:
        return None
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if optional else ''}, got {value!r}")
    return int(value)


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
