"""The dataset registry: one name per dataset, one way to load it.

    get_dataset(name, split="train", data_dir=None, download=False, **options)
        -> TensorData (in-memory sets: x (n, C, H, W) or (n, C, T, H, W) uint8, y (n,))
        -> UCF101Clips (ucf101: a torch Dataset of cached decoded clips)
    dataset_info(name, **options) -> DatasetInfo (channels, num_classes, input_shape, dim, mean, std, ...)
    check_data(name, data_dir=None, download=False, **options)   # raises if it cannot load; reads no data

Both kinds carry ``.info`` and feed :func:`kr_lib.train.train` unchanged.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Callable

from .base import DatasetInfo
from .cifar10 import check_cifar10, cifar10_info, load_cifar10
from .fashion_mnist import check_fashion_mnist, fashion_mnist_info, load_fashion_mnist
from .moving_fashion_mnist import check_moving_fashion_mnist, load_moving_fashion_mnist, moving_fashion_mnist_info
from .svhn import check_svhn, load_svhn, svhn_info
from .ucf101 import UCF101Clips, check_ucf101, load_ucf101, ucf101_info


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its ``info``, ``load`` and ``check`` functions (``check`` raises when ``load``
    could not find the data, reading none), and whether it is held in memory."""

    name: str
    info: Callable[..., DatasetInfo]
    load: Callable
    in_memory: bool
    description: str
    check: Callable[..., None]

    def options(self) -> set[str]:
        """Keyword options that :func:`get_dataset`/:func:`dataset_info` accept for this dataset."""
        names = set(inspect.signature(self.info).parameters)
        names |= set(inspect.signature(self.load).parameters) - {"split", "data_dir", "download", "options"}
        if self.load is load_ucf101:
            names |= set(inspect.signature(UCF101Clips).parameters) - {"split", "data_dir"}
        return names


DATASETS: dict[str, DatasetEntry] = {
    e.name: e for e in (
        DatasetEntry("fashion_mnist", fashion_mnist_info, load_fashion_mnist, True,
                     "Fashion-MNIST, 1x28x28, 10 classes; offline (Debian package or a data folder)", check_fashion_mnist),
        DatasetEntry("moving_fashion_mnist", moving_fashion_mnist_info, load_moving_fashion_mnist, True,
                     "clips of real Fashion-MNIST items moving on a canvas, 1xTxSxS, 10 classes; generated once",
                     check_moving_fashion_mnist),
        DatasetEntry("cifar10", cifar10_info, load_cifar10, True,
                     "CIFAR-10, 3x32x32, 10 classes; torchvision, downloaded only with download=True", check_cifar10),
        DatasetEntry("svhn", svhn_info, load_svhn, True,
                     "SVHN cropped digits, 3x32x32, 10 classes; torchvision, downloaded only with download=True", check_svhn),
        DatasetEntry("ucf101", ucf101_info, load_ucf101, False,
                     "UCF101 actions, 3xTxSxS clips, 101 classes; official layout, PyAV, cached clips", check_ucf101),
    )
}


def _entry(name: str, options: dict) -> DatasetEntry:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(DATASETS)}")
    entry = DATASETS[name]
    unknown = set(options) - entry.options()
    if unknown:
        raise ValueError(f"{name} does not take option(s) {sorted(unknown)}; it takes {sorted(entry.options())}")
    return entry


def dataset_info(name: str, **options) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` with these options (e.g. ``frames``, ``canvas``, ``size``);
    loader-only options (``limit``, ``seed``, ...) are accepted and do not change it. Reads no data."""
    entry = _entry(name, options)
    params = inspect.signature(entry.info).parameters
    return entry.info(**{k: v for k, v in options.items() if k in params})


def check_data(name: str, data_dir: str | os.PathLike | None = None, download: bool = False, **options) -> None:
    """Raise ``FileNotFoundError``/``ValueError`` (one line: where the data was looked for and how to get it)
    when :func:`get_dataset` could not load ``name`` as asked -- a named data folder that does not exist or
    is a file, files that are missing and not to be downloaded. Reads no data and writes nothing: the check
    a run makes before it starts."""
    _entry(name, options).check(data_dir=data_dir, download=download, **options)


def get_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None,
                download: bool = False, **options):
    """Load one split (``"train"``/``"test"``) of a registered dataset.

    ``data_dir``: the data root (default ``$KR_DATA_DIR``, else ``~/.cache/kr_lib/data``); ``download``:
    fetch what is missing (cifar10, svhn, fashion_mnist; needs internet). ``options``: per dataset, e.g.
    ``limit`` (first n samples), ``frames``/``canvas``/``seed`` (moving_fashion_mnist),
    ``fold``/``frames``/``frame_step``/``size``/``resize``/``clips_per_video``/``cache_dir`` (ucf101).
    Returns :class:`~kr_lib.data.base.TensorData` for in-memory sets, :class:`UCF101Clips` for ucf101.
    """
    entry = _entry(name, options)
    return entry.load(split, data_dir=data_dir, download=download, **options)


def load_splits(name: str, data_dir: str | os.PathLike | None = None, download: bool = False,
                train_limit: int | None = None, test_limit: int | None = None, **options):
    """``(train, test)`` of a dataset, each as :func:`get_dataset` returns it (``*_limit``: first n samples)."""
    train = get_dataset(name, "train", data_dir, download, limit=train_limit, **options)
    test = get_dataset(name, "test", data_dir, download, limit=test_limit, **options)
    return train, test
