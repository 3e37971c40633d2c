"""The blocks of book section 2, :ref:`sec-decomposition`: each one is a decomposed convolution kernel written as layers.

The designs, as decompositions and as layers:

.. list-table::
   :header-rows: 1

   * - design
     - decomposition of the kernel A (K x P x l_1..l_N)
     - layers
   * - ``dense``
     - none
     - l-conv P->K
   * - ``bottleneck``
     - Tucker-2, ranks (R_in, R)
     - 1x1 P->R_in, l-conv R_in->R, 1x1 R->K
   * - ``resnext``
     - block-term, G groups of Tucker-2
     - 1x1 P->R_in, grouped l-conv, 1x1 R->K
   * - ``inverted_residual``
     - Tucker-2 with a depthwise (diagonal) core, R = tP
     - 1x1 P->R, depthwise l-conv, 1x1 R->K
   * - ``separable``
     - CP, rank R
     - 1x1 P->R, depthwise 1D conv per mode, 1x1 R->K
   * - ``r2plus1d`` (3D)
     - Tucker-like (2+1)D: spatial then temporal factor
     - (1,l,l)-conv P->R, (l,1,1)-conv R->R, 1x1 R->K

Every block ends with a pointwise conv R -> K (``block.projection``; for ``dense`` the conv itself,
R = K), the K x R output factor of its composite kernel. Its attributes: ``K``, ``R``,
``kr_ratio = K / R``, ``design``, ``decomposition``, ``in_channels`` (P), ``R_in``, ``dim``,
``kernel_size``, ``stride``, ``groups``, ``linear``.

``linear=True`` builds the pure decomposed kernel: the convs only (no normalization, activation or
residual; a bias only on the last conv if ``bias=True``), so the block is one convolution with the
composite kernel (``kr_lib.decompose.reconstructed_conv``). ``linear=False`` (default) is the usual
residual block: each conv is followed by BatchNorm, each but the last by ReLU; the shortcut (identity,
or a strided 1x1 conv + BatchNorm when the shape changes) is added and a ReLU follows -- so there is
an activation after the projection R -> K too (as in ResNet; MobileNetV2 keeps its projection linear,
this library applies the same rule to all designs so that they differ only in the decomposition).

Convs use 'same' padding ``(l - 1) // 2``; residual blocks need odd kernel sizes. Tensors are
channels first: (batch, P, d_1..d_N) -> (batch, K, m_1..m_N), ``m_j = floor((d_j - 1) / s_j) + 1``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import complexity
from .complexity import DESIGNS, block_flops, block_naive_count, conv_flops, conv_output_size, cp_dof, tucker_dof

__all__ = [
    "Block",
    "DenseBlock",
    "BottleneckBlock",
    "ResNeXtBlock",
    "InvertedResidualBlock",
    "SeparableBlock",
    "R2Plus1DBlock",
    "make_block",
    "DESIGNS",
]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _tuple(value, dim: int, name: str) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or {dim} ints, got {value!r}")
    if isinstance(value, int):
        value = (value,) * dim
    try:
        out = tuple(int(v) for v in value)
    except TypeError:
        raise TypeError(f"{name} must be an int or {dim} ints, got {value!r}") from None
    if len(out) != dim or any(v < 1 for v in out):
        raise ValueError(f"{name} must be a positive int or {dim} positive ints (one per spatial mode), got {value!r}")
    return out


def _channels(value, name: str) -> int:
    if isinstance(value, (bool, float)) or not hasattr(value, "__index__") or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class Block(nn.Module):
    """Base class: a decomposed convolution P -> K ending in a pointwise projection R -> K.

    Subclasses list their convs as ``(C_in, C_out, kernel, stride, groups)`` in ``_conv_specs``;
    this class builds them (with BN/ReLU/shortcut unless ``linear``) and keeps the bookkeeping.
    """

    design: str = ""
    decomposition: str = ""

    def __init__(self, in_channels: int, K: int, R: int, *, dim: int = 2, kernel_size=3, stride=1,
                 linear: bool = False, bias: bool = False, R_in: int | None = None, groups: int = 1):
        super().__init__()
        if dim not in _CONV:
            raise ValueError(f"dim must be 1, 2 or 3 (spatial modes), got {dim!r}")
        self.in_channels = _channels(in_channels, "in_channels")
        self.K = _channels(K, "K")
        self.R = _channels(R, "R")
        self.R_in = self.R if R_in is None else _channels(R_in, "R_in")
        self.dim = dim
        self.kernel_size = _tuple(kernel_size, dim, "kernel_size")
        self.stride = _tuple(stride, dim, "stride")
        self.groups = _channels(groups, "groups")
        self.linear = bool(linear)
        self.kr_ratio = self.K / self.R
        if not self.linear and any(l % 2 == 0 for l in self.kernel_size):
            raise ValueError(f"a residual block (linear=False) needs odd kernel sizes for 'same' padding, got {self.kernel_size}")
        Conv, BN = _CONV[dim], _BN[dim]
        specs = self._conv_specs()
        layers: list[nn.Module] = []
        for i, (cin, cout, k, s, g) in enumerate(specs):
            last = i == len(specs) - 1
            layers.append(Conv(cin, cout, k, stride=s, padding=tuple((kj - 1) // 2 for kj in k), groups=g,
                               bias=bool(bias) and last))
            if not self.linear:
                layers.append(BN(cout))
                if not last:
                    layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        if self.linear:
            self.shortcut, self.activation = None, None
        elif self.in_channels == self.K and all(s == 1 for s in self.stride):
            self.shortcut, self.activation = nn.Identity(), nn.ReLU(inplace=True)
        else:
            self.shortcut = nn.Sequential(Conv(self.in_channels, self.K, 1, stride=self.stride, bias=False), BN(self.K))
            self.activation = nn.ReLU(inplace=True)

    # -- structure -------------------------------------------------------------------------------------
    def _conv_specs(self) -> list[tuple]:
        raise NotImplementedError

    @property
    def projection(self) -> nn.modules.conv._ConvNd:
        """The last conv of the main path: the 1x1 projection R -> K (for ``dense``, the conv P -> K)."""
        return self.convs()[-1]

    def convs(self) -> list[nn.modules.conv._ConvNd]:
        """The convs of the main path, in order (for ``linear=True`` the block is exactly their composition)."""
        return [m for m in self.body if isinstance(m, nn.modules.conv._ConvNd)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, P, d_1..d_N) -> (batch, K, m_1..m_N)."""
        out = self.body(x)
        if self.shortcut is not None:
            out = self.activation(out + self.shortcut(x))
        return out

    def extra_repr(self) -> str:
        return f"design={self.design!r}, P={self.in_channels}, K={self.K}, R={self.R}, K/R={self.kr_ratio:g}, linear={self.linear}"

    # -- counting --------------------------------------------------------------------------------------
    def _formula_args(self) -> dict:
        return dict(design=self.design, P=self.in_channels, K=self.K, R=self.R, kernel_size=self.kernel_size,
                    R_in=self.R_in, groups=self.groups)

    def analytic_naive_count(self) -> int:
        """Parameters by formula: the theory table's count of the convs (``complexity.block_naive_count``)
        plus the last conv's bias, 2 per channel of each BatchNorm, and the projection shortcut."""
        has_bias = self.projection.bias is not None
        total = block_naive_count(**self._formula_args(), dim=self.dim) + (self.K if has_bias else 0)
        if not self.linear:
            total += 2 * sum(c.out_channels for c in self.convs())
            if isinstance(self.shortcut, nn.Sequential):
                total += self.in_channels * self.K + 2 * self.K
        return total

    def analytic_flops(self, input_size, batch: int = 1) -> int:
        """FLOPs by formula (torch's convention, see ``kr_lib.complexity``) of the convs, shortcut included."""
        total = block_flops(**self._formula_args(), input_size=input_size, stride=self.stride, dim=self.dim, batch=batch)
        if isinstance(self.shortcut, nn.Sequential):
            m = conv_output_size(input_size, 1, self.stride, 0, self.dim)
            total += conv_flops(self.in_channels, self.K, 1, m, batch=batch)
        return total

    def kernel_dof(self) -> int:
        """df of the set of composite kernels (K x P x l_1..l_N) the linear block can represent."""
        raise NotImplementedError

    def summary(self) -> dict:
        """One row of the section-2 table: design, decomposition, P, K, R, K/R, naive counts, kernel df."""
        return {
            "design": self.design, "decomposition": self.decomposition, "dim": self.dim, "P": self.in_channels,
            "K": self.K, "R": self.R, "K/R": self.kr_ratio, "kernel_size": "x".join(map(str, self.kernel_size)),
            "naive_analytic": self.analytic_naive_count(), "naive_counted": complexity.naive_count(self),
            "kernel_numel": self.K * self.in_channels * math.prod(self.kernel_size), "df": self.kernel_dof(),
        }


