"""Degrees of freedom against the numerical rank of Jacobians; counts against modules."""
import math

import pytest
import torch
from torch import nn

from kr_lib.complexity import (
    block_flops,
    block_naive_count,
    compressed_conv_df,
    compressed_conv_jacobian_rank,
    compressed_conv_naive,
    compressed_conv_weight,
    conv_flops,
    conv_output_size,
    cp_dof,
    flop_count,
    jacobian_dof,
    naive_count,
    tucker_dof,
    tucker_ranks_clipped,
)


def _tucker(core, *factors):
    out = core
    for j, U in enumerate(factors):
        out = torch.movedim(torch.tensordot(U, out, dims=([1], [j])), 0, j)
    return out


def _cp(*factors):
    letters = "abcdefgh"[: len(factors)]
    return torch.einsum(",".join(f"{c}r" for c in letters) + "->" + letters, *factors)


def _tucker_numeric(dims, ranks, seed=0):
    g = torch.Generator().manual_seed(seed)
    core = torch.randn(*ranks, dtype=torch.float64, generator=g)
    factors = [torch.randn(n, r, dtype=torch.float64, generator=g) for n, r in zip(dims, ranks)]
    return jacobian_dof(_tucker, core, *factors)


def _cp_numeric(dims, rank, seed=0):
    g = torch.Generator().manual_seed(seed)
    factors = [torch.randn(n, rank, dtype=torch.float64, generator=g) for n in dims]
    return jacobian_dof(_cp, *factors)


# ---------------------------------------------------------------- book section 3, sec-df, worked example
def test_worked_example_matches_theory_and_jacobian_rank():
    Ks = (1, 2, 4, 8, 16)
    ranks = [compressed_conv_jacobian_rank(6, 3, 2, K, kernel_size=3, pooled_size=3) for K in Ks]
    formula = [compressed_conv_df(6, 3, 2, K, kernel_size=3, pooled_size=3) for K in Ks]
    naive = [compressed_conv_naive(6, 3, 2, K, kernel_size=3, pooled_size=3) for K in Ks]
    assert ranks == formula
    # the numbers stated in the book (section 3, sec-df) must be the computed ones
    assert ranks == [44, 77, 77, 77, 77]
    assert naive == [83, 94, 116, 160, 248]


@pytest.mark.parametrize(
    "P,R_in,R,K,l,p,O,dim",
    [
        (5, 2, 3, 2, 3, 2, 2, 2),      # several outputs, K < R
        (4, 2, 2, 5, (3, 1), (2, 3), 3, 2),
        (4, 4, 3, 6, 1, 2, 1, 2),      # 1x1 kernel: spatial modes trivial
        (3, 5, 2, 3, 1, 1, 1, 2),      # R_in > P is clipped
        (6, 1, 4, 4, 1, 3, 1, 2),      # R > R_in prod(l): output rank clipped
        (3, 2, 2, 3, (2, 2, 2), 2, 1, 3),  # 3D
        (2, 2, 3, 4, 2, 1, 2, 1),      # global pooling, one spatial mode
    ],
)
def test_compressed_conv_df_is_jacobian_rank(P, R_in, R, K, l, p, O, dim):
    assert compressed_conv_df(P, R_in, R, K, l, p, O, dim) == compressed_conv_jacobian_rank(P, R_in, R, K, l, p, O, dim)


def test_compressed_conv_df_has_no_K_beyond_R():
    dfs = {compressed_conv_df(16, 8, 4, K, 3, 4) for K in (4, 8, 64, 1024)}
    assert len(dfs) == 1
    naive = [compressed_conv_naive(16, 8, 4, K, 3, 4) for K in (4, 8, 64)]
    assert naive[0] < naive[1] < naive[2]


def test_compressed_conv_weight_is_the_network():
    """W from the factors equals conv -> avg pool -> FC applied to the input, through <Z(X), W>."""
    torch.manual_seed(0)
    P, R_in, R, K, O = 3, 2, 2, 4, 2
    kw = dict(dtype=torch.float64)
    U_in, core, U_out = torch.randn(P, R_in, **kw), torch.randn(R, R_in, 3, 3, **kw), torch.randn(K, R, **kw)
    B = torch.randn(O, K, 2, 2, **kw)
    X = torch.randn(1, P, 8, 8, **kw)
    A = torch.einsum("kr,rs...,cs->kc...", U_out, core, U_in)
    H = nn.functional.avg_pool2d(nn.functional.conv2d(X, A), 3)  # 6x6 -> 2x2
    y = torch.einsum("okt,kt->o", B.flatten(2), H[0].flatten(1))
    W = compressed_conv_weight(U_in, core, U_out, B)
    assert W.shape == (O, P, 3, 3, 2, 2)
    patches = X.unfold(2, 3, 1).unfold(3, 3, 1)[0]            # P, 6, 6, 3, 3 (i, u)
    Z = patches.reshape(P, 2, 3, 2, 3, 3, 3).mean(dim=(2, 4))  # P, t1, t2, u1, u2
    Z = Z.permute(0, 3, 4, 1, 2)
    torch.testing.assert_close(torch.einsum("cuvst,ocuvst->o", Z, W), y)


