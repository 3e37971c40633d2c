"""Teacher and student CNNs of the simulations: one (possibly compressed) convolution, an activation,
average pooling and a linear head, as plain ``torch.nn`` modules (book sections 1, 2, 3, :ref:`sec-regression` and :ref:`sec-decomposition` and :ref:`sec-df`).

Families of the convolution's kernel A (K x P x l_1..l_N):

- ``"tucker"``: Tucker-2 with ranks R_in (input side) and R (output side), as layers
  1x1 P->R_in, l-conv R_in->R, 1x1 R->K (a ResNet bottleneck);
- ``"cp"``: CP of rank R, as layers 1x1 P->R, one depthwise conv per spatial mode, 1x1 R->K;
- ``"dense"``: a plain l-conv P->K, no rank constraint at all (in particular none on the output side).

The networks carry no biases (the teacher has none, so neither do the students).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .geometry import CNNGeometry

FAMILIES = ("tucker", "cp", "dense")
ACTIVATIONS = {"identity": nn.Identity, "relu": nn.ReLU}


def check_activation(activation: str) -> str:
    """``activation`` if it is one of ACTIVATIONS, else a ValueError listing them."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}")
    return activation


def check_family(family: str) -> str:
    """``family`` if it is one of FAMILIES, else a ValueError listing them."""
    if family not in FAMILIES:
        raise ValueError(f"unknown kernel family {family!r}; use one of {list(FAMILIES)}")
    return family


def check_ranks(geometry: CNNGeometry, family: str, K: int, R_in: int | None, R: int | None) -> None:
    """Raise ValueError when K, R_in, R do not fit the sizes of ``geometry`` (before anything is built).

    Tucker-2 needs 1 <= R_in <= P, 1 <= R <= R_in prod(l) and R_in <= R prod(l) (the core's unfoldings),
    and R <= prod(p) so that the summarized tensor can carry rank R on its pooled mode. CP needs K >= R
    (so that W = sum_r a_r o v_r o w_r keeps rank R) and a df below the ambient dimension.
    """
    check_family(family)
    g = geometry
    if not isinstance(K, int) or isinstance(K, bool) or K < 1:
        raise ValueError(f"K (output channels) must be a positive int, got {K!r}")
    if family == "dense":
        return
    if not isinstance(R, int) or isinstance(R, bool) or R < 1:
        raise ValueError(f"R must be a positive int for the {family!r} family, got {R!r}")
    if R > g.pooled_numel:
        raise ValueError(
            f"R={R} exceeds prod(p)={g.pooled_numel}, the size of the summarized tensor's pooled mode "
            f"(pooled sizes {g.pooled_size}); use R <= {g.pooled_numel} or a larger input / smaller pool"
        )
    if family == "tucker":
        if not isinstance(R_in, int) or isinstance(R_in, bool) or not 1 <= R_in <= g.in_channels:
            raise ValueError(f"R_in must be an int in [1, P={g.in_channels}], got {R_in!r}")
        if R > R_in * g.kernel_numel or R_in > R * g.kernel_numel:
            raise ValueError(
                f"Tucker-2 ranks R_in={R_in}, R={R} are not attainable with prod(l)={g.kernel_numel}: "
                f"need R <= R_in*prod(l) and R_in <= R*prod(l)"
            )
    else:  # cp
        if K < R:
            raise ValueError(f"CP students need K >= R (got K={K}, R={R}); below it W is not a rank-R CP tensor")
        dims = g.summarized_modes
        if R * (sum(dims) - len(dims) + 1) >= g.in_channels * g.kernel_numel * g.pooled_numel:
            raise ValueError(f"CP rank R={R} is too large for the summarized tensor of modes {dims}")


def _conv(n_modes: int):
    return nn.Conv2d if n_modes == 2 else nn.Conv3d


def conv_stack(geometry: CNNGeometry, family: str, K: int, *, R_in: int | None = None,
               R: int | None = None) -> nn.Sequential:
    """The convolution of kernel family ``family`` as layers: input (n, P, d..) -> output (n, K, m..)."""
    g = geometry
    check_ranks(g, family, K, R_in, R)
    Conv = _conv(g.n_modes)
    ones = (1,) * g.n_modes
    if family == "dense":
        return nn.Sequential(Conv(g.in_channels, K, g.kernel_size, stride=g.stride, bias=False))
    if family == "tucker":
        return nn.Sequential(
            Conv(g.in_channels, R_in, 1, bias=False),
            Conv(R_in, R, g.kernel_size, stride=g.stride, bias=False),
            Conv(R, K, 1, bias=False),
        )
    layers = [Conv(g.in_channels, R, 1, bias=False)]
    for j in range(g.n_modes):  # depthwise conv along mode j only: the CP factor of mode j
        k = tuple(g.kernel_size[j] if i == j else 1 for i in range(g.n_modes))
        s = tuple(g.stride[j] if i == j else 1 for i in range(g.n_modes))
        layers.append(Conv(R, R, k, stride=s, groups=R, bias=False))
    layers.append(Conv(R, K, ones, bias=False))
    return nn.Sequential(*layers)


