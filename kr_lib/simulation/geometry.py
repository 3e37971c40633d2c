"""The shapes of one conv -> activation -> average pooling -> linear head network (book section 1, :ref:`sec-regression`).

``CNNGeometry`` holds the sizes that are fixed by the architecture and not learned: input channels P,
spatial sizes d (2 modes for images, 3 for video clips), kernel size l, stride s, pooling window q and
the number of outputs O. From them follow the conv output sizes m_j = floor((d_j - l_j)/s_j) + 1 and
the pooled sizes p_j = floor(m_j / q_j).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kr_lib.complexity import conv_output_size


def _as_tuple(value, n_modes: int, name: str) -> tuple[int, ...]:
    """``value`` (an int or a sequence of n_modes ints, all >= 1) as a tuple of ints."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a sequence of {n_modes} ints, got {value!r}")
    if isinstance(value, int):
        value = (value,) * n_modes
    try:
        out = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of {n_modes} ints, got {value!r}") from None
    if len(out) != n_modes or not all(isinstance(v, int) and not isinstance(v, bool) for v in out):
        raise ValueError(f"{name} must be an int or {n_modes} ints (one per spatial mode), got {value!r}")
    if min(out) < 1:
        raise ValueError(f"{name} must be >= 1 in every mode, got {value!r}")
    return out


@dataclass(frozen=True)
class CNNGeometry:
    """Sizes of the network y = head(pool(act(conv(X)))), input X of shape (P, d_1, ..., d_N).

    Args:
        spatial: the input's spatial sizes d (N = 2 or 3 of them).
        in_channels: P.
        kernel_size: l (an int for every mode, or N ints).
        stride: s of the convolution (int or N ints).
        pool: q, the window (= stride) of the non-overlapping average pooling (int or N ints).
        out_features: O, the outputs of the linear head.
    """

    spatial: tuple[int, ...]
    in_channels: int
    kernel_size: tuple[int, ...] | int = 3
    stride: tuple[int, ...] | int = 1
    pool: tuple[int, ...] | int = 2
    out_features: int = 1

    def __post_init__(self):
        if isinstance(self.spatial, int) or len(tuple(self.spatial)) not in (2, 3):
            raise ValueError(f"spatial must list 2 (images) or 3 (video: time, height, width) sizes, got {self.spatial!r}")
        spatial = _as_tuple(self.spatial, len(tuple(self.spatial)), "spatial")
        n = len(spatial)
        object.__setattr__(self, "spatial", spatial)
        object.__setattr__(self, "kernel_size", _as_tuple(self.kernel_size, n, "kernel_size"))
        object.__setattr__(self, "stride", _as_tuple(self.stride, n, "stride"))
        object.__setattr__(self, "pool", _as_tuple(self.pool, n, "pool"))
        for name in ("in_channels", "out_features"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for j, (d, l) in enumerate(zip(self.spatial, self.kernel_size)):
            if l > d:
                raise ValueError(f"kernel_size {self.kernel_size} does not fit the input {self.spatial} (mode {j})")
        for j, (m, q) in enumerate(zip(self.conv_size, self.pool)):
            if q > m:
                raise ValueError(
                    f"pool {self.pool} is larger than the conv output {self.conv_size} (mode {j}); "
                    f"use a pool of at most {self.conv_size}"
                )

    @property
    def n_modes(self) -> int:
        """N, the number of spatial modes."""
        return len(self.spatial)

    @property
    def conv_size(self) -> tuple[int, ...]:
        """m_j = floor((d_j - l_j) / s_j) + 1 (``kr_lib.complexity.conv_output_size``, no padding)."""
        return conv_output_size(self.spatial, self.kernel_size, self.stride)

    @property
    def pooled_size(self) -> tuple[int, ...]:
        """p_j = floor(m_j / q_j)."""
        return tuple(m // q for m, q in zip(self.conv_size, self.pool))

    @property
    def kernel_numel(self) -> int:
        """prod(l), written L."""
        return math.prod(self.kernel_size)

    @property
    def pooled_numel(self) -> int:
        """prod(p)."""
        return math.prod(self.pooled_size)

    @property
    def summarized_shape(self) -> tuple[int, ...]:
        """Shape of one output's summarized tensor W_o: (P, l_1..l_N, p_1..p_N)."""
        return (self.in_channels, *self.kernel_size, *self.pooled_size)

    def unidentifiable_modes(self) -> list[int]:
        """The spatial modes j whose design factor S_j (d_j x l_j p_j, book section 1, :ref:`sec-regression`) has a null space.

        With identity activation y = <X, W x_1 S_1 .. x_N S_N>, so W itself is identifiable from (X, y)
        only when every S_j has full column rank (for instance stride = kernel size, or l_j p_j <= d_j with
        stride 1). Overlapping patches with l_j p_j > d_j leave directions of W that no data can see.
        """
        from kr_lib.formulation import pooling_factor

        bad = []
        for j in range(self.n_modes):
            S = pooling_factor(self.spatial[j], self.kernel_size[j], self.stride[j], self.pool[j],
                               self.pooled_size[j], 0)
            if int(torch.linalg.matrix_rank(S)) < S.shape[1]:
                bad.append(j)
        return bad

    @property
    def summarized_modes(self) -> tuple[int, ...]:
        """The modes that carry ranks in book section 3, :ref:`sec-df`: (P, l_1, .., l_N, prod p)."""
        return (self.in_channels, *self.kernel_size, self.pooled_numel)


def patches(X: torch.Tensor, geometry: CNNGeometry) -> torch.Tensor:
    """The unfolded input (im2col): patches[n, (c, u), i] = X[n, c, s*i + u].

    Args:
        X: inputs, shape (n, P, d_1..d_N).
    Returns:
        shape (n, P * prod(l), prod(m)); a conv with kernel A (K, P*prod(l)) is ``A @ patches``.
    """
    g = geometry
    if X.dim() != g.n_modes + 2 or tuple(X.shape[1:]) != (g.in_channels, *g.spatial):
        raise ValueError(f"X must have shape (n, {g.in_channels}, {', '.join(map(str, g.spatial))}), got {tuple(X.shape)}")
    N = g.n_modes
    out = X
    for j in range(N):  # -> (n, P, m_1..m_N, l_1..l_N)
        out = out.unfold(2 + j, g.kernel_size[j], g.stride[j])
    order = (0, 1, *range(N + 2, 2 * N + 2), *range(2, N + 2))  # -> (n, P, l.., m..)
    return out.permute(order).reshape(X.shape[0], g.in_channels * g.kernel_numel, math.prod(g.conv_size))


def pooling_matrix(geometry: CNNGeometry, *, dtype=None, device=None) -> torch.Tensor:
    """The average pooling as a matrix S, shape (prod(m), prod(p)): pooled = conv_output @ S."""
    g = geometry
    M = math.prod(g.conv_size)
    eye = torch.eye(M, dtype=dtype, device=device).reshape(M, 1, *g.conv_size)
    pool = F.avg_pool2d if g.n_modes == 2 else F.avg_pool3d
    return pool(eye, kernel_size=g.pool, stride=g.pool).reshape(M, g.pooled_numel)
