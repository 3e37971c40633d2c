"""Sweep files: a YAML file's grid of ablation runs, expanded for a preset and checked before any run.

A sweep file (safe YAML, :func:`~kr_lib.runs.cli_values.load_yaml`)::

    dataset: fashion_mnist
    description: what the sweep is for
    parameters: {stages: 3, epochs: 4}         # notebook parameters shared by every run
    grids:                                      # named sub-grids; each is a product over its lists
      dense:  {design: [dense], kr_ratio: [1], R: [16], seed: [0, 1]}
      fixed_r: {design: [bottleneck, separable], kr_ratio: ["1/4", 1, 4], R: [16], seed: [0, 1]}
      budget: {design: [bottleneck], kr_ratio: ["1/4", 1, 4], param_budget: [60000], seed: [0, 1]}
    presets:                                    # --preset NAME: overrides
      quick:
        description: ..., cost: ...
        parameters: {epochs: 1}                 # merged into every run's parameters
        axes: {seed: [0]}                       # replaces that axis in every grid that has it
        grids: {fixed_r: {kr_ratio: [1, 4]}}    # replaces axes of one grid (null drops the grid)

A grid entry with ``param_budget`` and no ``R`` is a budget run (R is solved). Every run of the grid is
checked (:func:`kr_lib.runs.check_parameters`) before the first one starts.

:func:`kr_lib.runs.runner.run_sweep` runs the expanded grid; :mod:`kr_lib.runs.presets` holds the presets the
book's pages show.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from .cli_values import load_yaml, yaml_error
from .parameters import DEFAULTS, AblationParams, check_parameters

SWEEP_KEYS = {"dataset", "description", "parameters", "grids", "presets"}
PRESET_KEYS = {"description", "cost", "parameters", "axes", "grids"}
#: Parameters a sweep file may not set: where things go is the command's business.
NOT_IN_SWEEP = {"output_dir", "device", "threads", "data_dir", "download", "staged_record", "save_record", "checkpoint", "sweep", "dataset"}


@dataclass
class Sweep:
    """A sweep file expanded for one preset: ``runs`` are checked parameters
    (:class:`~kr_lib.runs.parameters.AblationParams`; no device, no folders), each run id once."""

    path: Path
    dataset: str
    preset: str | None
    description: str
    cost: str
    runs: list[AblationParams]


def _mapping(where: str, value, example: str) -> dict:
    """``value`` (a sweep file's section) as a dict: None is empty, anything but a mapping an error."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping such as {example}, got {value!r}")
    return value


def _check_names(where: str, names, allowed) -> None:
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; accepted: {', '.join(sorted(allowed))}")


def load_sweep(path: str | os.PathLike, preset: str | None = None) -> Sweep:
    """Read a sweep file (safe YAML, :func:`~kr_lib.runs.cli_values.load_yaml`: ``1e-3`` is a number) and
    expand its grid for ``preset``; every run is checked here. Every problem is one line naming the file."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a sweep file; give a YAML file such as sweeps/fashion_mnist.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ValueError(f"cannot read the sweep file {path}: {reason}") from None
    try:
        spec = load_yaml(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML (sweep files hold plain data only): {yaml_error(err)}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a sweep file is a YAML mapping with keys {', '.join(sorted(SWEEP_KEYS))}")
    _check_names(str(path), spec, SWEEP_KEYS)
    if "dataset" not in spec or "grids" not in spec:
        raise ValueError(f"{path}: needs 'dataset' and 'grids'")
    param_names = set(DEFAULTS) - NOT_IN_SWEEP
    base = dict(_mapping(f"{path}: parameters", spec.get("parameters"), "{epochs: 4}"))
    _check_names(f"{path}: parameters", base, param_names)
    presets = _mapping(f"{path}: presets", spec.get("presets"), "{quick: {parameters: {epochs: 1}}}")
    description, cost, axes, grid_overrides = spec.get("description", ""), "", {}, {}
    if preset is not None:
        if preset not in presets:
            raise ValueError(f"{path}: no preset {preset!r}; it has: {', '.join(presets) or 'none'}")
        pre = _mapping(f"{path}: preset {preset}", presets[preset], "{parameters: {epochs: 1}}")
        for key, example in (("parameters", "{epochs: 1}"), ("axes", "{seed: [0]}"), ("grids", "{dense: null}")):
            _mapping(f"{path}: preset {preset}: {key}", pre.get(key), example)
        _check_names(f"{path}: preset {preset}", pre, PRESET_KEYS)
        _check_names(f"{path}: preset {preset}: parameters", pre.get("parameters") or {}, param_names)
        _check_names(f"{path}: preset {preset}: axes", pre.get("axes") or {}, param_names)
        base.update(pre.get("parameters") or {})
        axes = dict(pre.get("axes") or {})
        grid_overrides = dict(pre.get("grids") or {})
        _check_names(f"{path}: preset {preset}: grids", grid_overrides, spec["grids"] or {})
        description, cost = pre.get("description", description), str(pre.get("cost", ""))
    grids = spec["grids"]
    if not isinstance(grids, dict) or not grids:
        raise ValueError(f"{path}: 'grids' must map grid names to {{parameter: [values]}}")
    runs, seen = [], set()
    for name, grid in grids.items():
        if not isinstance(grid, dict):
            raise ValueError(f"{path}: grid {name!r} must map parameter names to lists of values")
        if name in grid_overrides and grid_overrides[name] is None:
            continue  # the preset drops this grid
        override = grid_overrides.get(name) or {}
        _check_names(f"{path}: grid {name}", {**grid, **override}, param_names)
        grid = {k: axes.get(k, v) for k, v in grid.items()}
        grid.update(override)
        for k, v in grid.items():
            if not isinstance(v, list) or not v:
                raise ValueError(f"{path}: grid {name!r}, {k}: give a non-empty list of values, got {v!r}")
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            params = {**base, **dict(zip(keys, values)), "dataset": spec["dataset"]}
            if "param_budget" in grid and params.get("param_budget") is not None and "R" not in grid:
                params["R"] = None
            try:
                checked = check_parameters(params)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{path}: grid {name!r}, run {dict(zip(keys, values))}: {err}") from None
            if checked.run_id not in seen:
                seen.add(checked.run_id)
                runs.append(checked)
    runs.sort(key=lambda p: p.seed)  # every configuration once before the second seed: useful early
    return Sweep(path, spec["dataset"], preset, description, cost, runs)
