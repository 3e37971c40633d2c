"""Decompose a trained convolution into the equivalent block (book section 2, :ref:`sec-decomposition`), and back.

``decompose_conv(conv, method, rank)`` factors the kernel ``A`` (K x P x l_1..l_N) of an
``nn.Conv1d/2d/3d`` with TensorLy on its PyTorch backend (so it runs where the weights are: CUDA in,
CUDA out) and returns a ``DecomposedConv``: a ``nn.Sequential`` of plain ``nn.Conv`` layers whose
forward equals a convolution with the reconstructed kernel, with the original stride, padding and bias
(the bias sits on the last 1x1 conv).

The three methods, as kernels and as layers:

.. list-table::
   :header-rows: 1

   * - method
     - kernel
     - layers
   * - ``tucker2``
     - ``core x_K U_K x_P U_P``, ranks (R, R_in)
     - 1x1 P->R_in, l-conv R_in->R, 1x1 R->K
   * - ``cp``
     - ``sum_r U_K[:,r] o U_P[:,r] o U_1[:,r] ... o U_N[:,r]``
     - 1x1 P->R, depthwise 1D conv per mode, 1x1 R->K
   * - ``tucker``
     - ``core x_K U_K x_P U_P x_1 U_1 ... x_N U_N`` (full Tucker)
     - 1x1 P->R_in, per mode j a grouped 1D conv that expands each channel into r_j (``U_j``), 1x1 core conv R_in prod(r) -> R, 1x1 R->K

The rank is an int, a tuple (one per mode of the kernel, in its order K, P, l_1..l_N) or a float in
(0, 1] (a fraction of the full rank, rounded, at least 1):

* ``tucker2``: an int r gives (R, R_in) = (r, r); a tuple is (R, R_in); a fraction f gives
  (round(f K), round(f P)). The largest allowed are R <= K, R_in <= P, R <= R_in prod(l),
  R_in <= R prod(l).
* ``tucker``: an int r gives channel ranks (r, r) and full spatial ranks; a tuple gives all N + 2
  ranks; a fraction scales every mode.
* ``cp``: an int R (or a 1-tuple); a fraction of the CP rank bound ``min_j prod_{i != j} n_j`` (modes of
  size 1 dropped), which is also the largest rank allowed.

The relative reconstruction error ``||A - A_hat||_F / ||A||_F`` is the returned module's
``.relative_error``. TensorLy's global backend is never changed for the caller (a thread-local
``tl.backend_context``); CP's ALS runs on TensorLy's "einsum" tensor-algebra backend (see
``decompose_conv``), so its memory stays of the order of the kernel. The SVDs are TensorLy's ``svd="truncated_svd"`` (an economy SVD of each
unfolding, memory of the order of the kernel) or ``"randomized_svd"`` (for very large kernels).

``reconstructed_conv(block)`` is the other direction (the "faster path"): one conv with the composite
kernel of a linear chain of convs (a ``DecomposedConv`` or a ``kr_lib.blocks`` block with ``linear=True``),
from ``kr_lib.composite`` (``compose_kernels`` is that module's, re-exported here).
"""
from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable, Sequence

import tensorly as tl
import torch
from tensorly.decomposition import parafac, partial_tucker, tucker
from torch import nn

from .composite import ConvGeometry, chain_geometry, compose_kernels

__all__ = ["DecomposedConv", "decompose_conv", "rank_sweep", "reconstructed_conv", "compose_kernels", "resolve_ranks",
           "cp_rank_bound", "METHODS"]

