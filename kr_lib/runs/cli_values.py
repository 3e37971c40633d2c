"""Parameter values from the command line and sweep files, parsed as YAML data, never evaluated as code.

    load_yaml("lr: 1e-3")           # {"lr": 0.001}: numbers in scientific notation are numbers
    parse_value("5e-4")             # 0.0005
    parse_assignments(["epochs=3", "kr_ratio=1/4"])

YAML 1.1 (PyYAML's) reads ``1e-3``, ``1e6`` and ``1.0e6`` as strings; YAML 1.2 and every user read them
as numbers, so :func:`load_yaml` adds YAML 1.2's float form to ``yaml.SafeLoader`` (which builds only plain
data: a ``!!python/object`` tag is refused).
"""
from __future__ import annotations

import re
from typing import Any, Iterable

import yaml


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads YAML 1.2 floats: ``1e-3``, ``5E4``, ``1.0e6``, ``.5e-2``."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def yaml_error(err: yaml.YAMLError) -> str:
    """One line for a YAML error: where (line, column) and what (PyYAML's problem), no excerpt."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = " ".join(str(x) for x in (getattr(err, "context", None), getattr(err, "problem", None)) if x) or str(err)
    return where + " ".join(what.split())


def load_yaml(text: str) -> Any:
    """``text`` as YAML data (safe: plain values, lists and mappings only; YAML 1.2 floats); a YAML error
    is re-raised as :class:`yaml.YAMLError` unchanged (callers say which file or value it was)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (_Loader is a SafeLoader)


def parse_value(text: str) -> Any:
    """One value: :func:`load_yaml` (numbers, ``1e-3`` included, true/false, null, lists ``[0, 1]``,
    mappings ``{frames: 8}``, strings); ``None`` is also accepted for null. Fractions such as ``1/4`` stay strings."""
    if text.strip() == "None":
        return None
    try:
        return load_yaml(text)
    except yaml.YAMLError as err:
        raise ValueError(f"cannot read the value {text!r}: {yaml_error(err)}") from None


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
