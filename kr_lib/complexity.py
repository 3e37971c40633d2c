"""Degrees of freedom, naive parameter counts and FLOPs (book sections 2, 3, :ref:`sec-decomposition` and :ref:`sec-df`).

Three ways of counting the size of a model:

* **degrees of freedom** (df) -- the dimension of the set of weight tensors a parametrization can
  reach. It is what the sample complexity of least squares depends on (book section 3, :ref:`sec-df`):
  ``tucker_dof``, ``cp_dof``, ``compressed_conv_df``, checked numerically by ``jacobian_dof``
  (the rank of the Jacobian of the parametrization at a random point);
* the **naive count** -- the number of scalars stored: ``naive_count`` (of a module),
  ``block_naive_count`` and ``compressed_conv_naive`` (analytic);
* **FLOPs** -- ``flop_count`` (measured by ``torch.utils.flop_counter.FlopCounterMode``) and the
  analytic ``conv_flops`` / ``block_flops``.

FLOP convention (PyTorch's): one multiply-accumulate is 2 FLOPs; only convolutions and matrix
products count (biases, BatchNorm, activations and pooling count 0). A convolution with
``C_in`` input channels, ``C_out`` output channels, ``groups`` groups, kernel ``l`` and output
size ``m`` costs ``2 * batch * C_out * (C_in / groups) * prod(l) * prod(m)``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode
from torch import nn

from .validate import integral_positive_int

__all__ = [
    "tucker_dof",
    "tucker_ranks_clipped",
    "cp_dof",
    "naive_count",
    "flop_count",
    "conv_output_size",
    "conv_flops",
    "block_flops",
    "block_naive_count",
    "compressed_conv_df",
    "compressed_conv_naive",
    "compressed_conv_weight",
    "compressed_conv_jacobian_rank",
    "jacobian_dof",
    "DESIGNS",
]

#: Block designs of book section 2, sec-decomposition (the names ``kr_lib.blocks.make_block`` accepts).
DESIGNS = ("dense", "bottleneck", "resnext", "inverted_residual", "separable", "r2plus1d")


# ----------------------------------------------------------------------------- validation helpers
def _positive_ints(values, name: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of positive integers, got {values!r}") from None
    if any(v != w for v, w in zip(out, values)) or any(v < 1 for v in out):
        raise ValueError(f"{name} must hold positive integers, got {tuple(values)!r}")
    return out


_positive_int = integral_positive_int  # sizes of the theory: an integer type, >= 1


def _per_mode(value, dim: int, name: str) -> tuple[int, ...]:
    """An int (the same for each of ``dim`` spatial modes) or a sequence of ``dim`` ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (_positive_int(value, name),) * dim
    out = _positive_ints(value, name)
    if len(out) != dim:
        raise ValueError(f"{name} must be an int or {dim} ints (one per spatial mode), got {tuple(value)!r}")
    return out


# ----------------------------------------------------------------------------- degrees of freedom
def tucker_ranks_clipped(dims: Sequence[int], ranks: Sequence[int]) -> tuple[int, ...]:
    """The attainable Tucker (multilinear) ranks: ``r_j <= n_j`` and ``r_j <= prod_{i != j} r_i``.

    The second bound holds because the mode-j unfolding of the core (``r_j x prod_{i != j} r_i``)
    has rank at most its number of columns. Clipping one rank can lower another's bound, so the
    clipping is repeated until nothing changes.
    """
    dims = _positive_ints(dims, "dims")
    ranks = _positive_ints(ranks, "ranks")
    if len(dims) != len(ranks):
        raise ValueError(f"dims and ranks must have the same length, got {len(dims)} dims {dims} and {len(ranks)} ranks {ranks}")
    r = [min(rj, nj) for rj, nj in zip(ranks, dims)]
    if len(r) == 1:
        return tuple(r)
    changed = True
    while changed:
        changed = False
        for j in range(len(r)):
            others = math.prod(r[:j] + r[j + 1:])
            if r[j] > others:
                r[j] = others
                changed = True
    return tuple(r)