def build_cnn(geometry: CNNGeometry, family: str, K: int, *, R_in: int | None = None, R: int | None = None,
              activation: str = "identity") -> nn.Sequential:
    """y = head(flatten(pool(act(conv(X))))): input (n, P, d..) -> output (n, O).

    Submodules: ``features`` (the conv stack), ``act``, ``pool``, ``flatten``, ``head`` (Linear K*prod(p) -> O).
    """
    g = geometry
    check_activation(activation)
    Pool = nn.AvgPool2d if g.n_modes == 2 else nn.AvgPool3d
    return nn.Sequential(OrderedDict(
        features=conv_stack(g, family, K, R_in=R_in, R=R),
        act=ACTIVATIONS[activation](),
        pool=Pool(g.pool, stride=g.pool),
        flatten=nn.Flatten(),
        head=nn.Linear(K * g.pooled_numel, g.out_features, bias=False),
    ))


def _weight(weights: dict[str, torch.Tensor], i: int) -> torch.Tensor:
    try:
        return weights[f"features.{i}.weight"]
    except KeyError:
        raise KeyError(f"weights lack 'features.{i}.weight'; pass dict(model.named_parameters()) of a build_cnn "
                       f"model (or a stack of them)") from None


def _matrix(w: torch.Tensor, n_modes: int) -> torch.Tensor:
    """A 1x1 conv's weight (..., out, in, 1..1) as the matrix (..., out, in)."""
    return w.reshape(*w.shape[:-n_modes])


def composite_kernel(family: str, weights: dict[str, torch.Tensor], geometry: CNNGeometry) -> torch.Tensor:
    """The kernel A (..., K, P, l_1..l_N) of a ``build_cnn`` network's conv stack, from its weights.

    Tucker-2: A[k, c, u] = sum_{r, s} U_out[k, r] G[r, s, u] U_in[s, c]; CP: A[k, c, u] =
    sum_r U_out[k, r] U_in[r, c] prod_j v_j[r, u_j]; dense: the conv's own weight.

    The fast path of ``kr_lib.composite.compose_kernels`` (the composite kernel of any chain of convs,
    book section 1, :ref:`sec-regression`) for these three stacks: their 1x1 and per-mode convs make it one einsum, batched
    over a stack of networks, where ``compose_kernels`` folds one network conv by conv. A test checks that
    the two agree.

    Args:
        weights: ``dict(model.named_parameters())``, or the same with a leading stack dimension on every
            tensor (repetitions, as from ``torch.func.stack_module_state``), which the result keeps.
    """
    check_family(family)
    g, N = geometry, geometry.n_modes
    if family == "dense":
        return _weight(weights, 0)
    U_in = _matrix(_weight(weights, 0), N)
    if family == "tucker":
        G = _weight(weights, 1)
        U_out = _matrix(_weight(weights, 2), N)
        A = torch.einsum("...kr,...rsL,...sc->...kcL", U_out, G.flatten(-N), U_in)
        return A.reshape(*A.shape[:-1], *g.kernel_size)
    U_out = _matrix(_weight(weights, N + 1), N)
    modes = [_weight(weights, 1 + j).reshape(*U_in.shape[:-1], g.kernel_size[j]) for j in range(N)]
    letters = "uvw"[:N]
    spec = ",".join(["...kr", "...rc", *(f"...r{x}" for x in letters)]) + f"->...kc{letters}"
    return torch.einsum(spec, U_out, U_in, *modes)


