"""A run's identity: the parameters that decide its result, the id hashed from them, and where its record lives.

    scientific(params)                       # {dataset, design, K/R, R or budget, depth, training, seed, ...}
    rid = run_id(scientific(params))         # "bottleneck-kr1over4-R8-seed0-3f2a9c1d0e"
    record_path("results", "fashion_mnist", rid)   # results/fashion_mnist/<run_id>.json

Equal scientific parameters give equal ids on every machine: the device, the folders, the thread count and
the sweep a run belongs to are not part of it. Checked parameters (:class:`kr_lib.runs.parameters.AblationParams`)
carry their id as ``params.run_id``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

from ..project import project_of

#: Parameters that decide the result: the run id is a hash of these (device and folders are not).
SCIENTIFIC = ("dataset", "dataset_options", "design", "kr_ratio", "R", "param_budget", "stages",
              "blocks_per_stage", "kernel_size", "stem_stride", "group_width", "epochs", "batch_size", "optimizer", "lr",
              "weight_decay", "augment", "amp", "seed", "train_limit", "test_limit")

#: Suffix of a staged record: written by the notebook, renamed to ``.json`` by the runner once the executed
#: notebook is saved beside it (so a record never exists without its notebook, whenever a sweep is killed).
STAGED_SUFFIX = ".json.staged"


def scientific(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that decide the result (:data:`SCIENTIFIC`), from checked parameters."""
    return {k: params[k] for k in SCIENTIFIC}


def canonical(value):
    """JSON-stable form of a parameter value (K/R as its exact fraction, floats rounded to 12 digits)."""
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def _slug(value) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-")


def run_id(scientific: Mapping[str, Any]) -> str:
    """A file-name-safe id of a run: readable prefix (design, K/R, R or budget, seed) and a 10-digit hash
    of all scientific parameters. Equal parameters give equal ids on every machine.

    >>> run_id({"dataset": "fashion_mnist", "design": "dense", "kr_ratio": "1", "R": 16, "param_budget": None,
    ...         "seed": 0})[:22]
    'dense-kr1-R16-seed0-'
    """
    canon = canonical(dict(scientific))
    digest = hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:10]
    size = f"R{canon['R']}" if canon.get("R") is not None else f"budget{canon.get('param_budget')}"
    kr = _slug(str(canon.get("kr_ratio")).replace("/", "over"))
    return f"{_slug(canon.get('design'))}-kr{kr}-{size}-seed{canon.get('seed')}-{digest}"


def default_output_dir() -> Path:
    """Where a notebook run writes its record when no folder is named: ``$KR_RESULTS_DIR``, else
    ``_build/runs`` of the project the working directory is in (scratch, never committed), else
    ``_build/runs`` of the working directory. ``kr ablate``/``kr sweep`` name ``results/`` explicitly."""
    env = os.environ.get("KR_RESULTS_DIR")
    if env:
        return Path(env)
    return (project_of(Path.cwd()) or Path.cwd()) / "_build" / "runs"


def record_path(output_dir: str | os.PathLike, dataset: str, rid: str) -> Path:
    """``<output_dir>/<dataset>/<run_id>.json``."""
    return Path(output_dir) / dataset / f"{rid}.json"


def staged_path(path: str | os.PathLike) -> Path:
    """``<run_id>.json`` -> ``<run_id>.json.staged``."""
    path = Path(path)
    return path.with_name(path.stem + STAGED_SUFFIX)


def checkpoint_dir(output_dir: str | os.PathLike, dataset: str, rid: str) -> Path:
    """``<output_dir>/<dataset>/.checkpoints/<run_id>``: a run's per-epoch checkpoints (git-ignored)."""
    return Path(output_dir) / dataset / ".checkpoints" / rid