def tucker_dof(dims: Sequence[int], ranks: Sequence[int]) -> int:
    """Dimension of the set of tensors of shape ``dims`` with Tucker ranks at most ``ranks``.

    ``df = prod_j r_j + sum_j r_j (n_j - r_j)``: the core (``prod r_j``) plus, per mode, a point of
    the Grassmannian of ``r_j``-dimensional subspaces of ``R^{n_j}`` (``r_j (n_j - r_j)``). Ranks are
    first clipped to the attainable ones (``tucker_ranks_clipped``), so the result never exceeds
    ``prod(dims)``. A single mode (a vector) has ``df = n`` for any rank >= 1.

    >>> tucker_dof((6, 3, 3, 9), (3, 3, 3, 2))   # book section 3, sec-df, K >= 2
    77
    """
    dims = _positive_ints(dims, "dims")
    if len(dims) == 1:
        _positive_ints(ranks, "ranks")
        return dims[0]
    r = tucker_ranks_clipped(dims, ranks)
    return math.prod(r) + sum(rj * (nj - rj) for rj, nj in zip(r, dims))


def cp_dof(dims: Sequence[int], rank: int) -> int:
    """Dimension of the set of tensors of shape ``dims`` with CP rank at most ``rank``.

    ``df = R (sum_j n_j - M + 1)`` (``M`` modes): ``R`` rank-one terms, each with ``sum n_j``
    entries minus ``M - 1`` scalings. Conventions and clipping (the formula is the *expected*
    dimension; these keep it from overshooting):

    * modes of size 1 are dropped first (they do not change the set);
    * one mode left (a vector): ``df = n``;
    * two modes (a matrix): the exact ``r (n_1 + n_2 - r)`` with ``r = min(R, n_1, n_2)`` -- the
      CP formula would overcount there, since a rank-R matrix factorization is not unique;
    * three or more modes: ``min(R (sum n_j - M + 1), prod n_j)``. This is exact whenever the
      decomposition is generically identifiable, e.g. under Kruskal's condition
      ``sum_j min(n_j, R) >= 2 R + M - 1``. Outside it the true dimension can be smaller
      (defective cases, e.g. strongly unbalanced shapes such as ``4 x 2 x 2`` at ``R = 3``:
      formula 16, true 15); use ``jacobian_dof`` to get it numerically.
    """
    dims = _positive_ints(dims, "dims")
    rank = _positive_int(rank, "rank")
    n = [d for d in dims if d > 1]
    if not n:
        return 1
    if len(n) == 1:
        return n[0]
    if len(n) == 2:
        r = min(rank, n[0], n[1])
        return r * (n[0] + n[1] - r)
    return min(rank * (sum(n) - len(n) + 1), math.prod(n))


def jacobian_dof(fn: Callable[..., torch.Tensor], *params: torch.Tensor, rtol: float | None = None) -> int:
    """Numerical degrees of freedom: the rank of the Jacobian of ``fn`` at ``params``.

    ``fn(*params)`` maps the factors of a parametrization (e.g. ``U_in, core, U_out, B``) to the
    tensor they build; at a generic (random) point the rank of its Jacobian is the dimension of the
    set of reachable tensors. Use float64 and small sizes: the Jacobian has
    ``numel(fn(*params)) x sum(p.numel())`` entries. ``rtol`` is passed to
    ``torch.linalg.matrix_rank`` (default: ``eps * max(shape)`` relative to the largest singular value).
    """
    if not params:
        raise ValueError("jacobian_dof needs at least one parameter tensor")
    jac = torch.func.jacrev(fn, argnums=tuple(range(len(params))))(*params)
    out_numel = fn(*params).numel()
    mat = torch.cat([j.reshape(out_numel, -1) for j in jac], dim=1)
    return int(torch.linalg.matrix_rank(mat, rtol=rtol))