METHODS = ("cp", "tucker2", "tucker")
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class DecomposedConv(nn.Sequential):
    """A decomposed convolution: plain convs in sequence, ending in the 1x1 projection R -> K.

    Attributes: ``method``, ``ranks`` (per kernel mode, as used), ``K``, ``R``, ``R_in``, ``kr_ratio``
    (K / R), ``relative_error`` (of the kernel), ``in_channels`` (P), ``kernel_size``, ``stride``,
    ``padding``, ``projection`` (the last conv).
    """

    def __init__(self, convs: Sequence[nn.Module], *, method: str, ranks: tuple[int, ...], relative_error: float,
                 original: nn.modules.conv._ConvNd):
        super().__init__(*convs)
        self.method = method
        self.ranks = tuple(ranks)
        self.relative_error = float(relative_error)
        self.K, self.in_channels = original.out_channels, original.in_channels
        self.kernel_size, self.stride, self.padding = tuple(original.kernel_size), tuple(original.stride), original.padding
        self.R = self.ranks[0]
        self.R_in = self.ranks[1] if method != "cp" else self.ranks[0]
        self.kr_ratio = self.K / self.R

    @property
    def projection(self) -> nn.modules.conv._ConvNd:
        """The last conv, the 1x1 projection R -> K (its weight is the K x R output factor)."""
        return self[-1]

    def convs(self) -> list[nn.modules.conv._ConvNd]:
        return list(self)

    def extra_repr(self) -> str:
        return f"method={self.method!r}, ranks={self.ranks}, K/R={self.kr_ratio:g}, relative_error={self.relative_error:.3g}"


# ----------------------------------------------------------------------------- ranks
def cp_rank_bound(shape: Sequence[int]) -> int:
    """Upper bound of the CP rank of a tensor of ``shape``: ``min_j prod_{i != j} n_i`` over modes of size > 1."""
    n = [int(d) for d in shape if int(d) > 1]
    if not n:
        return 1
    if len(n) == 1:
        return 1
    return min(math.prod(n[:j] + n[j + 1:]) for j in range(len(n)))


def _tucker_limits(shape, ranks):
    return [min(n, math.prod(ranks[:j] + ranks[j + 1:])) for j, n in enumerate(shape)]


def resolve_ranks(shape: Sequence[int], method: str, rank) -> tuple[int, ...]:
    """The ranks ``decompose_conv`` uses for a kernel of ``shape`` (K, P, l_1..l_N); see the module doc.

    Raises ValueError naming the largest allowed rank when ``rank`` is not attainable.
    """
    shape = tuple(int(s) for s in shape)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; accepted: {', '.join(METHODS)}")
    K, P, *l = shape

    def as_int(r):  # numpy / torch integers count as ints
        if isinstance(r, (bool, float, int)):
            return r
        try:
            return operator.index(r)
        except TypeError:
            return r

    rank = tuple(as_int(r) for r in rank) if isinstance(rank, (tuple, list)) else as_int(rank)
    is_fraction = isinstance(rank, float)
    if is_fraction and not 0.0 < rank <= 1.0:
        raise ValueError(f"a fractional rank must lie in (0, 1], got {rank}")
    if isinstance(rank, bool) or not isinstance(rank, (int, float, tuple, list)):
        raise TypeError(f"rank must be an int, a tuple of ints or a float in (0, 1], got {rank!r}")

    def frac(n):
        return max(1, round(rank * n))

    if method == "cp":
        bound = cp_rank_bound(shape)
        if is_fraction:
            return (frac(bound),)
        R = rank[0] if isinstance(rank, (tuple, list)) and len(rank) == 1 else rank
        if isinstance(R, bool) or not isinstance(R, int) or R < 1:
            raise ValueError(f"cp rank must be a positive int (or a 1-tuple, or a fraction), got {rank!r}")
        if R > bound:
            raise ValueError(f"cp rank {R} exceeds the CP rank bound of a {shape} kernel; the largest allowed is {bound}")
        return (R,)

    n_modes = 2 if method == "tucker2" else len(shape)
    if is_fraction:
        ranks = [frac(n) for n in shape[:n_modes]]
        full = ranks + l if method == "tucker2" else ranks
        # a fraction is relative: clip to what is attainable
        changed = True
        while changed:
            lim = _tucker_limits(shape, full)
            changed = any(r > m for r, m in zip(full, lim))
            full = [min(r, m) for r, m in zip(full, lim)]
        return tuple(full[:n_modes])
    if isinstance(rank, int):
        ranks = [rank, rank] + ([] if method == "tucker2" else l)
    else:
        ranks = list(rank)
        if len(ranks) != n_modes:
            raise ValueError(f"{method} needs {n_modes} ranks (one per mode {'K, P' if n_modes == 2 else 'K, P, l_1..l_N'}), got {tuple(rank)}")
    if any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ranks):
        raise ValueError(f"ranks must be positive ints, got {tuple(ranks)}")
    full = ranks + (l if method == "tucker2" else [])
    lim = _tucker_limits(shape, full)
    for j, (r, m) in enumerate(zip(full[:n_modes], lim[:n_modes])):
        if r > m:
            name = ("R (on K)", "R_in (on P)")[j] if j < 2 else f"r_{j - 1} (spatial mode {j - 1})"
            raise ValueError(f"{method} rank {name} = {r} is not attainable for a {shape} kernel with ranks "
                             f"{tuple(full[:n_modes])}; the largest allowed is {m}")
    return tuple(ranks)