class DenseBlock(Block):
    """No decomposition: one l-conv P -> K (a plain conv / basic residual block); R = K, K/R = 1."""

    design, decomposition = "dense", "none"

    def __init__(self, in_channels: int, K: int, **kwargs):
        super().__init__(in_channels, K, K, **kwargs)

    def _conv_specs(self):
        return [(self.in_channels, self.K, self.kernel_size, self.stride, 1)]

    def kernel_dof(self) -> int:
        return self.K * self.in_channels * math.prod(self.kernel_size)


class BottleneckBlock(Block):
    """Tucker-2 with ranks (R_in on P, R on K): 1x1 P->R_in, l-conv R_in->R (strided), 1x1 R->K.

    The ResNet bottleneck (R_in = R, e.g. 64 -> 256 has K/R = 4). ``R_in`` defaults to ``R``.
    """

    design, decomposition = "bottleneck", "Tucker-2"

    def __init__(self, in_channels: int, K: int, R: int, *, R_in: int | None = None, **kwargs):
        super().__init__(in_channels, K, R, R_in=R_in, **kwargs)

    def _conv_specs(self):
        one = (1,) * self.dim
        return [(self.in_channels, self.R_in, one, one, 1), (self.R_in, self.R, self.kernel_size, self.stride, self.groups),
                (self.R, self.K, one, one, 1)]

    def kernel_dof(self) -> int:
        return tucker_dof((self.K, self.in_channels, *self.kernel_size), (self.R, self.R_in, *self.kernel_size))


