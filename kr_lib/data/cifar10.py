"""CIFAR-10 through torchvision's loader, from ``<data dir>/cifar-10-batches-py`` (the python pickles).

Nothing is downloaded unless ``download=True``; then torchvision fetches the archive and checks its MD5
sums. A folder that is already there is checked for the presence of every file (hashing 170 MB on each
load would be slow) and read by torchvision's own code.
"""
from __future__ import annotations

import os

import torch
import torchvision

from .base import DatasetInfo, TensorData, check_split
from .fashion_mnist import DATA_DIR_ENV, check_data_dir, default_data_dir

FOLDER = "cifar-10-batches-py"
FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta")
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Standard normalization: per-channel mean and std of the 50000 training images in [0, 1].
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class _CIFAR10Present(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10 with presence checks instead of MD5 sums (``check_integrity(path, None)``)."""

    train_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in torchvision.datasets.CIFAR10.test_list]
    meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}


def cifar10_info() -> DatasetInfo:
    """CIFAR-10: 3 x 32 x 32 colour images, 10 classes; augmentation: 4-pixel pad + random crop, flip."""
    return DatasetInfo("cifar10", 10, (3, 32, 32), MEAN, STD, crop_padding=4, flip=True, classes=CLASSES)


def missing_cifar10(root) -> FileNotFoundError:
    """The error for a missing or incomplete CIFAR-10 folder: where, what, and how to get it."""
    folder = root / FOLDER
    missing = [f for f in FILES if not (folder / f).is_file()]
    return FileNotFoundError(
        f"CIFAR-10 is missing or incomplete in {folder} (missing: {', '.join(missing)}). Expected the python "
        f"version's files {', '.join(FILES)}. Get them (online) with "
        f"`python -c \"from kr_lib.data import get_dataset; get_dataset('cifar10', download=True)\"` or "
        f"`curl -L https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz | tar xz -C {root}`; "
        f"or pass data_dir=... / set {DATA_DIR_ENV} to the folder that holds {FOLDER}."
    )


def load_cifar10(split: str = "train", data_dir: str | os.PathLike | None = None, download: bool = False,
                 limit: int | None = None) -> TensorData:
    """The ``split`` as :class:`TensorData`: x ``(n, 3, 32, 32)`` uint8, y ``(n,)`` int64 (n = 50000 / 10000)."""
    train = check_split(split) == "train"
    root = check_data_dir(data_dir, download)
    if download:
        ds = torchvision.datasets.CIFAR10(root, train=train, download=True)
    else:
        if not all((root / FOLDER / f).is_file() for f in FILES):
            raise missing_cifar10(root)
        ds = _CIFAR10Present(root, train=train, download=False)
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # torchvision keeps HWC
    y = torch.as_tensor(ds.targets, dtype=torch.long)
    return TensorData(x, y, cifar10_info(), split).subset(limit)


def check_cifar10(data_dir: str | os.PathLike | None = None, download: bool = False, **options) -> None:
    """Raise (one line: the folder, the missing files, how to get them) when CIFAR-10 cannot be loaded as
    asked; reads no data (the check before a run starts)."""
    root = check_data_dir(data_dir, download)
    if not download and not all((root / FOLDER / f).is_file() for f in FILES):
        raise missing_cifar10(root)
