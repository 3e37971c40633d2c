"""A stack of linear convolutions is one convolution: fold the trunk's steps into a composite kernel.

Convolution 1 (kernel A1 of size l1, stride s1) followed by convolution 2 (kernel A2, size l2, stride s2)
is the convolution with kernel ``A[k2, c, u] = sum_{k, v} A2[k2, k, v] A1[k, c, u - s1 v]`` (size
``l1 + s1 (l2 - 1)``), stride ``s1 s2`` and bias ``a = (sum_v A2[:, :, v]) a1 + a2``: "the second kernel
applied to the first", computed by :mod:`kr_lib.composite` (the one implementation of the composite kernel),
which :func:`compose` applies step by step. The zeros that a step pads its input with are, seen from the
input, ``S * pad`` zeros (S the stride of what came before), so the composite pads the input by
``sum_steps S_before * pad``.

That last statement is exact for the first step only. A later step pads the *feature map* with zeros,
where the composite convolution would see the earlier layers applied to the zero-padded input (their
bias, and kernels that still reach real pixels). Away from the border both agree; at the border they
differ. :class:`CompositeConv` says so with ``single_convolution=False``, and
:class:`~kr_lib.formulation.TensorRegression` then carries the exact difference as a border term.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..composite import ConvGeometry, compose_bias, compose_pair
from .layers import ConvStep


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
    geometry = ConvGeometry(tuple(first.kernel.shape[2:]), first.stride, first.pad_left, first.pad_right).then(
        ConvGeometry(step.kernel_size, step.stride, step.pad_left, step.pad_right))
    return CompositeConv(
        kernel=compose_pair(first.kernel, step.weight, first.stride).contiguous(),
        bias=compose_bias(step.weight, first.bias, step.bias),
        stride=geometry.stride,
        pad_left=geometry.pad_left,
        pad_right=geometry.pad_right,
        single_convolution=first.single_convolution and (is_first_step or not step.is_padded),
    )


def fold(steps, channels: int, n: int, like: torch.Tensor) -> CompositeConv:
    """All ``steps`` (input channels ``channels``, ``n`` spatial modes) as one :class:`CompositeConv`."""
    conv = CompositeConv.identity(channels, n, like)
    for i, step in enumerate(steps):
        conv = compose(conv, step, is_first_step=(i == 0))
    return conv