def summarized_tensor(family: str, weights: dict[str, torch.Tensor], geometry: CNNGeometry) -> torch.Tensor:
    """W[o, c, u, t] = sum_k A[k, c, u] B[o, k, t], shape (..., O, P, l_1..l_N, p_1..p_N) (book section 1, :ref:`sec-regression`).

    Meaningful for the identity activation, where the network computes y_o = <Z(X), W_o>. ``weights`` as in
    ``composite_kernel`` (leading stack dimensions are kept).
    """
    g = geometry
    A = composite_kernel(family, weights, g)
    lead, K = A.shape[:-g.n_modes - 2], A.shape[-g.n_modes - 2]
    B = weights["head.weight"].reshape(*lead, g.out_features, K, g.pooled_numel)
    W = torch.einsum("...kd,...okt->...odt", A.reshape(*lead, K, -1), B)
    return W.reshape(*lead, g.out_features, *g.summarized_shape)


def summarized_ranks(geometry: CNNGeometry, family: str, K: int, R_in: int | None = None,
                     R: int | None = None) -> tuple[int, ...]:
    """Tucker ranks of W on the modes (P, l_1..l_N, prod p) for a generic network of the family.

    Tucker-2: (R_in, l.., min(R, K)); dense (a Tucker-2 with R_in = P, R = K): (P, l.., K); both clipped
    to the attainable ranks (``kr_lib.complexity.tucker_ranks_clipped``). Only min(R, K) directions of the
    K output channels reach the head (book section 3, :ref:`sec-df`). The CP family has a CP rank instead.
    """
    from kr_lib.complexity import tucker_ranks_clipped

    g = geometry
    check_ranks(g, family, K, R_in, R)
    if family == "cp":
        raise ValueError("the CP family has a CP rank, not Tucker ranks; use degrees_of_freedom")
    r_in, r_out = (g.in_channels, K) if family == "dense" else (R_in, min(R, K))
    return tucker_ranks_clipped(g.summarized_modes, (r_in, *g.kernel_size, r_out))


def degrees_of_freedom(geometry: CNNGeometry, family: str, K: int, R_in: int | None = None,
                       R: int | None = None) -> int:
    """df of the set of summarized tensors W (one output) the family reaches (book section 3, :ref:`sec-df`).

    Tucker-2: ``compressed_conv_df`` (no K in it once K >= R); dense: the same with R_in = P, R = K
    (a plain conv is a Tucker-2 without compression; grows with K until K = prod p); CP: ``cp_dof`` of
    rank R on (P, l_1..l_N, prod p).
    """
    from kr_lib.complexity import compressed_conv_df, cp_dof

    g = geometry
    if g.out_features != 1:
        raise ValueError("degrees_of_freedom is defined here for one output (O = 1)")
    check_ranks(g, family, K, R_in, R)
    if family == "cp":
        return int(cp_dof(g.summarized_modes, R))
    if family == "dense":
        R_in, R = g.in_channels, K
    return int(compressed_conv_df(g.in_channels, R_in, R, K, g.kernel_size, g.pooled_size, dim=g.n_modes))


def network_output(family: str, activation: str, weights: dict[str, torch.Tensor], geometry: CNNGeometry,
                   X_patches: torch.Tensor, pool_matrix: torch.Tensor) -> torch.Tensor:
    """A ``build_cnn`` network's output computed from its weights on unfolded inputs.

    The conv is the composite kernel A (K, P prod(l)) times the patches, then the activation, the pooling
    matrix and the head: the numbers the module computes, as a few batched matrix products, so a stack
    of networks (one per repetition) runs as one.

    Args:
        weights: as in ``composite_kernel``, with leading stack dimensions (...) or none.
        X_patches: ``patches(X, geometry)``, shape (..., n, P prod(l), prod(m)), broadcast against the stack.
            Any strides; fastest when its memory is laid out (..., P prod(l), n, prod(m)) (a transposed view, as
            ``run_sample_complexity`` keeps the patches): the conv is then one matrix product per network with
            no copy, instead of n small ones.
        pool_matrix: ``pooling_matrix(geometry)``, shape (prod(m), prod(p)).
    Returns:
        shape (..., n, O).
    """
    check_activation(activation)
    g = geometry
    A = composite_kernel(family, weights, g)
    lead, K = A.shape[:-g.n_modes - 2], A.shape[-g.n_modes - 2]
    X = X_patches.transpose(-3, -2)  # (..., P prod l, n, prod m)
    n, M = X.shape[-2:]
    F = A.reshape(*lead, K, -1) @ X.reshape(*X.shape[:-2], n * M)  # conv: (..., K, n prod m)
    if activation == "relu":
        F = torch.relu(F)
    H = F.reshape(*F.shape[:-1], n, M) @ pool_matrix  # (..., K, n, prod p)
    B = weights["head.weight"].reshape(*lead, g.out_features, K, g.pooled_numel)
    return torch.einsum("...knt,...okt->...no", H, B)
