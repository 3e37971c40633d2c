"""The composite kernel of a chain of convolutions (book section 1, :ref:`sec-regression`), computed here and nowhere else.

Convolution 1 (kernel A1 of shape (C_1, C_0, l1_1..l1_N), stride s1, zero padding p1, bias a1) followed by
convolution 2 (A2 of shape (C_2, C_1, l2_1..l2_N), stride s2, padding p2, bias a2) is, away from the
border, one convolution with, per spatial mode,

    kernel   A[k, c, u] = sum_{m, v} A2[k, m, v] A1[m, c, u - s1 v]      ("A2 applied to A1")
    size     l = l1 + s1 (l2 - 1)
    stride   s = s1 s2
    padding  p = p1 + s1 p2          (the zeros of step 2, seen from the input)
    bias     a = (sum_v A2[:, :, v]) a1 + a2

and a chain folds pair by pair, s1 being the stride of everything before. :func:`compose_pair` computes
the kernel, :func:`compose_bias` the bias, :meth:`ConvGeometry.then` the size, stride and padding;
:func:`compose_kernels` folds a whole chain of kernels. Grouped and dilated kernels are first written as
dense ones (:func:`dense_kernel`).

"Away from the border": zeros padded by a later step are zeros of the *feature map*, where the single
convolution sees the earlier layers applied to padded input. The callers say when the chain equals one
convolution exactly: ``kr_lib.formulation.fold`` (a ``single_convolution`` flag and a border term) and
``kr_lib.decompose.reconstructed_conv`` (refuses chains where it would differ). ``kr_lib.redundancy``
reads only the size (the chain's receptive field). The batched ``kr_lib.simulation.composite_kernel``
is the same kernel for its three families, written as one einsum over a stack of networks.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["ConvGeometry", "chain_geometry", "dilated_size", "dense_kernel", "compose_pair", "compose_bias",
           "compose_kernels"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def pad_arg(left: Sequence[int], right: Sequence[int]) -> list[int]:
    """``F.pad``'s argument (last mode first) for per-mode ``left`` and ``right`` zero padding."""
    out: list[int] = []
    for a, b in zip(reversed(left), reversed(right)):
        out += [int(a), int(b)]
    return out


# ----------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class ConvGeometry:
    """The sizes of one convolution per spatial mode: kernel ``l`` (dilation included), stride ``s``, and the
    zeros padded before (``pad_left``) and after (``pad_right``) the input; no padding when not given."""

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    pad_left: tuple[int, ...] | None = None
    pad_right: tuple[int, ...] | None = None

    def __post_init__(self):
        n = len(self.kernel_size)
        for name in ("kernel_size", "stride", "pad_left", "pad_right"):
            value = getattr(self, name)
            value = (0,) * n if value is None else tuple(int(v) for v in value)
            if len(value) != n:
                raise ValueError(f"ConvGeometry: {name} {value} has {len(value)} modes, kernel_size {n}")
            object.__setattr__(self, name, value)

    @classmethod
    def identity(cls, n: int) -> "ConvGeometry":
        """The do-nothing convolution on ``n`` spatial modes: kernel 1, stride 1, no padding."""
        return cls((1,) * n, (1,) * n)

    def then(self, after: "ConvGeometry") -> "ConvGeometry":
        """The sizes of ``after`` applied to this convolution's output, as one convolution:
        ``l + s (l' - 1)``, ``s s'``, ``p + s p'`` (module docstring)."""
        s = self.stride
        return ConvGeometry(
            kernel_size=tuple(l + si * (l2 - 1) for l, si, l2 in zip(self.kernel_size, s, after.kernel_size)),
            stride=tuple(si * s2 for si, s2 in zip(s, after.stride)),
            pad_left=tuple(p + si * p2 for p, si, p2 in zip(self.pad_left, s, after.pad_left)),
            pad_right=tuple(p + si * p2 for p, si, p2 in zip(self.pad_right, s, after.pad_right)),
        )


def chain_geometry(steps: Iterable[ConvGeometry]) -> ConvGeometry:
    """The sizes of a chain of convolutions (first applied first) as one convolution; ValueError when empty."""
    steps = list(steps)
    if not steps:
        raise ValueError("chain_geometry needs at least one convolution")
    return functools.reduce(ConvGeometry.then, steps[1:], steps[0])