# ----------------------------------------------------------------------------- decomposition
def _padding(conv: nn.modules.conv._ConvNd) -> tuple[int, ...]:
    N = conv.weight.dim() - 2
    if conv.padding == "valid":
        return (0,) * N
    if conv.padding == "same":
        if any(s != 1 for s in conv.stride) or any(k % 2 == 0 for k in conv.kernel_size):
            raise ValueError("padding='same' with an even kernel or a stride is not supported; use integer padding")
        return tuple((k - 1) // 2 for k in conv.kernel_size)
    return tuple(conv.padding)


def _check_conv(conv) -> None:
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        raise TypeError(f"decompose_conv expects an nn.Conv1d/Conv2d/Conv3d, got {type(conv).__name__}")
    if conv.groups != 1:
        raise ValueError(f"decompose_conv needs groups=1 (a full kernel), got groups={conv.groups}")
    if any(d != 1 for d in conv.dilation):
        raise ValueError(f"decompose_conv needs dilation=1, got dilation={conv.dilation}")
    if conv.padding_mode != "zeros":
        raise ValueError(f"decompose_conv needs padding_mode='zeros', got {conv.padding_mode!r}")


def _new_conv(N, cin, cout, kernel, stride, padding, groups, weight, bias=None):
    layer = _CONV[N](cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=bias is not None,
                     device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight.reshape(layer.weight.shape))
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _along(j: int, N: int, value: int, other: int = 1) -> tuple[int, ...]:
    return tuple(value if i == j else other for i in range(N))


def decompose_conv(conv: nn.modules.conv._ConvNd, method: str, rank, *, n_iter_max: int = 100, tol: float | None = None,
                   svd: str = "truncated_svd", random_state: int = 0) -> DecomposedConv:
    """Replace ``conv`` by its ``method`` decomposition at ``rank`` (see the module doc for both).

    Returns a ``DecomposedConv`` on the conv's device and dtype; its ``.relative_error`` is
    ``||A - A_hat||_F / ||A||_F``. ``n_iter_max`` caps TensorLy's ALS / HOOI iterations and ``tol`` is
    their stopping tolerance (None: TensorLy's default; 0 runs exactly ``n_iter_max``); ``svd`` is
    TensorLy's SVD ("truncated_svd" or "randomized_svd"); ``random_state`` seeds it.
    """
    _check_conv(conv)
    if svd not in ("truncated_svd", "randomized_svd", "symeig_svd"):
        raise ValueError(f"svd must be 'truncated_svd', 'randomized_svd' or 'symeig_svd', got {svd!r}")
    W = conv.weight.detach()
    K, P, *l = W.shape
    N = len(l)
    ranks = resolve_ranks(W.shape, method, rank)
    stride, padding = tuple(conv.stride), _padding(conv)
    bias = None if conv.bias is None else conv.bias.detach()
    one = (1,) * N
    extra = {} if tol is None else {"tol": tol}
    # CP's ALS multiplies an unfolding by the Khatri-Rao product of the other factors (MTTKRP); TensorLy's
    # default builds that product, R / n_j times the kernel (2.7 GiB for a 512x512x3x3x3 Conv3d at R = 128).
    # Its "einsum" tenalg backend contracts it in one einsum, which torch orders with opt_einsum so that
    # no intermediate exceeds the kernel by much (135 MiB there, and 7x faster). Below about 2^20 entries
    # of that product the einsum's planning costs more than it saves (measured), and Tucker keeps "core".
    khatri_rao_entries = ranks[0] * W.numel() // min(W.shape) if method == "cp" else 0
    tenalg = "einsum" if khatri_rao_entries > 2**20 and torch.backends.opt_einsum.is_available() else "core"
    with torch.no_grad(), tl.backend_context("pytorch", local_threadsafe=True), \
            tl.tenalg.backend_context(tenalg, local_threadsafe=True), warnings.catch_warnings():
        # TensorLy's SVD init warns when a rank exceeds a mode's size and then fills in random columns: expected
        warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs")
        if method == "tucker2":
            R, R_in = ranks
            (core, (U_K, U_P)), _ = partial_tucker(W, rank=[R, R_in], modes=[0, 1], init="svd", svd=svd,
                                                    n_iter_max=n_iter_max, random_state=random_state, **extra)
            A_hat = _tucker2_tensor(core, U_K, U_P)
            layers = [
                _new_conv(N, P, R_in, one, one, 0, 1, U_P.T),
                _new_conv(N, R_in, R, tuple(l), stride, padding, 1, core),
                _new_conv(N, R, K, one, one, 0, 1, U_K, bias),
            ]
        elif method == "cp":
            (R,) = ranks
            if all(n == 1 for n in l):
                # A pointwise conv is a K x P matrix, whose best rank-R CP is its truncated SVD
                # (Eckart-Young): exact, and far cheaper than ALS (36 of ResNet-50's 53 convs are 1x1).
                U, S, Vh = torch.linalg.svd(W.reshape(K, P), full_matrices=False)
                U_K, U_P, spatial = U[:, :R] * S[:R], Vh[:R].T, [W.new_ones(1, R)] * N
            else:
                weights, factors = parafac(W, rank=R, init="svd", svd=svd, n_iter_max=n_iter_max,
                                           random_state=random_state, normalize_factors=False, **extra)
                U_K, U_P, spatial = factors[0] * weights, factors[1], factors[2:]
            A_hat = tl.cp_to_tensor((None, [U_K, U_P, *spatial]))
            layers = [_new_conv(N, P, R, one, one, 0, 1, U_P.T)]
            for j, U_j in enumerate(spatial):
                layers.append(_new_conv(N, R, R, _along(j, N, l[j]), _along(j, N, stride[j]), _along(j, N, padding[j], 0),
                                        R, U_j.T))
            layers.append(_new_conv(N, R, K, one, one, 0, 1, U_K, bias))
        else:  # full Tucker
            R, R_in, *r = ranks
            core, factors = tucker(W, rank=list(ranks), init="svd", svd=svd, n_iter_max=n_iter_max,
                                   random_state=random_state, **extra)
            U_K, U_P, spatial = factors[0], factors[1], factors[2:]
            A_hat = tl.tucker_to_tensor((core, factors))
            layers = [_new_conv(N, P, R_in, one, one, 0, 1, U_P.T)]
            channels = R_in
            for j, U_j in enumerate(spatial):
                # each channel c becomes r_j channels (c, a) = (U_j[:, a] convolved along mode j)
                weight = U_j.T.repeat(channels, 1)
                layers.append(_new_conv(N, channels, channels * r[j], _along(j, N, l[j]), _along(j, N, stride[j]),
                                        _along(j, N, padding[j], 0), channels, weight))
                channels *= r[j]
            layers.append(_new_conv(N, channels, R, one, one, 0, 1, core.reshape(R, channels)))
            layers.append(_new_conv(N, R, K, one, one, 0, 1, U_K, bias))
        error = (torch.linalg.vector_norm(W - A_hat) / torch.linalg.vector_norm(W)).item()
    return DecomposedConv(layers, method=method, ranks=ranks, relative_error=error, original=conv)


def rank_sweep(conv: nn.modules.conv._ConvNd, ranks: Sequence, methods: Sequence[str] = ("tucker2", "cp"),
               evaluate: Callable[[DecomposedConv], dict] | None = None, **kwargs) -> list[dict]:
    """Decompose ``conv`` at each rank by each method: one record per (method, rank).

    Record: ``method``, ``rank`` (as asked), ``ranks`` (as used), ``R``, ``K``, ``kr_ratio``,
    ``relative_error``, ``parameters`` (of the block) and ``original_parameters`` (of ``conv``), plus
    whatever ``evaluate(block)`` returns (e.g. the test accuracy of the network with the block in place).
    A rank a method cannot take for this kernel (``resolve_ranks`` raises) is skipped. ``kwargs`` go to
    ``decompose_conv`` (``n_iter_max``, ``tol``, ``svd``, ``random_state``).
    """
    _check_conv(conv)
    rows = []
    original = sum(p.numel() for p in conv.parameters())
    for method in methods:
        for rank in ranks:
            try:
                resolve_ranks(conv.weight.shape, method, rank)
            except ValueError:
                continue
            block = decompose_conv(conv, method, rank, **kwargs)
            row = {"method": method, "rank": rank, "ranks": block.ranks, "R": block.R, "K": block.K,
                   "kr_ratio": block.kr_ratio, "relative_error": block.relative_error,
                   "parameters": sum(p.numel() for p in block.parameters()), "original_parameters": original}
            if evaluate is not None:
                row.update(evaluate(block))
            rows.append(row)
    return rows


def _tucker2_tensor(core: torch.Tensor, U_K: torch.Tensor, U_P: torch.Tensor) -> torch.Tensor:
    return torch.einsum("rs...,kr,cs->kc...", core, U_K, U_P)


# ----------------------------------------------------------------------------- composition
def reconstructed_conv(block: nn.Module) -> nn.modules.conv._ConvNd:
    """One convolution equal to a linear chain of convs: a ``DecomposedConv``, a linear ``kr_lib.blocks``
    block (``linear=True``) or an ``nn.Sequential`` of convs.

    Kernel by ``compose_kernels``, stride (the product) and padding (``sum_i p_i prod_{i' < i} s_{i'}``) by
    ``kr_lib.composite.chain_geometry``; bias from the last conv (earlier convs must have no bias). The
    result is exact when, along each mode, the convs before the one that pads are pointwise and unstrided
    there -- true of every block this library builds; otherwise a ValueError says which layer breaks it.
    """
    if getattr(block, "linear", True) is False:
        raise ValueError("reconstructed_conv needs a linear block (linear=True): BatchNorm, ReLU and the residual are not a conv")
    convs = block.convs() if hasattr(block, "convs") else list(block)
    if not convs or not all(isinstance(c, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for c in convs):
        raise TypeError(f"reconstructed_conv needs a chain of nn.Conv layers, got {[type(c).__name__ for c in convs]}")
    N = convs[0].weight.dim() - 2
    pads = [_padding(c) for c in convs]
    for i, c in enumerate(convs):
        if c.bias is not None and i < len(convs) - 1:
            raise ValueError(f"layer {i} has a bias; only the last conv of the chain may have one")
        if any(d != 1 for d in c.dilation):
            raise ValueError(f"layer {i} has dilation {c.dilation}; only dilation 1 is supported")
        for j in range(N):
            if pads[i][j] or c.kernel_size[j] > 1:
                for i2 in range(i):
                    if convs[i2].kernel_size[j] > 1 or convs[i2].stride[j] > 1 or pads[i2][j]:
                        raise ValueError(f"layer {i} pads or spans spatial mode {j} after layer {i2} did; the "
                                         "composite conv would differ at the borders")
    A = compose_kernels([c.weight for c in convs], [c.stride for c in convs], [c.groups for c in convs])
    geometry = chain_geometry(ConvGeometry(tuple(c.kernel_size), tuple(c.stride), p, p) for c, p in zip(convs, pads))
    last = convs[-1]
    return _new_conv(N, A.shape[1], A.shape[0], tuple(A.shape[2:]), geometry.stride, geometry.pad_left, 1, A.detach(),
                     None if last.bias is None else last.bias.detach())
