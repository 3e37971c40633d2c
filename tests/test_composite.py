"""kr_lib.composite: the composite kernel of a chain of convolutions, its bias and sizes, and the modules that
use it (folding a linear CNN, reconstructed_conv, the report's receptive field, the simulations' einsum)."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from kr_lib.blocks import make_block
from kr_lib.composite import (
    ConvGeometry, chain_geometry, compose_bias, compose_kernels, compose_pair, dense_kernel, dilated_size,
)
from kr_lib.decompose import reconstructed_conv

_CONVF = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def test_compose_kernels_matches_a_chain_of_convs():
    torch.manual_seed(4)
    w1, w2, w3 = (torch.randn(4, 3, 3, 2, dtype=torch.float64), torch.randn(6, 2, 2, 3, dtype=torch.float64),
                  torch.randn(5, 6, 1, 1, dtype=torch.float64))
    x = torch.randn(2, 3, 17, 19, dtype=torch.float64)
    chain = F.conv2d(F.conv2d(F.conv2d(x, w1, stride=(2, 1)), w2, stride=(1, 3), groups=2), w3)
    A = compose_kernels([w1, w2, w3], [(2, 1), (1, 3), (1, 1)], [1, 2, 1])
    assert A.shape == (5, 3, 3 + 2 * 1, 2 + 1 * 2)
    torch.testing.assert_close(F.conv2d(x, A, stride=(2, 3)), chain)


@pytest.mark.parametrize("n,stride", [(1, (3,)), (2, (2, 1)), (3, (1, 2, 2))])
def test_compose_pair_and_bias_are_the_two_convolutions_in_one(n, stride):
    """Conv 2 after conv 1 (with biases, conv 1 padded, no padding after it) is one conv: kernel by
    compose_pair, bias by compose_bias, size / stride / padding by ConvGeometry.then."""
    torch.manual_seed(0)
    l1, l2, pad = (3,) * n, (2,) * n, (1,) * n
    A1, a1 = torch.randn(5, 3, *l1, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    A2, a2 = torch.randn(4, 5, *l2, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    x = torch.randn(2, 3, *(11,) * n, dtype=torch.float64)
    conv = _CONVF[n]
    chain = conv(conv(x, A1, a1, stride=stride, padding=pad), A2, a2)
    g = ConvGeometry(l1, stride, pad, pad).then(ConvGeometry(l2, (1,) * n))
    A = compose_pair(A1, A2, stride)
    assert tuple(A.shape) == (4, 3, *g.kernel_size)
    assert g.kernel_size == tuple(a + s * (b - 1) for a, s, b in zip(l1, stride, l2)) and g.stride == stride
    assert g.pad_left == g.pad_right == pad
    torch.testing.assert_close(conv(x, A, compose_bias(A2, a1, a2), stride=g.stride, padding=g.pad_left), chain)


def test_chain_geometry_sums_the_padding_and_multiplies_the_strides():
    steps = [ConvGeometry((1, 1), (2, 1)), ConvGeometry((3, 3), (1, 2), (1, 1), (1, 0)), ConvGeometry((3, 1), (2, 1), (2, 0))]
    g = chain_geometry(steps)
    # l = l_1 + s_1 (l_2 - 1) + s_1 s_2 (l_3 - 1), s = s_1 s_2 s_3, p = sum_i p_i prod_{i' < i} s_{i'}
    assert g.kernel_size == (1 + 2 * 2 + 2 * 1 * 2, 1 + 1 * 2 + 1 * 2 * 0)
    assert g.stride == (2 * 1 * 2, 1 * 2 * 1)
    assert g.pad_left == (0 + 2 * 1 + 2 * 2, 0 + 1 * 1 + 2 * 0) and g.pad_right == (0 + 2 * 1 + 0, 0 + 0 + 0)
    assert chain_geometry([ConvGeometry.identity(2), steps[1]]) == steps[1]
    with pytest.raises(ValueError, match="at least one"):
        chain_geometry([])
    with pytest.raises(ValueError, match="modes"):
        ConvGeometry((3, 3), (1,))


@pytest.mark.parametrize("groups,dilation", [(1, (2, 3)), (3, None), (3, (2, 1))])
def test_dense_kernel_is_the_same_convolution(groups, dilation):
    torch.manual_seed(1)
    w = torch.randn(6, 6 // groups, 3, 2, dtype=torch.float64)
    x = torch.randn(2, 6, 13, 12, dtype=torch.float64)
    dense = dense_kernel(w, groups, dilation)
    assert tuple(dense.shape) == (6, 6, *dilated_size((3, 2), dilation or (1, 1)))
    torch.testing.assert_close(F.conv2d(x, dense), F.conv2d(x, w, groups=groups, dilation=dilation or 1))
    assert dense_kernel(w) is w


def test_fold_of_a_linear_cnn_is_compose_kernels():
    """The formulation's folding and reconstructed_conv compute the same composite kernel."""
    from kr_lib.formulation import TensorRegression

    torch.manual_seed(2)
    trunk = [nn.Conv2d(2, 6, 1, bias=False), nn.Conv2d(6, 6, 3, stride=2, groups=3, bias=False),
             nn.Conv2d(6, 4, 1, bias=False)]
    model = nn.Sequential(*trunk, nn.Flatten(), nn.Linear(4 * 5 * 5, 2)).double().eval()
    tr = TensorRegression.from_cnn(model, (2, 11, 11))
    A = compose_kernels([c.weight for c in trunk], [c.stride for c in trunk], [c.groups for c in trunk])
    torch.testing.assert_close(tr.kernel, A.detach())
    single = reconstructed_conv(nn.Sequential(*trunk))
    assert tr.stride == single.stride == (2, 2)
    torch.testing.assert_close(single.weight, A.detach())


