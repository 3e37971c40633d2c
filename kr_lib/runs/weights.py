"""Trained weights of an ablation run, kept beside its record.

    info = save_weights(model, "results/fashion_mnist/<run_id>.pt")   # atomically; {"file", "sha256", "bytes"}
    state = load_weights("results/fashion_mnist/<run_id>.json")       # hash checked, weights_only=True
    model = model_from_record("results/fashion_mnist/<run_id>.json")  # the trained network, in eval mode

A weights file is a plain ``state_dict`` (CPU tensors) saved with ``torch.save``: it loads with
``torch.load(path, weights_only=True)`` and nothing of this library, and a record names it in its field
``weights`` (the file name, relative to the record's folder, its SHA-256 and size). The weights are
written before the record, so a record that names weights always has them; a weights file without its
record is left by a killed run and rewritten when the run is done again.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

WEIGHTS_SUFFIX = ".pt"


def weights_path(record_path: str | os.PathLike) -> Path:
    """``<folder>/<run_id>.json`` -> ``<folder>/<run_id>.pt``."""
    return Path(record_path).with_suffix(WEIGHTS_SUFFIX)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights(model, path: str | os.PathLike) -> dict:
    """Save ``model.state_dict()`` (moved to the CPU) to ``path`` atomically; return the record's ``weights``
    field: ``{"file": <name>, "sha256": <hex>, "bytes": <size>}``."""
    import torch

    from ..atomic import atomic_open

    path = Path(path)
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    with atomic_open(path, "wb") as fh:
        torch.save(state, fh)
    return {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}


class MissingWeights(ValueError):
    """A record without usable weights; the message names the command that makes them."""


def _record_and_path(record_or_path) -> tuple[dict, Path]:
    from .records import read_record

    if isinstance(record_or_path, Mapping):
        raise TypeError("give the record's file (its weights are found beside it), not the record's dict")
    path = Path(record_or_path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give one record file, e.g. {path}/<run_id>.json")
    if not path.is_file():
        raise ValueError(f"no record file {path}")
    return read_record(path), path


def load_weights(record_path: str | os.PathLike, map_location="cpu") -> dict:
    """The ``state_dict`` a record names, read with ``weights_only=True`` after checking its SHA-256.

    Raises :class:`MissingWeights` (naming ``kr reproduce RECORD --save-weights``) when the record names no
    weights or the file is missing, and ``ValueError`` when the file's hash is not the record's."""
    return _checked_state(*_record_and_path(record_path), map_location)


def _checked_state(record: Mapping, path: Path, map_location="cpu") -> dict:
    import torch

    info = record.get("weights")
    fix = f"make them with: kr reproduce {path} --save-weights"
    if not info:
        raise MissingWeights(f"{path.name} has no saved weights (it was recorded before weights were kept); {fix}")
    file = path.parent / info["file"]
    if not file.is_file():
        raise MissingWeights(f"{path.name} names weights {info['file']}, which are not in {path.parent}; {fix}")
    actual = file_sha256(file)
    if actual != info["sha256"]:
        raise ValueError(f"{file} has SHA-256 {actual[:12]}..., its record says {info['sha256'][:12]}...: the file "
                         f"is not the one the run saved; {fix}")
    return torch.load(file, map_location=map_location, weights_only=True)


def model_from_record(record_path: str | os.PathLike, device="cpu"):
    """The trained network of a record: built from its parameters (``kr_lib.models.build_model``), its saved
    weights loaded, in eval mode on ``device``."""
    from ..data import dataset_info
    from .parameters import build_network

    record, path = _record_and_path(record_path)
    state = _checked_state(record, path)  # the record is read once, here
    p = record["parameters"]
    model = build_network(p, dataset_info(p["dataset"], **(p.get("dataset_options") or {})))
    model.load_state_dict(state)
    return model.to(device).eval()
