"""The model of section 1 -- convolution, average pooling, fully connected, identity activation -- and a
plain Adam loop to fit it (the library's general training loop lives elsewhere)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..complexity import conv_output_size
from ..device import resolve_device
from ..progress import progress_bar

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}


def linear_cnn(input_shape=(1, 28, 28), num_classes: int = 10, K: int = 8, kernel_size: int = 5, pool: int = 4,
               stride: int = 1, padding: int = 0, seed: int | None = 0) -> nn.Sequential:
    """conv (P -> K, kernel ``kernel_size``) -> average pooling (window ``pool``) -> Flatten -> Linear (O outputs).

    No activation: the network is the tensor regression of section 1. ``input_shape`` is (P, d_1..d_N),
    N = 1, 2 or 3. ``seed`` seeds the initialization (the caller's random state is left as it was).
    """
    if len(input_shape) not in (2, 3, 4):
        raise ValueError(f"input_shape must be (P, d_1..d_N) with N = 1, 2 or 3, got {input_shape!r}")
    P, d, n = input_shape[0], input_shape[1:], len(input_shape) - 1
    try:
        m = conv_output_size(tuple(d), kernel_size, stride, padding)
    except ValueError:  # the kernel does not fit: no conv output at all
        m = ()
    p = [mj // pool for mj in m]
    if not p or min(p) < 1:
        raise ValueError(f"input {tuple(d)} with kernel_size={kernel_size}, stride={stride}, padding={padding} "
                         f"gives {f'conv output {m}' if m else 'no conv output'}, too small for pool={pool}; "
                         "accepted: smaller kernel/pool")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return nn.Sequential(
            _CONV[n](P, K, kernel_size, stride=stride, padding=padding),
            _POOL[n](pool),
            nn.Flatten(),
            nn.Linear(K * math.prod(p), num_classes),
        )


def fit_linear_cnn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 5, lr: float = 1e-2,
                   batch_size: int = 128, seed: int = 0, device=None, progress: bool = False) -> list[float]:
    """Fit ``model`` to inputs ``x`` (n, P, d..) and class labels ``y`` (n,) by Adam on the cross-entropy.

    Moves the model and the data to ``device`` (:func:`kr_lib.device.resolve_device`; None picks one),
    shuffles with a generator seeded by ``seed``, leaves the model in eval mode and returns the mean
    training loss of each epoch.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must have one label per sample, got {len(x)} samples and {len(y)} labels")
    device = resolve_device(device)
    dtype = next(model.parameters()).dtype
    model.to(device).train()
    x, y = x.to(device, dtype), y.to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in progress_bar(range(epochs), desc="epochs", enabled=progress):
        total = torch.zeros((), device=device)
        for idx in torch.randperm(len(x), generator=generator).to(device).split(batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(idx)
        losses.append(total.item() / len(x))
    model.eval()
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
    """Share of samples whose largest output is the label; evaluated in batches on the model's device."""
    param = next(model.parameters())
    model.eval()
    correct = 0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        pred = model(xb.to(param.device, param.dtype)).argmax(dim=1)
        correct += (pred == yb.to(param.device)).sum().item()
    return correct / len(x)
