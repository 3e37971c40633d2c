"""Fashion-MNIST, found offline: a user data directory, then Debian's ``dataset-fashion-mnist`` package.

torchvision's ``FashionMNIST`` reads the four IDX files from ``<root>/FashionMNIST/raw``; the Debian
package ships them gzipped in ``/usr/share/datasets/fashion-mnist``, so they are unpacked once into a
cache folder that torchvision then reads. Nothing is downloaded unless ``download=True`` is asked for.
"""
from __future__ import annotations

import gzip
import os
import shutil
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


def _has_idx(folder: Path) -> bool:
    return all((folder / f).exists() or (folder / f"{f}.gz").exists() for f in IDX_FILES)


def find_fashion_mnist(data_dir: str | os.PathLike | None = None, download: bool = False) -> Path:
    """Return a root that torchvision's ``FashionMNIST`` reads without downloading.

    Looks in ``<root>/FashionMNIST/raw``, then ``<root>`` itself, then the Debian package folder, and
    unpacks the gzipped IDX files into ``<root>/FashionMNIST/raw`` when needed.
    """
    root = default_data_dir(data_dir)
    raw = root / "FashionMNIST" / "raw"
    if all((raw / f).exists() for f in IDX_FILES):
        return root
    for source in (raw, root, DEBIAN_FOLDER):
        if source.is_dir() and _has_idx(source):
            raw.mkdir(parents=True, exist_ok=True)
            for f in IDX_FILES:
                target = raw / f
                if target.exists():
                    continue
                tmp = raw / f".{f}.partial"
                if (source / f).exists():
                    shutil.copyfile(source / f, tmp)
                else:
                    with gzip.open(source / f"{f}.gz", "rb") as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                os.replace(tmp, target)  # atomic: a half-written file is never taken for data
            return root
    if download:
        import torchvision

        torchvision.datasets.FashionMNIST(root, train=True, download=True)
        torchvision.datasets.FashionMNIST(root, train=False, download=True)
        return root
    raise FileNotFoundError(
        f"Fashion-MNIST was not found in {raw}, {root} or {DEBIAN_FOLDER}. Expected the four IDX files "
        f"{', '.join(IDX_FILES)} (optionally .gz). Get them with `sudo apt-get install dataset-fashion-mnist` "
        f"(Debian/Ubuntu, offline mirror), or set {DATA_DIR_ENV} / pass data_dir=... to a folder that holds "
        f"them, or pass download=True when online."
    )


def fashion_mnist_tensors(
    train: bool = True,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    limit: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST as in-memory tensors: images ``(n, 1, 28, 28)`` float32 in [0, 1], labels ``(n,)`` int64.

    ``limit`` keeps the first ``limit`` samples (the files' order, so it is deterministic).
    """
    import torchvision

    root = find_fashion_mnist(data_dir, download=download)
    ds = torchvision.datasets.FashionMNIST(root, train=train, download=False)
    x = ds.data[:limit] if limit else ds.data
    y = ds.targets[:limit] if limit else ds.targets
    return x.unsqueeze(1).float().div_(255.0), y.long().clone()


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
    import torchvision

    from .base import TensorData, check_split

    train = check_split(split) == "train"
    root = find_fashion_mnist(data_dir, download=download)
    ds = torchvision.datasets.FashionMNIST(root, train=train, download=False)
    data = TensorData(ds.data.unsqueeze(1).contiguous(), ds.targets.long(), fashion_mnist_info(), split)
    return data.subset(limit)