# ----------------------------------------------------------------------------- section 3: one compressed conv + pooling + FC
def compressed_conv_df(P: int, R_in: int, R: int, K: int, kernel_size, pooled_size, num_outputs: int = 1, dim: int = 2) -> int:
    """df of the summarized tensor W of a Tucker-2 conv -> average pooling -> FC (book section 3, :ref:`sec-df`).

    The conv kernel is ``A = core x_K U_out x_P U_in`` (``U_in``: P x R_in, ``core``:
    R x R_in x l_1..l_N, ``U_out``: K x R); the FC weight is ``B`` (O x K x p_1..p_N). Then
    ``W[o, c, u, t] = sum_k A[k, c, u] B[o, k, t]``. Grouping the output index with the pooled
    positions, W is a tensor of shape ``(P, l_1..l_N, O prod p)`` whose last factor
    ``B_(K) ^T U_out`` has rank at most ``R' = min(R, K)``. So W is exactly a Tucker tensor with
    ranks ``(R_in, l_1..l_N, R')`` on those dims and

        df(W) = R_in prod(l) R' + R_in (P - R_in) + R' (O prod(p) - R')    (before clipping)

    -- K enters only through ``min(R, K)``. Ranks are clipped as in ``tucker_dof``.

    ``kernel_size`` and ``pooled_size`` are an int (the same for each of ``dim`` spatial modes,
    as in torch) or ``dim`` ints; e.g. ``kernel_size=3, pooled_size=3, dim=2`` is a 3x3 kernel and
    a 3x3 pooled map (``prod p = 9``). Verified by ``compressed_conv_jacobian_rank``.
    """
    P, R_in, R, K, O = (_positive_int(v, n) for v, n in ((P, "P"), (R_in, "R_in"), (R, "R"), (K, "K"), (num_outputs, "num_outputs")))
    dim = _positive_int(dim, "dim")
    l = _per_mode(kernel_size, dim, "kernel_size")
    p = _per_mode(pooled_size, dim, "pooled_size")
    return tucker_dof((P, *l, O * math.prod(p)), (R_in, *l, min(R, K)))


def compressed_conv_naive(P: int, R_in: int, R: int, K: int, kernel_size, pooled_size, num_outputs: int = 1, dim: int = 2) -> int:
    """Naive count (no biases) of the same model: ``P R_in + R_in R prod(l) + R K + O K prod(p)``.

    It grows linearly in K, while ``compressed_conv_df`` stops growing at K = R.
    Arguments as in ``compressed_conv_df``.
    """
    P, R_in, R, K, O = (_positive_int(v, n) for v, n in ((P, "P"), (R_in, "R_in"), (R, "R"), (K, "K"), (num_outputs, "num_outputs")))
    dim = _positive_int(dim, "dim")
    l = _per_mode(kernel_size, dim, "kernel_size")
    p = _per_mode(pooled_size, dim, "pooled_size")
    return P * R_in + R_in * R * math.prod(l) + R * K + O * K * math.prod(p)


