"""What every dataset of the registry returns: its description (:class:`DatasetInfo`) and, for the
sets that fit in memory, the samples as two tensors (:class:`TensorData`).

Layout is PyTorch's, channels first: images ``(n, C, H, W)``, video clips ``(n, C, T, H, W)``.
Samples are kept as stored on disk (``uint8`` in 0..255) so that a whole set fits on the device;
:func:`kr_lib.data.augment.prepare_batch` turns a batch into normalized floats there.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset: what a network built for it needs to know.

    ``input_shape`` is one sample as the network sees it, ``(C, H, W)`` or ``(C, T, H, W)``;
    ``mean``/``std`` (one value per channel) are the standard normalization, applied to values in [0, 1];
    ``crop_padding`` and ``flip`` are the standard training augmentation (zero-pad by ``crop_padding``
    pixels and crop back at a random place; mirror left-right with probability 1/2). Stored samples
    larger than ``input_shape`` are cropped to it: at random for training, centred for testing.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 0
    flip: bool = False
    classes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self):
        if len(self.input_shape) not in (3, 4):
            raise ValueError(f"input_shape must be (C, H, W) or (C, T, H, W), got {self.input_shape}")
        if not (len(self.mean) == len(self.std) == self.input_shape[0]):
            raise ValueError(
                f"mean and std need one value per channel ({self.input_shape[0]}), got {self.mean}, {self.std}"
            )

    @property
    def channels(self) -> int:
        """Input channels C (the paper's P of the first layer)."""
        return self.input_shape[0]

    @property
    def dim(self) -> int:
        """Number of spatial modes N: 2 for images, 3 for video clips (time, height, width)."""
        return len(self.input_shape) - 1

    def to_dict(self) -> dict:
        """JSON-serialisable form (tuples become lists)."""
        return {
            "name": self.name, "num_classes": self.num_classes, "input_shape": list(self.input_shape),
            "dim": self.dim, "mean": list(self.mean), "std": list(self.std),
            "crop_padding": self.crop_padding, "flip": self.flip, "classes": list(self.classes),
        }


@dataclass
class TensorData:
    """An in-memory split: samples ``x`` ``(n, C, H, W)`` or ``(n, C, T, H, W)`` (``uint8`` 0..255, or
    float in [0, 1]) and labels ``y`` ``(n,)`` int64, with the dataset's :class:`DatasetInfo`.

    The training loop moves both tensors to the device once and draws shuffled index batches from them.
    """

    x: torch.Tensor
    y: torch.Tensor
    info: DatasetInfo
    split: str = "train"

    def __post_init__(self):
        if self.x.ndim != len(self.info.input_shape) + 1:
            raise ValueError(
                f"x of {self.info.name} must have {len(self.info.input_shape) + 1} dims (n, *{self.info.input_shape}), "
                f"got shape {tuple(self.x.shape)}"
            )
        if self.y.ndim != 1 or self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"y must be (n,) with n = {self.x.shape[0]}, got shape {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device | str) -> "TensorData":
        """The same split with both tensors on ``device`` (no copy when they are already there)."""
        return TensorData(self.x.to(device), self.y.to(device), self.info, self.split)

    def subset(self, limit: int | None) -> "TensorData":
        """The first ``limit`` samples (deterministic); ``None`` keeps all."""
        if limit is None or limit >= len(self):
            return self
        if limit < 1:
            raise ValueError(f"limit must be a positive number of samples, got {limit}")
        return TensorData(self.x[:limit], self.y[:limit], self.info, self.split)


def check_split(split: str) -> str:
    """Return ``split`` if it is ``"train"`` or ``"test"``, else raise a ValueError naming both."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split