class ResNeXtBlock(BottleneckBlock):
    """Block-term decomposition, G groups of Tucker-2: 1x1 P->R_in, grouped l-conv (G groups), 1x1 R->K.

    Each group g is a Tucker-2 term with ranks (R_in/G, R/G); the kernel is the sum of the G terms.
    """

    design, decomposition = "resnext", "block-term (G Tucker-2 terms)"

    def __init__(self, in_channels: int, K: int, R: int, groups: int, *, R_in: int | None = None, **kwargs):
        R_in_ = R if R_in is None else R_in
        if not isinstance(groups, int) or groups < 1 or R % groups or R_in_ % groups:
            raise ValueError(f"groups must be a positive int dividing R={R} and R_in={R_in_}, got {groups!r}")
        super().__init__(in_channels, K, R, R_in=R_in, groups=groups, **kwargs)

    def kernel_dof(self) -> int:
        G, l = self.groups, self.kernel_size
        r, r_in = self.R // G, self.R_in // G
        term = tucker_dof((self.K, self.in_channels, *l), (r, r_in, *l))
        return min(G * term, self.K * self.in_channels * math.prod(l))


class InvertedResidualBlock(Block):
    """Tucker-2 with a depthwise (diagonal) core, R = t P: 1x1 P->R, depthwise l-conv, 1x1 R->K (MobileNetV2).

    Give ``R`` or ``expansion`` t (then R = t P); if both, they must agree. K/R = K / (t P).
    The kernel ``A[k, c, u] = sum_r U_out[k, r] D[r, u] U_in[r, c]`` is a CP tensor of rank R on
    (K, P, prod l) -- the spatial modes not factored.
    """

    design, decomposition = "inverted_residual", "Tucker-2, depthwise core"

    def __init__(self, in_channels: int, K: int, R: int | None = None, *, expansion: float | None = None, **kwargs):
        if expansion is not None:
            t_R = expansion * in_channels
            if t_R != int(t_R) or t_R < 1:
                raise ValueError(f"expansion * in_channels must be a positive integer, got {expansion} * {in_channels}")
            if R is not None and R != int(t_R):
                raise ValueError(f"R={R} disagrees with expansion={expansion} (t P = {int(t_R)}); give one of them")
            R = int(t_R)
        if R is None:
            raise ValueError("InvertedResidualBlock needs R or expansion")
        self.expansion = R / in_channels
        kwargs.pop("groups", None)
        super().__init__(in_channels, K, R, **kwargs)

    def _conv_specs(self):
        one = (1,) * self.dim
        return [(self.in_channels, self.R, one, one, 1), (self.R, self.R, self.kernel_size, self.stride, self.R),
                (self.R, self.K, one, one, 1)]

    def _formula_args(self) -> dict:
        return {**super()._formula_args(), "R_in": None}

    def kernel_dof(self) -> int:
        return cp_dof((self.K, self.in_channels, math.prod(self.kernel_size)), self.R)