@pytest.mark.parametrize("design,dim,stride", [("bottleneck", 2, 2), ("separable", 2, 2), ("separable", 3, 1),
                                              ("r2plus1d", 3, 2), ("inverted_residual", 2, 1), ("bottleneck", 3, 2)])
def test_report_receptive_field_is_the_composite_kernel_size(design, dim, stride):
    from kr_lib.redundancy import find_blocks

    torch.manual_seed(3)
    block = make_block(design, 4, 8, 4, dim=dim, stride=stride, linear=True)
    x = torch.randn(1, 4, *(9,) * dim)
    info = find_blocks(nn.Sequential(block), x)
    assert len(info) == 1
    assert info[0].composite_kernel == tuple(reconstructed_conv(block).weight.shape[2:])


def test_report_receptive_field_counts_dilation():
    from kr_lib.redundancy import find_blocks

    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, dilation=2, stride=2), nn.Conv2d(4, 8, 3, dilation=(1, 3)),
                        nn.Conv2d(8, 16, 1))
    (block,) = find_blocks(net, torch.randn(1, 3, 32, 32))
    # extents 1, 5, (3, 7), 1; strides 1, 2, 1, 1: l = 1 + 1 * 4 + 2 * (2, 6) + 0
    assert block.composite_kernel == (9, 17)


@pytest.mark.parametrize("family", ["tucker", "cp", "dense"])
@pytest.mark.parametrize("spatial", [(9, 10), (7, 9, 9)])
def test_simulation_einsum_is_compose_kernels(family, spatial):
    """The simulations' batched einsum (simulation.composite_kernel) is compose_kernels on each network."""
    from kr_lib.simulation import CNNGeometry, build_cnn, composite_kernel

    g = CNNGeometry(spatial, in_channels=3, kernel_size=3, stride=2, pool=2)
    torch.manual_seed(4)
    nets = [build_cnn(g, family, 6, R_in=2, R=2).double() for _ in range(2)]
    stacked = torch.func.stack_module_state(nets)[0]
    A = composite_kernel(family, stacked, g)
    for i, net in enumerate(nets):
        convs = list(net.features)
        expected = compose_kernels([c.weight for c in convs], [c.stride for c in convs], [c.groups for c in convs])
        torch.testing.assert_close(A[i], expected.detach())
