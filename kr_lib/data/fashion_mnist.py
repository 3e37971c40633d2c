"""Fashion-MNIST, found offline: a user data directory, then Debian's ``dataset-fashion-mnist`` package.

The four IDX files (plain or gzipped, as Debian ships them in ``/usr/share/datasets/fashion-mnist``) are
read where they lie (:func:`read_idx`): nothing is copied or unpacked anywhere, and a data folder named by
the user (``data_dir`` or ``$KR_DATA_DIR``) is never created or filled -- only ``download=True`` fetches
the files (torchvision's ``FashionMNIST``) into ``<root>/FashionMNIST/raw``.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path

import torch

DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "KR_DATA_DIR"
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def default_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data root: ``data_dir`` if given, else ``$KR_DATA_DIR``, else ``~/.cache/kr_lib/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    return Path.home() / ".cache" / "kr_lib" / "data"


def check_data_dir(data_dir: str | os.PathLike | None = None, download: bool = False) -> Path:
    """The data root (:func:`default_data_dir`), checked: a folder the user named (``data_dir`` or
    ``$KR_DATA_DIR``) must exist -- it is never created, except by ``download=True`` -- and no root may be
    a file. Raises ``FileNotFoundError``/``ValueError`` in one line naming the folder and the fix."""
    root = default_data_dir(data_dir)
    named = data_dir is not None or bool(os.environ.get(DATA_DIR_ENV))
    source = "data_dir" if data_dir is not None else f"${DATA_DIR_ENV}"
    if root.exists() and not root.is_dir():
        raise ValueError(f"the data folder {root} ({source if named else 'default'}) is a file, not a folder; "
                         f"give the folder that holds the data")
    if named and not root.exists() and not download:
        raise FileNotFoundError(f"the data folder {root} ({source}) does not exist; give the folder that holds "
                                f"the data, or leave {source} unset to look in the default places (a data folder "
                                f"is never created, except to download into it).")
    return root


def _has_idx(folder: Path) -> bool:
    return all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in IDX_FILES)


def fashion_mnist_places(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where Fashion-MNIST is looked for, in order: ``<root>/FashionMNIST/raw``, ``<root>`` (the data root,
    :func:`default_data_dir`), then the Debian package folder."""
    root = default_data_dir(data_dir)
    return [root / "FashionMNIST" / "raw", root, DEBIAN_FOLDER]


def find_fashion_mnist(data_dir: str | os.PathLike | None = None, download: bool = False) -> Path:
    """The folder that holds the four IDX files (plain or ``.gz``): the first of :func:`fashion_mnist_places`.

    Writes nothing; ``download=True`` fetches the files into ``<root>/FashionMNIST/raw`` when none of the
    places has them. A named data folder that does not exist is an error (:func:`check_data_dir`).
    """
    root = check_data_dir(data_dir, download)
    places = fashion_mnist_places(data_dir)
    for folder in places:
        if folder.is_dir() and _has_idx(folder):
            return folder
    if download:
        import torchvision

        torchvision.datasets.FashionMNIST(root, train=True, download=True)
        torchvision.datasets.FashionMNIST(root, train=False, download=True)
        return places[0]
    raise FileNotFoundError(
        f"Fashion-MNIST was not found in {', '.join(map(str, places))}: expected the four IDX files "
        f"{', '.join(IDX_FILES)} (optionally .gz). Get them with `sudo apt-get install dataset-fashion-mnist` "
        f"(Debian/Ubuntu, offline mirror), or set {DATA_DIR_ENV} / pass data_dir=... to a folder that holds "
        f"them, or pass download=True when online."
    )


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """An IDX file of unsigned bytes (MNIST's format; gzipped when the name ends in ``.gz``) as a ``uint8``
    tensor of its shape, e.g. images ``(n, 28, 28)`` or labels ``(n,)``."""
    path = Path(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] or data[1] or data[2] != 0x08 or not 1 <= data[3] <= 3:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (Fashion-MNIST's format)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    offset = 4 + 4 * ndim
    if len(data) - offset != math.prod(shape):
        raise ValueError(f"{path} is truncated: {len(data) - offset} bytes for shape {shape}")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=offset).view(*shape)


def _read_split(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(n, 28, 28)`` uint8 and labels ``(n,)`` int64 of one split, read from ``folder``."""
    prefix = "train" if train else "t10k"

    def one(kind: str) -> torch.Tensor:
        name = f"{prefix}-{kind}"
        return read_idx(folder / name if (folder / name).is_file() else folder / f"{name}.gz")

    images, labels = one("images-idx3-ubyte"), one("labels-idx1-ubyte").long()
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST in {folder}: images {tuple(images.shape)} do not match labels {tuple(labels.shape)}")
    return images, labels


def fashion_mnist_tensors(
    train: bool = True,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    limit: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST as in-memory tensors: images ``(n, 1, 28, 28)`` float32 in [0, 1], labels ``(n,)`` int64.

    ``limit`` keeps the first ``limit`` samples (the files' order, so it is deterministic).
    """
    images, labels = _read_split(find_fashion_mnist(data_dir, download=download), train)
    x = images[:limit] if limit else images
    y = labels[:limit] if limit else labels
    return x.unsqueeze(1).float().div_(255.0), y.clone()


# Standard normalization: the pixel mean and standard deviation of the 60000 training images in [0, 1]
# (tests/test_data.py recomputes them from the files).
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)


def fashion_mnist_info() -> "DatasetInfo":
    """Fashion-MNIST: 1 x 28 x 28 grey images, 10 classes; no augmentation (the usual choice for it)."""
    from .base import DatasetInfo

    return DatasetInfo("fashion_mnist", 10, (1, 28, 28), FASHION_MNIST_MEAN, FASHION_MNIST_STD,
                       classes=FASHION_MNIST_CLASSES)


def load_fashion_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
                       download: bool = False, limit: int | None = None) -> "TensorData":
    """The ``split`` (``"train"``/``"test"``) as :class:`~kr_lib.data.base.TensorData`: x ``(n, 1, 28, 28)`` uint8."""
    from .base import TensorData, check_split

    train = check_split(split) == "train"
    images, labels = _read_split(find_fashion_mnist(data_dir, download=download), train)
    data = TensorData(images.unsqueeze(1).contiguous(), labels, fashion_mnist_info(), split)
    return data.subset(limit)


def check_fashion_mnist(data_dir: str | os.PathLike | None = None, download: bool = False, **options) -> None:
    """Raise (one line: where it was looked for, how to get it) when Fashion-MNIST cannot be loaded as asked;
    reads no data (the check before a run starts)."""
    if download:
        check_data_dir(data_dir, download)
    else:
        find_fashion_mnist(data_dir)