# ---------------------------------------------------------------- Tucker and CP df
@pytest.mark.parametrize(
    "dims,ranks",
    [((4, 5, 3), (2, 3, 2)), ((3, 3, 3), (3, 3, 3)), ((5, 4, 6), (2, 2, 4)), ((6, 2, 2, 3), (3, 2, 2, 2)),
     ((4, 5), (2, 2)), ((5, 4, 3), (5, 1, 3)), ((7, 3, 2), (6, 3, 2))],
)
def test_tucker_dof_is_jacobian_rank(dims, ranks):
    clipped = tucker_ranks_clipped(dims, ranks)
    assert tucker_dof(dims, ranks) == _tucker_numeric(dims, clipped)
    assert tucker_dof(dims, ranks) <= math.prod(dims)


def test_tucker_ranks_clipped():
    assert tucker_ranks_clipped((5, 4, 3), (5, 1, 3)) == (3, 1, 3)   # r_1 <= r_2 r_3 = 3
    assert tucker_ranks_clipped((7, 3, 2), (9, 3, 2)) == (6, 3, 2)
    assert tucker_ranks_clipped((6, 6, 6), (6, 2, 1)) == (2, 2, 1)   # r_1 <= r_2 r_3 = 2


@pytest.mark.parametrize("dims,rank", [((4, 5, 3), 2), ((4, 4, 4), 4), ((3, 4, 2, 3), 3), ((5, 6), 3), ((6, 1, 4), 2),
                                       ((3, 3, 3), 5)])
def test_cp_dof_is_jacobian_rank(dims, rank):
    assert cp_dof(dims, rank) == _cp_numeric(dims, rank)


def test_cp_dof_never_exceeds_size_and_is_an_upper_bound_when_defective():
    assert cp_dof((3, 3, 3), 100) == 27
    # 4 x 2 x 2 at rank 3 is a defective case (documented): the formula is an upper bound there
    assert _cp_numeric((4, 2, 2), 3) <= cp_dof((4, 2, 2), 3)


def test_dof_bad_input():
    with pytest.raises(ValueError, match="same length"):
        tucker_dof((3, 4), (2,))
    with pytest.raises(ValueError, match="positive"):
        tucker_dof((3, 0), (1, 1))
    with pytest.raises(ValueError, match="rank"):
        cp_dof((3, 4, 5), 0)
    with pytest.raises(ValueError, match="kernel_size"):
        compressed_conv_df(4, 2, 2, 2, (3, 3, 3), 2, dim=2)
    with pytest.raises(TypeError, match="R_in"):
        compressed_conv_df(4, 2.5, 2, 2, 3, 2)


# ---------------------------------------------------------------- counting modules
def test_naive_count_and_flop_count_of_a_conv():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    assert naive_count(conv) == 8 * 3 * 9 + 8
    x = torch.randn(2, 3, 9, 9)
    m = conv_output_size((9, 9), 3, 2, 1)
    assert m == tuple(conv(x).shape[2:])
    assert flop_count(conv, x) == conv_flops(3, 8, 3, m, batch=2)
    grouped = nn.Conv3d(8, 4, (3, 1, 3), groups=4, bias=False)
    y = torch.randn(1, 8, 5, 5, 5)
    assert flop_count(grouped, y) == conv_flops(8, 4, (3, 1, 3), grouped(y).shape[2:], groups=4)
    linear = nn.Linear(10, 7)
    assert flop_count(linear, torch.randn(5, 10)) == 2 * 5 * 10 * 7
    with pytest.raises(TypeError, match="nn.Module"):
        naive_count(torch.zeros(3))


@pytest.mark.parametrize("design", ["dense", "bottleneck", "resnext", "inverted_residual", "separable"])
def test_block_formulas_against_hand_built_layers(design):
    """The analytic block formulas agree with a Sequential of the layers the theory table lists."""
    P, K, R, l = 8, 12, 4, 3
    one = 1
    if design == "dense":
        layers = [nn.Conv2d(P, K, l, stride=2, padding=1, bias=False)]
    elif design == "separable":
        layers = [nn.Conv2d(P, R, one, bias=False), nn.Conv2d(R, R, (l, 1), (2, 1), (1, 0), groups=R, bias=False),
                  nn.Conv2d(R, R, (1, l), (1, 2), (0, 1), groups=R, bias=False), nn.Conv2d(R, K, one, bias=False)]
    else:
        g = {"bottleneck": 1, "resnext": 2, "inverted_residual": R}[design]
        layers = [nn.Conv2d(P, R, one, bias=False), nn.Conv2d(R, R, l, 2, 1, groups=g, bias=False),
                  nn.Conv2d(R, K, one, bias=False)]
    net = nn.Sequential(*layers)
    x = torch.randn(2, P, 7, 9)
    assert naive_count(net) == block_naive_count(design, P, K, R, l, groups=2)
    assert flop_count(net, x) == block_flops(design, P, K, R, (7, 9), l, stride=2, groups=2, batch=2)


def test_block_naive_count_table():
    P, K, R, l, G = 16, 64, 8, 3, 4
    assert block_naive_count("dense", P, K, R, l) == K * P * 9
    assert block_naive_count("bottleneck", P, K, R, l, R_in=6) == P * 6 + 6 * R * 9 + R * K
    assert block_naive_count("resnext", P, K, R, l, groups=G) == P * R + R * R * 9 // G + R * K
    assert block_naive_count("separable", P, K, R, l) == R * (P + 3 + 3 + K)
    assert block_naive_count("inverted_residual", P, K, R, l) == P * R + R * 9 + R * K
    assert block_naive_count("r2plus1d", P, K, R, l, dim=3) == P * R * 9 + R * R * 3 + R * K
    with pytest.raises(ValueError, match="unknown design"):
        block_naive_count("densenet", P, K, R)
    with pytest.raises(ValueError, match="3D only"):
        block_naive_count("r2plus1d", P, K, R, dim=2)
