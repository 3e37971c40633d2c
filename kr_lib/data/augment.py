"""Normalization and augmentation of whole batches, on the device the batch is on.

torchvision's v2 transforms accept batched tensors but draw one random crop/flip for the whole batch;
the standard augmentation draws one per sample, so the crop and flip here are per-sample index
operations (one gather, one ``torch.where``), with the random numbers drawn from a seeded CPU
``torch.Generator`` so a run is reproducible on every device.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DatasetInfo


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """Samples as float32 in [0, 1]: ``uint8`` is divided by 255, floats are taken as already in [0, 1]."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise TypeError(f"samples must be uint8 (0..255) or float (0..1), got dtype {x.dtype}")
    return x.float()


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """``(x - mean) / std`` per channel; ``x`` is ``(n, C, ...)`` (any number of trailing modes)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - m) / s


def crop(x: torch.Tensor, size: tuple[int, int], top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Per-sample crop of the last two modes: sample i keeps rows ``top[i]:top[i]+h``, cols ``left[i]:left[i]+w``.

    ``x`` is ``(n, ..., H, W)``, ``top``/``left`` are ``(n,)`` integer tensors; returns ``(n, ..., h, w)``.
    The same window is used for every channel and frame of a sample (a clip is cropped consistently).
    """
    n, h, w = x.shape[0], size[0], size[1]
    if x.shape[-2:] == (h, w):
        return x
    lead = x.shape[1:-2]
    flat = x.reshape(n, -1, x.shape[-2], x.shape[-1])  # (n, M, H, W)
    rows = (top.view(n, 1) + torch.arange(h, device=x.device)).view(n, h, 1)
    cols = (left.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    out = flat[batch, :, rows, cols]  # advanced indices first: (n, h, w, M)
    return out.permute(0, 3, 1, 2).reshape(n, *lead, h, w)


def random_crop(x: torch.Tensor, size: tuple[int, int], padding: int = 0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad the last two modes by ``padding`` and crop each sample to ``size`` at a random place."""
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))
    n, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    if H < size[0] or W < size[1]:
        raise ValueError(f"cannot crop {size} out of samples of size {(H, W)}")
    top = torch.randint(0, H - size[0] + 1, (n,), generator=generator).to(x.device, non_blocking=True)
    left = torch.randint(0, W - size[1] + 1, (n,), generator=generator).to(x.device, non_blocking=True)
    return crop(x, size, top, left)


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop the last two modes of every sample to ``size`` around the centre."""
    H, W = x.shape[-2], x.shape[-1]
    top, left = (H - size[0]) // 2, (W - size[1]) // 2
    return x[..., top:top + size[0], left:left + size[1]]


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each sample left-right (last mode) with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    flip = flip.to(x.device, non_blocking=True).view((-1,) + (1,) * (x.ndim - 1))
    return torch.where(flip, x.flip(-1), x)


def prepare_batch(x: torch.Tensor, info: DatasetInfo, train: bool = False,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """A stored batch ``(n, C, [T,] H, W)`` -> normalized float32 network input of shape ``(n, *info.input_shape)``.

    Training (``train=True``): the dataset's standard augmentation (random crop with ``info.crop_padding``
    zero padding, or out of larger stored frames; random left-right flip when ``info.flip``).
    Testing: only the centre crop of larger stored frames. Then ``(x - mean) / std`` per channel.

    The result is always in the contiguous memory format: the per-sample crop leaves a channels-last
    layout behind by accident, and oneDNN's convolution backward on one thread corrupts memory on
    channels-last inputs on AVX2 machines (``scripts/repro_onednn_channels_last.py``). A layout is
    chosen on purpose or not at all.
    """
    x = to_unit_float(x)
    size = tuple(info.input_shape[-2:])
    if train and (info.crop_padding or tuple(x.shape[-2:]) != size):
        x = random_crop(x, size, info.crop_padding, generator)
    elif tuple(x.shape[-2:]) != size:
        x = center_crop(x, size)
    if train and info.flip:
        x = random_flip(x, generator)
    return normalize(x, info.mean, info.std).contiguous(memory_format=torch.contiguous_format)
