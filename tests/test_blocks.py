"""Blocks of book section 2, sec-decomposition: shapes, K/R bookkeeping, counts, FLOPs and the df of their kernels."""
import math

import pytest
import torch
from torch import nn

from kr_lib.blocks import (
    DESIGNS,
    BottleneckBlock,
    DenseBlock,
    InvertedResidualBlock,
    R2Plus1DBlock,
    ResNeXtBlock,
    SeparableBlock,
    make_block,
)
from kr_lib.complexity import block_naive_count, flop_count, jacobian_dof, naive_count
from kr_lib.decompose import compose_kernels, reconstructed_conv

CASES = [(d, dim) for d in DESIGNS for dim in (2, 3) if not (d == "r2plus1d" and dim == 2)]


def _block(design, dim, linear, P=8, K=16, R=8, stride=2, bias=False):
    return make_block(design, P, K, None if design == "dense" else R, dim=dim, stride=stride, linear=linear,
                      groups=2 if design == "resnext" else None, bias=bias)


@pytest.mark.parametrize("design,dim", CASES)
@pytest.mark.parametrize("linear", [True, False])
def test_shapes_attributes_counts_flops(design, dim, linear):
    torch.manual_seed(0)
    block = _block(design, dim, linear)
    x = torch.randn(2, 8, *([7] * dim))
    y = block(x)
    assert y.shape == (2, 16, *([4] * dim))
    R = 16 if design == "dense" else 8
    assert (block.K, block.R, block.kr_ratio, block.design) == (16, R, 16 / R, design)
    last = block.convs()[-1]
    assert last is block.projection and last.out_channels == 16
    if design == "dense":
        assert last.in_channels == 8          # the conv itself; R = K
    else:
        assert last.in_channels == R and all(k == 1 for k in last.kernel_size)
    assert naive_count(block) == block.analytic_naive_count()
    assert flop_count(block, x) == block.analytic_flops((7,) * dim, batch=2)
    if linear:
        assert naive_count(block) == block_naive_count(design, 8, 16, R, 3, dim=dim, groups=2)
        assert not any(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d, nn.ReLU)) for m in block.modules())


def test_theory_table_counts_for_linear_blocks():
    P, K, R, G = 16, 64, 8, 4
    l = 9
    assert naive_count(make_block("dense", P, K, None, linear=True)) == K * P * l
    assert naive_count(make_block("bottleneck", P, K, R, linear=True)) == P * R + R * R * l + R * K
    assert naive_count(make_block("bottleneck", P, K, R, R_in=4, linear=True)) == P * 4 + 4 * R * l + R * K
    assert naive_count(make_block("resnext", P, K, R, groups=G, linear=True)) == P * R + R * R * l // G + R * K
    assert naive_count(make_block("separable", P, K, R, linear=True)) == R * (P + 3 + 3 + K)
    t = 6
    ir = make_block("inverted_residual", P, K, None, expansion=t, linear=True)
    assert ir.R == t * P and naive_count(ir) == P * t * P + t * P * l + t * P * K
    assert ir.kr_ratio == pytest.approx(K / (t * P))
    assert naive_count(make_block("r2plus1d", P, K, R, dim=3, linear=True)) == P * R * l + R * R * 3 + R * K


@pytest.mark.parametrize("design,dim", CASES)
def test_linear_block_is_one_conv_with_its_composite_kernel(design, dim):
    torch.manual_seed(1)
    block = _block(design, dim, linear=True, bias=True).double()
    x = torch.randn(2, 8, *([9] * dim), dtype=torch.float64)
    conv = reconstructed_conv(block)
    assert conv.weight.shape == (16, 8, *([3] * dim))
    torch.testing.assert_close(conv(x), block(x), rtol=1e-12, atol=1e-12)


def _numeric_kernel_dof(block):
    convs = block.convs()
    weights = [c.weight.detach().double() for c in convs]
    strides, groups = [c.stride for c in convs], [c.groups for c in convs]
    return jacobian_dof(lambda *w: compose_kernels(list(w), strides, groups), *weights)


