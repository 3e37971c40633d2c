"""Moving Fashion-MNIST: short clips of one real Fashion-MNIST item sliding across a dark canvas.

Clip i of a split shows image i of the matching Fashion-MNIST split (train clips from train images,
test clips from test images, so the two never share an item); its label is the item's class. The item
starts at a random place and moves with a constant integer velocity (1 to 3 pixels per frame per axis,
never standing still), bouncing off the canvas walls. The random start and velocity of every clip are
drawn once per split from a generator seeded with ``seed``, so clip i is the same whatever ``limit``
is asked for. Clips are generated once and cached (atomic write) under
``<data dir>/moving_fashion_mnist/`` (a data folder the user named must exist: it is never created);
the 3D path's real-data default.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from .base import DatasetInfo, TensorData, check_split
from .fashion_mnist import (FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, check_data_dir,
                            check_fashion_mnist, default_data_dir, load_fashion_mnist)

ITEM = 28  # Fashion-MNIST images are 28 x 28
DEFAULT_FRAMES = 8
DEFAULT_CANVAS = 40
DEFAULT_LIMIT = {"train": 10000, "test": 2000}
MAX_SPEED = 3
CACHE_VERSION = 1


def _check_options(frames: int, canvas: int) -> None:
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be a positive int, got {frames!r}")
    if not isinstance(canvas, int) or canvas < ITEM:
        raise ValueError(f"canvas must be an int of at least {ITEM} (the item's size), got {canvas!r}")


def moving_fashion_mnist_info(frames: int = DEFAULT_FRAMES, canvas: int = DEFAULT_CANVAS) -> DatasetInfo:
    """Clips ``(1, frames, canvas, canvas)``, 10 classes; no augmentation.

    Normalization follows from Fashion-MNIST's: one 28x28 item (pixel mean m, second moment
    m2 = s^2 + m^2) on an otherwise zero canvas of area A = canvas^2 has pixel mean m * 784 / A and
    second moment m2 * 784 / A, so std = sqrt(m2 * 784 / A - mean^2). The test checks it on real clips.
    """
    _check_options(frames, canvas)
    frac = ITEM * ITEM / canvas ** 2
    m, s = FASHION_MNIST_MEAN[0], FASHION_MNIST_STD[0]
    mean = m * frac
    std = math.sqrt((s * s + m * m) * frac - mean * mean)
    return DatasetInfo("moving_fashion_mnist", 10, (1, frames, canvas, canvas), (round(mean, 4),),
                       (round(std, 4),), classes=FASHION_MNIST_CLASSES)


def trajectories(n: int, frames: int, canvas: int, generator: torch.Generator) -> torch.Tensor:
    """Top-left corners ``(n, frames, 2)`` (row, col) of items bouncing in a ``canvas`` x ``canvas`` box.

    Start uniform in ``[0, L]``, L = canvas - 28; velocity per axis uniform in -3..3 (a still item gets
    velocity (1, 1)). Reflection at the walls is the triangle wave ``L - |((p0 + v t) mod 2L) - L|``.
    """
    room = canvas - ITEM
    start = torch.randint(0, room + 1, (n, 2), generator=generator)
    velocity = torch.randint(-MAX_SPEED, MAX_SPEED + 1, (n, 2), generator=generator)
    still = (velocity == 0).all(dim=1)
    velocity[still] = 1
    if room == 0:
        return torch.zeros(n, frames, 2, dtype=torch.long)
    t = torch.arange(frames).view(1, frames, 1)
    q = torch.remainder(start.view(n, 1, 2) + velocity.view(n, 1, 2) * t, 2 * room)
    return room - (q - room).abs()


def render(images: torch.Tensor, corners: torch.Tensor, canvas: int) -> torch.Tensor:
    """Paste ``images`` ``(n, 28, 28)`` at ``corners`` ``(n, T, 2)`` into clips ``(n, 1, T, canvas, canvas)``."""
    n, frames = corners.shape[:2]
    clips = torch.zeros(n, frames, canvas, canvas, dtype=images.dtype)
    batch = torch.arange(n).view(n, 1, 1)
    offset = torch.arange(ITEM)
    for t in range(frames):
        rows = (corners[:, t, 0:1] + offset).view(n, ITEM, 1)
        cols = (corners[:, t, 1:2] + offset).view(n, 1, ITEM)
        clips[:, t][batch, rows, cols] = images
    return clips.unsqueeze(1)


def generate(split: str, limit: int, frames: int, canvas: int, seed: int,
             data_dir: str | os.PathLike | None = None, download: bool = False) -> TensorData:
    """Make the first ``limit`` clips of ``split`` from the Fashion-MNIST files (no caching)."""
    fm = load_fashion_mnist(split, data_dir, download)
    if limit > len(fm):
        raise ValueError(f"limit={limit} exceeds the {len(fm)} Fashion-MNIST {split} images the clips are made from")
    g = torch.Generator().manual_seed(seed * 2 + (split == "test"))
    corners = trajectories(len(fm), frames, canvas, g)[:limit]
    x = render(fm.x[:limit, 0], corners, canvas)
    return TensorData(x, fm.y[:limit].clone(), moving_fashion_mnist_info(frames, canvas), split)


def cache_path(split: str, limit: int, frames: int, canvas: int, seed: int,
               data_dir: str | os.PathLike | None = None) -> Path:
    """Where the clips of these parameters are cached: ``<data dir>/moving_fashion_mnist/<key>.pt``."""
    key = f"{split}_n{limit}_t{frames}_c{canvas}_seed{seed}_v{CACHE_VERSION}.pt"
    return default_data_dir(data_dir) / "moving_fashion_mnist" / key


def load_moving_fashion_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
                              download: bool = False, limit: int | None = None, frames: int = DEFAULT_FRAMES,
                              canvas: int = DEFAULT_CANVAS, seed: int = 0) -> TensorData:
    """The ``split`` as :class:`TensorData`: x ``(limit, 1, frames, canvas, canvas)`` uint8, y ``(limit,)``.

    ``limit`` defaults to 10000 train / 2000 test clips. The first call generates and caches them;
    later calls read the cache.
    """
    check_split(split)
    _check_options(frames, canvas)
    limit = DEFAULT_LIMIT[split] if limit is None else int(limit)
    if limit < 1:
        raise ValueError(f"limit must be a positive number of clips, got {limit}")
    check_data_dir(data_dir, download)
    path = cache_path(split, limit, frames, canvas, seed, data_dir)
    info = moving_fashion_mnist_info(frames, canvas)
    if path.exists():
        saved = torch.load(path, weights_only=True)
        return TensorData(saved["x"], saved["y"], info, split)
    data = generate(split, limit, frames, canvas, seed, data_dir, download)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    torch.save({"x": data.x, "y": data.y, "version": CACHE_VERSION}, tmp)
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return data


def check_moving_fashion_mnist(data_dir: str | os.PathLike | None = None, download: bool = False, **options) -> None:
    """Raise (one line) when the clips cannot be made as asked: the data folder (:func:`check_data_dir`) and
    the Fashion-MNIST items they are made from. Reads no data (the check before a run starts)."""
    check_data_dir(data_dir, download)
    check_fashion_mnist(data_dir, download)
