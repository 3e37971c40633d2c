"""SVHN (cropped digits) through torchvision's loader, from ``<data dir>/svhn/{train,test}_32x32.mat``.

The .mat files hold ``X`` ``(32, 32, 3, N)`` uint8 and ``y`` ``(N, 1)`` with the label 10 for the digit 0;
torchvision maps 10 to 0. Nothing is downloaded unless ``download=True`` (then torchvision checks the
MD5 sums); a folder already there is checked for presence only.
"""
from __future__ import annotations

import os

import torch
import torchvision

from .base import DatasetInfo, TensorData, check_split
from .fashion_mnist import DATA_DIR_ENV, check_data_dir, default_data_dir

FOLDER = "svhn"
FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
CLASSES = tuple(str(d) for d in range(10))
# Standard normalization: per-channel mean and std of the 73257 training images in [0, 1].
MEAN = (0.4377, 0.4438, 0.4728)
STD = (0.1980, 0.2010, 0.1970)


class _SVHNPresent(torchvision.datasets.SVHN):
    """torchvision's SVHN with a presence check instead of the MD5 sum (``check_integrity(path, None)``)."""

    split_list = {k: [url, name, None] for k, (url, name, _) in torchvision.datasets.SVHN.split_list.items()}


def svhn_info() -> DatasetInfo:
    """SVHN: 3 x 32 x 32 colour digits, 10 classes; augmentation: 4-pixel pad + random crop, no flip
    (a mirrored digit is another symbol)."""
    return DatasetInfo("svhn", 10, (3, 32, 32), MEAN, STD, crop_padding=4, flip=False, classes=CLASSES)


def load_svhn(split: str = "train", data_dir: str | os.PathLike | None = None, download: bool = False,
              limit: int | None = None) -> TensorData:
    """The ``split`` as :class:`TensorData`: x ``(n, 3, 32, 32)`` uint8, y ``(n,)`` int64 in 0..9."""
    check_split(split)
    folder = check_data_dir(data_dir, download) / FOLDER
    if download:
        ds = torchvision.datasets.SVHN(folder, split=split, download=True)
    else:
        if not (folder / FILES[split]).is_file():
            raise FileNotFoundError(
                f"SVHN {split} data is missing: expected {folder / FILES[split]} (the cropped-digits .mat file "
                f"with X (32, 32, 3, N) and y). Get it (online) with "
                f"`python -c \"from kr_lib.data import get_dataset; get_dataset('svhn', '{split}', download=True)\"` "
                f"or `curl -L -o {folder / FILES[split]} http://ufldl.stanford.edu/housenumbers/{FILES[split]}`; "
                f"or pass data_dir=... / set {DATA_DIR_ENV} to the folder that holds {FOLDER}/."
            )
        ds = _SVHNPresent(folder, split=split, download=False)
    x = torch.from_numpy(ds.data).contiguous()  # torchvision already made it (N, C, H, W)
    y = torch.from_numpy(ds.labels).long()
    return TensorData(x, y, svhn_info(), split).subset(limit)


def check_svhn(data_dir: str | os.PathLike | None = None, download: bool = False, **options) -> None:
    """Raise (one line) when SVHN cannot be loaded as asked (the data folder, both splits' .mat files);
    reads no data (the check before a run starts)."""
    folder = check_data_dir(data_dir, download) / FOLDER
    missing = [str(folder / name) for name in FILES.values() if not (folder / name).is_file()]
    if missing and not download:
        raise FileNotFoundError(f"SVHN is missing: expected {' and '.join(missing)} (the cropped-digits .mat files); "
                                f"fetch them with download=True (online), or pass data_dir=... / set {DATA_DIR_ENV} "
                                f"to the folder that holds {FOLDER}/")