@pytest.mark.parametrize(
    "design,P,K,R,dim,kw",
    [("dense", 4, 6, None, 2, {}), ("bottleneck", 6, 8, 3, 2, {}), ("bottleneck", 4, 3, 5, 2, {}),
     ("bottleneck", 3, 4, 2, 3, {"R_in": 2}), ("resnext", 6, 8, 4, 2, {"groups": 2}), ("resnext", 8, 12, 6, 2, {"groups": 3}),
     ("inverted_residual", 3, 4, 6, 2, {}), ("inverted_residual", 2, 6, 12, 2, {}), ("separable", 6, 8, 3, 2, {}),
     ("separable", 4, 5, 8, 2, {}), ("separable", 3, 4, 6, 3, {}), ("r2plus1d", 3, 5, 2, 3, {}), ("r2plus1d", 2, 6, 4, 3, {})],
)
def test_kernel_dof_is_jacobian_rank(design, P, K, R, dim, kw):
    torch.manual_seed(2)
    block = make_block(design, P, K, R, dim=dim, linear=True, **kw)
    df = block.kernel_dof()
    assert df == _numeric_kernel_dof(block)
    assert df <= K * P * 3 ** dim


def test_residual_block_details():
    same = make_block("bottleneck", 16, 16, 4)
    assert isinstance(same.shortcut, nn.Identity)
    proj = make_block("bottleneck", 8, 16, 4)
    assert isinstance(proj.shortcut, nn.Sequential)
    strided = make_block("separable", 16, 16, 4, stride=(2, 1))
    assert strided(torch.randn(1, 16, 8, 6)).shape == (1, 16, 4, 6)
    video = make_block("r2plus1d", 3, 8, 4, dim=3, kernel_size=(3, 5, 5), stride=(1, 2, 2))
    assert video(torch.randn(1, 3, 4, 10, 10)).shape == (1, 8, 4, 5, 5)
    assert (video.convs()[0].kernel_size, video.convs()[1].kernel_size) == ((1, 5, 5), (3, 1, 1))


def test_classes_directly():
    assert DenseBlock(3, 5).kr_ratio == 1.0
    assert BottleneckBlock(64, 256, 64).kr_ratio == 4.0           # ResNet-50's first bottleneck
    assert ResNeXtBlock(256, 256, 128, 32).kr_ratio == 2.0        # ResNeXt-50 32x4d
    assert InvertedResidualBlock(24, 24, expansion=6).kr_ratio == pytest.approx(1 / 6)
    assert SeparableBlock(32, 64, 32, linear=True).kr_ratio == 2.0
    assert R2Plus1DBlock(3, 8, 4).dim == 3
    assert math.isclose(make_block("inverted_residual", 4, 8, 8).expansion, 2.0)


def test_bad_input():
    with pytest.raises(ValueError, match="unknown design"):
        make_block("densenet", 4, 8, 2)
    with pytest.raises(ValueError, match="R = K"):
        make_block("dense", 4, 8, 2)
    with pytest.raises(ValueError, match="groups"):
        make_block("resnext", 4, 8, 6, groups=4)
    with pytest.raises(ValueError, match="groups"):
        make_block("resnext", 4, 8, 6)
    with pytest.raises(ValueError, match="3D only"):
        make_block("r2plus1d", 4, 8, 2, dim=2)
    with pytest.raises(ValueError, match="disagrees"):
        make_block("inverted_residual", 4, 8, 6, expansion=2)
    with pytest.raises(ValueError, match="odd kernel"):
        make_block("bottleneck", 4, 8, 2, kernel_size=2)
    with pytest.raises(ValueError, match="kernel_size"):
        make_block("bottleneck", 4, 8, 2, kernel_size=(3, 3, 3))
    with pytest.raises(ValueError, match="K must"):
        make_block("bottleneck", 4, 0, 2)
    with pytest.raises(ValueError, match="linear"):
        reconstructed_conv(make_block("bottleneck", 4, 8, 2))