def compressed_conv_weight(U_in: torch.Tensor, core: torch.Tensor, U_out: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """The summarized tensor W of a Tucker-2 conv + pooling + FC, from its factors.

    Shapes: ``U_in`` (P, R_in), ``core`` (R, R_in, l_1..l_N), ``U_out`` (K, R),
    ``B`` (O, K, p_1..p_N) -> W (O, P, l_1..l_N, p_1..p_N), with the kernel
    ``A[k, c, u] = sum_{r, s} U_out[k, r] core[r, s, u] U_in[c, s]`` and
    ``W[o, c, u, t] = sum_k A[k, c, u] B[o, k, t]``.
    """
    N = core.dim() - 2
    if N < 1 or B.dim() != N + 2:
        raise ValueError(f"core must be (R, R_in, l_1..l_N) and B (O, K, p_1..p_N) with the same N; got core {tuple(core.shape)}, B {tuple(B.shape)}")
    A = torch.einsum("kr,rs...,cs->kc...", U_out, core, U_in)
    A_flat = A.reshape(A.shape[0], -1)                   # K x (P prod l)
    B_flat = B.transpose(0, 1).reshape(B.shape[1], -1)   # K x (O prod p)
    W = A_flat.T @ B_flat                                # (P prod l) x (O prod p)
    W = W.reshape(*A.shape[1:], B.shape[0], *B.shape[2:])  # P, l.., O, p..
    return W.movedim(N + 1, 0)


def compressed_conv_jacobian_rank(P: int, R_in: int, R: int, K: int, kernel_size, pooled_size, num_outputs: int = 1,
                                  dim: int = 2, seed: int = 0) -> int:
    """Numerical df of section 3: rank of the Jacobian of ``(U_in, core, U_out, B) -> W`` at a random
    float64 point (see ``compressed_conv_weight``). Should equal ``compressed_conv_df``; keep sizes small.
    """
    dim = _positive_int(dim, "dim")
    l = _per_mode(kernel_size, dim, "kernel_size")
    p = _per_mode(pooled_size, dim, "pooled_size")
    g = torch.Generator().manual_seed(seed)
    kw = dict(dtype=torch.float64, generator=g)
    params = (torch.randn(P, R_in, **kw), torch.randn(R, R_in, *l, **kw), torch.randn(K, R, **kw),
              torch.randn(num_outputs, K, *p, **kw))
    return jacobian_dof(compressed_conv_weight, *params)


# ----------------------------------------------------------------------------- counting a module
def naive_count(module: nn.Module) -> int:
    """The naive parameter count: ``sum(p.numel() for p in module.parameters())`` (biases, BN included)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"naive_count expects an nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters())


def flop_count(module: nn.Module, example_input: torch.Tensor | tuple) -> int:
    """FLOPs of one forward pass of ``module`` on ``example_input`` (a tensor or a tuple of args).

    Measured by ``torch.utils.flop_counter.FlopCounterMode`` under ``torch.no_grad()``, with PyTorch's
    convention: 2 FLOPs per multiply-accumulate of convolutions and matrix products; biases,
    normalization, activations and pooling are not counted. The batch size of ``example_input``
    multiplies the count.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"flop_count expects an nn.Module, got {type(module).__name__}")
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*args)
    return int(counter.get_total_flops())


