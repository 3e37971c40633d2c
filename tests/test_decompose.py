"""Decomposing convs: the block's forward is a conv with the reconstructed kernel, ranks, errors, backend."""
import pytest
import tensorly as tl
import torch
from torch import nn
from torch.nn import functional as F

from kr_lib.decompose import cp_rank_bound, decompose_conv, rank_sweep, reconstructed_conv, resolve_ranks

_CONVF = {2: F.conv2d, 3: F.conv3d}


def _conv(dim, P=6, K=8, kernel=3, stride=2, padding=1, bias=True, seed=0):
    torch.manual_seed(seed)
    Conv = {2: nn.Conv2d, 3: nn.Conv3d}[dim]
    return Conv(P, K, kernel, stride=stride, padding=padding, bias=bias).double()


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("method,rank", [("tucker2", 3), ("tucker2", (5, 2)), ("cp", 4), ("tucker", 3), ("tucker", None)])
def test_forward_is_conv_with_reconstructed_kernel(dim, method, rank):
    kernel = (3, 1, 3) if dim == 3 else 3
    if rank is None:
        rank = (4, 3, 2, 1, 2) if dim == 3 else (4, 3, 2, 2)
    conv = _conv(dim, kernel=kernel)
    block = decompose_conv(conv, method, rank, n_iter_max=10)
    x = torch.randn(2, 6, *([9] * dim), dtype=torch.float64)
    single = reconstructed_conv(block)
    A_hat = single.weight
    # the reported error is that of the reconstructed kernel
    err = (torch.linalg.vector_norm(conv.weight - A_hat) / torch.linalg.vector_norm(conv.weight)).item()
    assert block.relative_error == pytest.approx(err, rel=1e-9, abs=1e-12)
    assert 0 < err < 1
    y = _CONVF[dim](x, A_hat, conv.bias, stride=conv.stride, padding=conv.padding)
    torch.testing.assert_close(block(x), y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(single(x), y, rtol=1e-12, atol=1e-12)
    assert block.projection.bias is not None and all(c.bias is None for c in block.convs()[:-1])
    assert block.K == 8 and block.kr_ratio == 8 / block.R


@pytest.mark.parametrize("method", ["tucker2", "tucker"])
def test_full_rank_is_exact(method):
    conv = _conv(2, stride=1, padding=0)
    block = decompose_conv(conv, method, 1.0)
    assert block.relative_error < 1e-12
    x = torch.randn(1, 6, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(block(x), conv(x), rtol=1e-10, atol=1e-10)


def test_error_decreases_with_rank_and_cp_recovers_a_low_rank_kernel():
    conv = _conv(2, P=8, K=8, seed=3)
    errs = [decompose_conv(conv, "tucker2", r).relative_error for r in (1, 2, 4, 8)]
    assert all(a >= b - 1e-12 for a, b in zip(errs, errs[1:])) and errs[-1] < 1e-10
    g = torch.Generator().manual_seed(0)
    factors = [torch.randn(n, 2, dtype=torch.float64, generator=g) for n in (8, 8, 3, 3)]
    with torch.no_grad():
        conv.weight.copy_(torch.einsum("kr,cr,hr,wr->kchw", *factors))
    assert decompose_conv(conv, "cp", 2, n_iter_max=500).relative_error < 1e-6


def test_tensorly_backend_unchanged_and_dtype_device_kept():
    before = tl.get_backend()
    block = decompose_conv(_conv(2).float(), "cp", 3, n_iter_max=5)
    assert tl.get_backend() == before
    with tl.backend_context("numpy"):
        decompose_conv(_conv(2), "tucker2", 2, n_iter_max=5)
        assert tl.get_backend() == "numpy"
    assert all(p.dtype == torch.float32 for p in block.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_in_cuda_out():
    conv = _conv(3).cuda()
    for method in ("tucker2", "cp", "tucker"):
        block = decompose_conv(conv, method, 2)
        assert all(p.is_cuda for p in block.parameters())
        x = torch.randn(1, 6, 7, 7, 7, dtype=torch.float64, device="cuda")
        torch.testing.assert_close(block(x), reconstructed_conv(block)(x))


def test_padding_strings_and_1d():
    conv = nn.Conv2d(4, 6, 3, padding="same").double()
    block = decompose_conv(conv, "tucker2", (6, 4))
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(block(x), conv(x))
    conv1 = nn.Conv1d(4, 6, 5, stride=2, padding=2).double()
    block1 = decompose_conv(conv1, "cp", 4, n_iter_max=5)
    x1 = torch.randn(2, 4, 11, dtype=torch.float64)
    torch.testing.assert_close(block1(x1), reconstructed_conv(block1)(x1))


def test_ranks():
    shape = (8, 6, 3, 3)
    assert resolve_ranks(shape, "tucker2", 4) == (4, 4)
    assert resolve_ranks(shape, "tucker2", (torch.tensor(5), 2)) == (5, 2)
    assert resolve_ranks(shape, "tucker2", 0.5) == (4, 3)
    assert resolve_ranks(shape, "tucker", 2) == (2, 2, 3, 3)
    assert resolve_ranks(shape, "tucker", 1.0) == shape
    assert resolve_ranks(shape, "cp", 1.0) == (cp_rank_bound(shape),) == (54,)
    assert resolve_ranks((4, 2, 1, 1), "tucker2", 1.0) == (2, 2)   # a 1x1 conv: R <= R_in
    with pytest.raises(ValueError, match="largest allowed is 6"):
        resolve_ranks(shape, "tucker2", 7)
    with pytest.raises(ValueError, match="largest allowed is 54"):
        resolve_ranks(shape, "cp", 55)
    with pytest.raises(ValueError, match="largest allowed is 2"):
        resolve_ranks((4, 2, 1, 1), "tucker2", (3, 2))
    with pytest.raises(ValueError, match="4 ranks"):
        resolve_ranks(shape, "tucker", (2, 2))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        resolve_ranks(shape, "tucker2", 1.5)
    with pytest.raises(ValueError, match="unknown method"):
        resolve_ranks(shape, "svd", 2)


def test_bad_convs():
    with pytest.raises(TypeError, match="Conv"):
        decompose_conv(nn.Linear(3, 4), "cp", 2)
    with pytest.raises(ValueError, match="groups"):
        decompose_conv(nn.Conv2d(4, 4, 3, groups=2), "cp", 2)
    with pytest.raises(ValueError, match="dilation"):
        decompose_conv(nn.Conv2d(4, 4, 3, dilation=2), "cp", 2)
    with pytest.raises(ValueError, match="largest allowed"):
        decompose_conv(nn.Conv2d(3, 64, 7), "tucker2", 32)


def test_rank_sweep_records_and_skips():
    conv = _conv(2, P=4, K=6)
    rows = rank_sweep(conv, [1, 2, 6], methods=("tucker2", "cp"), evaluate=lambda b: {"n_layers": len(b)}, n_iter_max=5)
    assert [(r["method"], r["rank"]) for r in rows] == [("tucker2", 1), ("tucker2", 2), ("cp", 1), ("cp", 2), ("cp", 6)]
    t2 = [r for r in rows if r["method"] == "tucker2"]
    assert t2[0]["relative_error"] >= t2[1]["relative_error"]
    assert t2[1]["parameters"] == 4 * 2 + 2 * 2 * 9 + 2 * 6 + 6     # P R_in + R_in R l^2 + R K + bias
    assert all(r["original_parameters"] == 6 * 4 * 9 + 6 for r in rows)
    assert rows[2]["n_layers"] == 4 and rows[0]["n_layers"] == 3


@pytest.mark.parametrize("N", [2, 3])
def test_cp_of_a_pointwise_conv_is_the_optimal_truncated_svd(N):
    """A 1x1 conv is a K x P matrix: its rank-R CP error equals the Eckart-Young bound
    sqrt(sum of the discarded squared singular values) / ||A||, and ALS cannot do better."""
    import tensorly as tl
    from tensorly.decomposition import parafac

    torch.manual_seed(0)
    conv = (nn.Conv2d if N == 2 else nn.Conv3d)(24, 40, 1, bias=True).double()
    R = 5
    block = decompose_conv(conv, "cp", R)
    S = torch.linalg.svdvals(conv.weight.detach().reshape(40, 24))
    assert block.relative_error == pytest.approx((S[R:].square().sum().sqrt() / S.square().sum().sqrt()).item(), rel=1e-10)
    x = torch.randn(2, 24, *([5] * N), dtype=torch.float64)
    A_hat = reconstructed_conv(block).weight
    expected = torch.nn.functional.conv2d if N == 2 else torch.nn.functional.conv3d
    assert torch.allclose(block(x), expected(x, A_hat, conv.bias), atol=1e-10)
    with tl.backend_context("pytorch"):
        w, f = parafac(conv.weight.detach(), rank=R, init="random", n_iter_max=50, random_state=1)
        als = (tl.norm(conv.weight.detach() - tl.cp_to_tensor((w, f))) / tl.norm(conv.weight.detach())).item()
    assert block.relative_error <= als + 1e-9


def test_cp_memory_stays_of_the_order_of_the_kernel(one_thread):
    """CP's MTTKRP runs as one einsum: TensorLy's default builds the Khatri-Rao product of the other
    factors, here 64 x 256 x 256 x 9 floats (151 MB) for a 7 MB kernel (measured: 391 MiB peak with
    TensorLy's default, 42 MiB with the einsum backend)."""
    from kr_lib import perf

    torch.manual_seed(0)
    conv = nn.Conv3d(256, 256, 3, bias=False)
    kernel_bytes = conv.weight.numel() * 4
    block, peak = perf.peak_memory(lambda: decompose_conv(conv, "cp", 64, n_iter_max=2, tol=0), "cpu")
    assert block.relative_error < 1
    assert peak < 15 * kernel_bytes, f"CP used {peak / 2**20:.0f} MiB for a {kernel_bytes / 2**20:.0f} MiB kernel"