def dilated_size(kernel_size: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    """The extent ``d (l - 1) + 1`` of a kernel of size ``l`` with dilation ``d``, per mode."""
    return tuple(int(d) * (int(k) - 1) + 1 for k, d in zip(kernel_size, dilation))


# ----------------------------------------------------------------------------- kernels
def dense_kernel(weight: torch.Tensor, groups: int = 1, dilation: Sequence[int] | None = None) -> torch.Tensor:
    """A grouped and/or dilated conv weight (C_out, C_in / groups, k_1..k_N) as the dense, undilated kernel
    (C_out, C_in, dilated_size(k, dilation)) of the same convolution: zeros between the dilated taps, block
    diagonal over the groups. The weight itself when neither applies. The group expansion is differentiable
    (``torch.func`` too); the dilation is written in place, so it is not."""
    if dilation is not None and any(int(d) != 1 for d in dilation):
        size = dilated_size(weight.shape[2:], dilation)
        dilated = weight.new_zeros(*weight.shape[:2], *size)
        dilated[(slice(None), slice(None)) + tuple(slice(None, None, int(d)) for d in dilation)] = weight
        weight = dilated
    if groups > 1:
        cout, cin_g = weight.shape[:2]
        blocks = weight.reshape(groups, cout // groups, cin_g, *weight.shape[2:])
        eye = torch.eye(groups, dtype=weight.dtype, device=weight.device)
        weight = torch.einsum("ab,aoi...->aobi...", eye, blocks).reshape(cout, groups * cin_g, *weight.shape[2:])
    return weight


def compose_pair(first: torch.Tensor, second: torch.Tensor, stride: Sequence[int]) -> torch.Tensor:
    """The kernel of conv ``second`` (C_2, C_1, l2..) applied after conv ``first`` (C_1, C_0, l1..) of stride
    ``stride``: A[k, c, u] = sum_{m, v} second[k, m, v] first[m, c, u - stride v], shape
    (C_2, C_0, l1 + stride (l2 - 1)). Both dense (``dense_kernel``); differentiable."""
    n, S, l = first.dim() - 2, tuple(int(s) for s in stride), second.shape[2:]
    # a full correlation of the first kernel (batch = its input channel c, channels = m) with the flipped,
    # S-dilated second kernel, in one conv
    reach = [s * (k - 1) for s, k in zip(S, l)]
    padded = F.pad(first.transpose(0, 1), pad_arg(reach, reach))
    return _CONV[n](padded, second.flip(list(range(2, 2 + n))), dilation=S).transpose(0, 1)


def compose_bias(second: torch.Tensor, first_bias: torch.Tensor, second_bias: torch.Tensor) -> torch.Tensor:
    """The bias ``(sum_v second[:, :, v]) first_bias + second_bias`` (C_2,) of conv ``second`` (C_2, C_1, l..)
    with bias ``second_bias`` applied after a conv with bias ``first_bias`` (C_1,)."""
    return second.sum(dim=tuple(range(2, second.dim()))) @ first_bias + second_bias


def compose_kernels(weights: Sequence[torch.Tensor], strides: Sequence[Sequence[int]],
                    groups: Sequence[int] | None = None) -> torch.Tensor:
    """The kernel of a chain of convolutions (module docstring), folded pair by pair with ``compose_pair``.

    ``weights[i]`` has shape (C_{i+1}, C_i / groups_i, k_1..k_N); ``strides[i]`` is its stride (the
    composite stride is their product). Grouped weights are expanded to block-diagonal full ones.
    Returns the composite kernel (C_last, C_0, L_1..L_N). Differentiable (usable with ``torch.func``).
    """
    if not weights:
        raise ValueError("compose_kernels needs at least one weight")
    groups = [1] * len(weights) if groups is None else list(groups)
    A, cumulative = None, None
    for W, s, g in zip(weights, strides, groups):
        W = dense_kernel(W, g)
        A = W if A is None else compose_pair(A, W, cumulative)
        cumulative = tuple(int(b) for b in s) if cumulative is None else tuple(a * int(b) for a, b in zip(cumulative, s))
    return A