# ----------------------------------------------------------------------------- analytic FLOPs
def conv_output_size(input_size, kernel_size, stride=1, padding=0, dim: int | None = None) -> tuple[int, ...]:
    """Output size ``m_j = floor((d_j + 2 pad_j - l_j) / s_j) + 1`` per spatial mode (dilation 1)."""
    if dim is None:
        dim = len(input_size) if not isinstance(input_size, int) else 1
    d = _per_mode(input_size, dim, "input_size")
    l = _per_mode(kernel_size, dim, "kernel_size")
    s = _per_mode(stride, dim, "stride")
    pad = (padding,) * dim if isinstance(padding, int) else tuple(int(v) for v in padding)
    if len(pad) != dim or any(v < 0 for v in pad):
        raise ValueError(f"padding must be a non-negative int or {dim} of them, got {padding!r}")
    m = tuple((dj + 2 * pj - lj) // sj + 1 for dj, pj, lj, sj in zip(d, pad, l, s))
    if any(v < 1 for v in m):
        raise ValueError(f"input size {d} is too small for kernel {l} with padding {pad}")
    return m


def conv_flops(in_channels: int, out_channels: int, kernel_size, output_size, groups: int = 1, batch: int = 1) -> int:
    """FLOPs of one convolution: ``2 * batch * C_out * (C_in / groups) * prod(l) * prod(m)``.

    ``kernel_size`` and ``output_size`` are ints or per-mode sequences of the same length.
    """
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
    m = (output_size,) if isinstance(output_size, int) else tuple(output_size)
    l = _per_mode(kernel_size, len(m), "kernel_size")
    return 2 * batch * out_channels * (in_channels // groups) * math.prod(l) * math.prod(m)


def _same_padding(l: tuple[int, ...]) -> tuple[int, ...]:
    return tuple((lj - 1) // 2 for lj in l)


def _layers(design: str, P: int, K: int, R: int, l: tuple[int, ...], s: tuple[int, ...], R_in: int, groups: int):
    """The conv layers of a linear block: (C_in, C_out, kernel, stride, groups) each, 'same' padding."""
    one = (1,) * len(l)
    if design == "dense":
        return [(P, K, l, s, 1)]
    if design in ("bottleneck", "resnext", "inverted_residual"):
        g = {"bottleneck": 1, "resnext": groups, "inverted_residual": R}[design]
        return [(P, R_in, one, one, 1), (R_in, R, l, s, g), (R, K, one, one, 1)]
    if design == "separable":
        layers = [(P, R, one, one, 1)]
        for j in range(len(l)):
            lj = tuple(l[j] if i == j else 1 for i in range(len(l)))
            sj = tuple(s[j] if i == j else 1 for i in range(len(l)))
            layers.append((R, R, lj, sj, R))
        return layers + [(R, K, one, one, 1)]
    if design == "r2plus1d":
        if len(l) != 3:
            raise ValueError(f"design 'r2plus1d' is 3D only (dim=3), got {len(l)} spatial modes")
        spatial, temporal = (1, l[1], l[2]), (l[0], 1, 1)
        return [(P, R, spatial, (1, s[1], s[2]), 1), (R, R, temporal, (s[0], 1, 1), 1), (R, K, one, one, 1)]
    raise ValueError(f"unknown design {design!r}; accepted: {', '.join(DESIGNS)}")


def _check_design_args(design, P, K, R, kernel_size, dim, R_in, groups):
    P, K, R = _positive_int(P, "P"), _positive_int(K, "K"), _positive_int(R, "R")
    dim = _positive_int(dim, "dim")
    l = _per_mode(kernel_size, dim, "kernel_size")
    if design == "dense":
        R = K
    R_in = R if R_in is None else _positive_int(R_in, "R_in")
    if design == "inverted_residual":
        R_in = R
    groups = _positive_int(groups, "groups")
    if design == "resnext" and (R_in % groups or R % groups):
        raise ValueError(f"groups={groups} must divide R_in={R_in} and R={R} for design 'resnext'")
    return P, K, R, l, dim, R_in, groups


def block_naive_count(design: str, P: int, K: int, R: int, kernel_size=3, dim: int = 2, R_in: int | None = None,
                      groups: int = 1, bias: bool = False) -> int:
    """Analytic naive count of a linear block (book section 2, :ref:`sec-decomposition` table), biases optional.

    ``dense`` K P prod(l); ``bottleneck`` P R_in + R_in R prod(l) + R K; ``resnext`` the same with the
    core divided by ``groups``; ``inverted_residual`` (depthwise core, R_in = R) P R + R prod(l) + R K;
    ``separable`` (CP) R (P + sum l + K); ``r2plus1d`` (3D) P R l_h l_w + R^2 l_t + R K.
    ``R_in`` defaults to ``R``. With ``bias=True`` each conv adds its output channels.
    """
    P, K, R, l, dim, R_in, groups = _check_design_args(design, P, K, R, kernel_size, dim, R_in, groups)
    total = 0
    for cin, cout, k, _, g in _layers(design, P, K, R, l, (1,) * dim, R_in, groups):
        total += cout * (cin // g) * math.prod(k) + (cout if bias else 0)
    return total


def block_flops(design: str, P: int, K: int, R: int, input_size, kernel_size=3, stride=1, dim: int | None = None,
                R_in: int | None = None, groups: int = 1, batch: int = 1) -> int:
    """Analytic FLOPs of a linear block with 'same' padding ``(l - 1) // 2`` (torch's convention, see module doc).

    Layers as in ``kr_lib.blocks``: Tucker-2 designs run the first 1x1 at the input resolution and
    the stride in the core conv; ``separable`` applies stride ``s_j`` in the depthwise conv along mode j;
    ``r2plus1d`` applies the spatial strides in the (1, l, l) conv and the temporal one in the (l, 1, 1) conv.
    """
    if dim is None:
        dim = 1 if isinstance(input_size, int) else len(input_size)
    P, K, R, l, dim, R_in, groups = _check_design_args(design, P, K, R, kernel_size, dim, R_in, groups)
    size = _per_mode(input_size, dim, "input_size")
    s = _per_mode(stride, dim, "stride")
    total = 0
    for cin, cout, k, st, g in _layers(design, P, K, R, l, s, R_in, groups):
        size = conv_output_size(size, k, st, _same_padding(k), dim)
        total += conv_flops(cin, cout, k, size, groups=g, batch=batch)
    return total
