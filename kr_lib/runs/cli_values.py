"""Parameter values from the command line: ``-p name=value``, parsed as YAML data, never evaluated as code."""
from __future__ import annotations

from typing import Any, Iterable


def parse_value(text: str) -> Any:
    """One value: ``yaml.safe_load`` (numbers, true/false, null, lists ``[0, 1]``, mappings ``{frames: 8}``,
    strings); ``None`` is also accepted for null. Fractions such as ``1/4`` stay strings."""
    import yaml

    if text.strip() == "None":
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"cannot read the value {text!r}: {err}") from None


def parse_assignments(items: Iterable[str] | None) -> dict[str, Any]:
    """``["epochs=3", "kr_ratio=1/4"]`` -> ``{"epochs": 3, "kr_ratio": "1/4"}``; ``ValueError`` for an item
    without ``=`` or a name given twice."""
    out: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ValueError(f"-p takes name=value (e.g. -p epochs=3), got {item!r}")
        if name in out:
            raise ValueError(f"parameter {name!r} is given twice")
        out[name] = parse_value(value)
    return out
