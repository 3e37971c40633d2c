"""A stack of linear convolutions is one convolution: fold the trunk's steps into a composite kernel.

Convolution 1 (kernel A1 of size l1, stride s1) followed by convolution 2 (kernel A2, size l2, stride s2)
is the convolution with

    kernel  A[k2, c, u] = sum_{k, v} A2[k2, k, v] A1[k, c, u - s1 v]     (size l1 + s1 (l2 - 1))
    stride  s1 s2,     bias  a = (sum_v A2[:, :, v]) a1 + a2,

"the second kernel applied to the first": A is a full correlation of A1 with A2 dilated by s1, which is
what :func:`compose` computes with one ``torch.nn.functional.conv{N}d``. The zeros that a step pads
its input with are, seen from the input, ``S * pad`` zeros (S the stride of what came before), so the
composite pads the input by ``sum_steps S_before * pad``.

That last statement is exact for the first step only. A later step pads the *feature map* with zeros,
where the composite convolution would see the earlier layers applied to the zero-padded input (their
bias, and kernels that still reach real pixels). Away from the border both agree; at the border they
differ. :class:`CompositeConv` says so with ``single_convolution=False``, and
:class:`~kr_lib.formulation.TensorRegression` then carries the exact difference as a border term.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .layers import ConvStep

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def pad_arg(left, right) -> list[int]:
    """``F.pad``'s argument (last mode first) for per-mode ``left`` and ``right`` zero padding."""
    out: list[int] = []
    for a, b in zip(reversed(left), reversed(right)):
        out += [int(a), int(b)]
    return out


@dataclass(frozen=True, eq=False)
class CompositeConv:
    """One zero-padded convolution: kernel A (K, P, L_1..L_N), bias a (K,), stride S, input padding.

    ``single_convolution`` is True when the stack it came from equals it everywhere (no step after the
    first pads); otherwise it equals the stack away from the border only.
    """

    kernel: torch.Tensor
    bias: torch.Tensor
    stride: tuple[int, ...]
    pad_left: tuple[int, ...]
    pad_right: tuple[int, ...]
    single_convolution: bool = True

    @classmethod
    def identity(cls, channels: int, n: int, like: torch.Tensor) -> "CompositeConv":
        """The do-nothing convolution on ``channels`` channels and ``n`` modes (kernel size 1)."""
        eye = torch.eye(channels, dtype=like.dtype, device=like.device).reshape(channels, channels, *(1,) * n)
        return cls(eye, like.new_zeros(channels), (1,) * n, (0,) * n, (0,) * n, True)


def compose(first: CompositeConv, step: ConvStep, is_first_step: bool = False) -> CompositeConv:
    """The convolution ``step`` applied after ``first``, as one convolution (see the module docstring)."""
    n, S, l = len(first.stride), first.stride, step.kernel_size
    # full correlation of the first kernel (batch = its input channel c, channels = k) with the flipped,
    # S-dilated second kernel: out[c, k2, u] = sum_{k, v} A2[k2, k, v] A1[k, c, u - S v]
    padded = F.pad(first.kernel.transpose(0, 1), pad_arg([s * (k - 1) for s, k in zip(S, l)],
                                                         [s * (k - 1) for s, k in zip(S, l)]))
    kernel = _CONV[n](padded, step.weight.flip(list(range(2, 2 + n))), dilation=S).transpose(0, 1)
    bias = step.weight.sum(dim=tuple(range(2, 2 + n))) @ first.bias + step.bias
    return CompositeConv(
        kernel=kernel.contiguous(),
        bias=bias,
        stride=tuple(a * b for a, b in zip(S, step.stride)),
        pad_left=tuple(p + s * a for p, s, a in zip(first.pad_left, S, step.pad_left)),
        pad_right=tuple(p + s * a for p, s, a in zip(first.pad_right, S, step.pad_right)),
        single_convolution=first.single_convolution and (is_first_step or not step.is_padded),
    )


def fold(steps, channels: int, n: int, like: torch.Tensor) -> CompositeConv:
    """All ``steps`` (input channels ``channels``, ``n`` spatial modes) as one :class:`CompositeConv`."""
    conv = CompositeConv.identity(channels, n, like)
    for i, step in enumerate(steps):
        conv = compose(conv, step, is_first_step=(i == 0))
    return conv