class SeparableBlock(Block):
    """CP of rank R: 1x1 P->R, a depthwise 1D conv along each spatial mode (stride s_j in mode j's), 1x1 R->K.

    ``A[k, c, u_1..u_N] = sum_r U_K[k, r] U_P[c, r] U_1[u_1, r] ... U_N[u_N, r]``.
    """

    design, decomposition = "separable", "CP"

    def __init__(self, in_channels: int, K: int, R: int, **kwargs):
        kwargs.pop("groups", None)
        super().__init__(in_channels, K, R, **kwargs)

    def _conv_specs(self):
        one = (1,) * self.dim
        specs = [(self.in_channels, self.R, one, one, 1)]
        for j in range(self.dim):
            k = tuple(self.kernel_size[j] if i == j else 1 for i in range(self.dim))
            s = tuple(self.stride[j] if i == j else 1 for i in range(self.dim))
            specs.append((self.R, self.R, k, s, self.R))
        return specs + [(self.R, self.K, one, one, 1)]

    def kernel_dof(self) -> int:
        return cp_dof((self.K, self.in_channels, *self.kernel_size), self.R)


class R2Plus1DBlock(Block):
    """(2+1)D, 3D only: spatial (1, l_h, l_w)-conv P->R, temporal (l_t, 1, 1)-conv R->R, 1x1x1 R->K.

    ``A[k, c, t, h, w] = sum_{r, r'} U[k, r'] T[r', r, t] S[r, c, h, w]``: reshaped to
    (K, l_t, P l_h l_w) a Tucker tensor with core T and ranks (R, l_t, R).
    """

    design, decomposition = "r2plus1d", "full Tucker-like (2+1)D"

    def __init__(self, in_channels: int, K: int, R: int, **kwargs):
        if kwargs.setdefault("dim", 3) != 3:
            raise ValueError(f"R2Plus1DBlock is 3D only (dim=3), got dim={kwargs['dim']}")
        kwargs.pop("groups", None)
        super().__init__(in_channels, K, R, **kwargs)

    def _conv_specs(self):
        lt, lh, lw = self.kernel_size
        st, sh, sw = self.stride
        return [(self.in_channels, self.R, (1, lh, lw), (1, sh, sw), 1), (self.R, self.R, (lt, 1, 1), (st, 1, 1), 1),
                (self.R, self.K, (1, 1, 1), (1, 1, 1), 1)]

    def kernel_dof(self) -> int:
        lt, lh, lw = self.kernel_size
        return tucker_dof((self.K, lt, self.in_channels * lh * lw), (self.R, lt, self.R))


_CLASSES = {"dense": DenseBlock, "bottleneck": BottleneckBlock, "resnext": ResNeXtBlock,
            "inverted_residual": InvertedResidualBlock, "separable": SeparableBlock, "r2plus1d": R2Plus1DBlock}


def make_block(design: str, in_channels: int, K: int, R: int | None, dim: int = 2, kernel_size=3, stride=1,
               groups: int | None = None, expansion: float | None = None, linear: bool = False, bias: bool = False,
               R_in: int | None = None) -> Block:
    """Build a block by design name (one of ``DESIGNS``) with K output channels and output-side rank R.

    ``dense``: R must be None or K. ``resnext``: ``groups`` defaults to R // 4 (4 channels per group, as
    ResNeXt-50 32x4d) and must divide R. ``inverted_residual``: R or ``expansion`` (R = t P).
    ``r2plus1d``: dim must be 3. ``R_in`` (the rank on P) applies to ``bottleneck``/``resnext``, default R.
    """
    if design not in _CLASSES:
        raise ValueError(f"unknown design {design!r}; accepted: {', '.join(DESIGNS)}")
    common = dict(dim=dim, kernel_size=kernel_size, stride=stride, linear=linear, bias=bias)
    if design == "dense":
        if R is not None and R != K:
            raise ValueError(f"a dense block has R = K (no decomposition); got K={K}, R={R}. Pass R=None or R=K")
        return DenseBlock(in_channels, K, **common)
    if design == "inverted_residual":
        return InvertedResidualBlock(in_channels, K, R, expansion=expansion, **common)
    if R is None:
        raise ValueError(f"design {design!r} needs R (the rank entering the final 1x1 projection)")
    if design == "bottleneck":
        return BottleneckBlock(in_channels, K, R, R_in=R_in, **common)
    if design == "resnext":
        if groups is None:
            if R % 4:
                raise ValueError(f"resnext: pass groups (a divisor of R={R}); the default R // 4 needs 4 | R")
            groups = R // 4
        return ResNeXtBlock(in_channels, K, R, groups, R_in=R_in, **common)
    if design == "separable":
        return SeparableBlock(in_channels, K, R, **common)
    return R2Plus1DBlock(in_channels, K, R, **common)
