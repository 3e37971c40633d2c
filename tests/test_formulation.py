"""Section 1 of the theory, checked numerically: a linear CNN is the tensor regression y = <Z(X), W> + b~."""
import math
import random
import warnings

import pytest
import torch
from torch import nn

from kr_lib.formulation import TensorRegression, fit_linear_cnn, linear_cnn, pooling_factor, accuracy

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
AVG = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note on even kernels
ADAPTIVE = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


def randomize_batchnorm(bn: nn.Module, gen: torch.Generator) -> None:
    """Running statistics and affine parameters away from their defaults, so BN does something."""
    k = bn.num_features
    bn.running_mean.copy_(torch.randn(k, generator=gen, dtype=bn.running_mean.dtype))
    bn.running_var.copy_(0.5 + torch.rand(k, generator=gen, dtype=bn.running_var.dtype))
    if bn.affine:
        bn.weight.data.copy_(torch.randn(k, generator=gen, dtype=bn.weight.dtype))
        bn.bias.data.copy_(torch.randn(k, generator=gen, dtype=bn.bias.dtype))


def spatial_shape(trunk: nn.Module, input_shape) -> tuple[int, ...]:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Using padding='same'")
        return tuple(trunk.eval()(torch.zeros(1, *input_shape, dtype=torch.float64)).shape[1:])


def random_linear_cnn(seed: int, n: int):
    """A random linear CNN on n spatial modes (float64, eval mode) and its input shape, or None if too small.

    1-3 convolutions with random kernel sizes, strides, paddings (some 'same'), dilations, groups and
    channel counts, BatchNorm with random statistics, average pooling between convolutions (some padded),
    a final AvgPool / AdaptiveAvgPool / none, Flatten, Linear; nested in Sequentials.
    """
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    P = rng.randint(1, 3)
    d = tuple(rng.randint(9, 16) if n < 3 else rng.randint(6, 10) for _ in range(n))
    layers, channels = [], P
    for i in range(rng.randint(1, 3)):
        K = rng.randint(1, 4)
        groups = 2 if channels % 2 == 0 and K % 2 == 0 and rng.random() < 0.3 else 1
        kernel = tuple(rng.randint(1, 3) for _ in range(n))
        if rng.random() < 0.15:
            conv = CONV[n](channels, K, kernel, padding="same", groups=groups, bias=rng.random() < 0.8)
        else:
            conv = CONV[n](channels, K, kernel, groups=groups, bias=rng.random() < 0.8,
                           stride=tuple(rng.randint(1, 2) for _ in range(n)),
                           padding=tuple(rng.randint(0, 2) for _ in range(n)),
                           dilation=2 if rng.random() < 0.15 else 1)
        block = [conv]
        if rng.random() < 0.5:
            block.append(BN[n](K, affine=rng.random() < 0.8))
        if rng.random() < 0.3:
            q = rng.randint(1, 2)
            block.append(AVG[n](q, padding=rng.randint(0, q // 2)))
        if rng.random() < 0.3:
            block.append(nn.Identity())
        if rng.random() < 0.5:
            layers.append(nn.Sequential(*block))  # nested Sequential
        else:
            layers.extend(block)
        channels = K
    trunk = nn.Sequential(*layers).double()
    try:
        m = spatial_shape(trunk, (P, *d))[1:]
    except RuntimeError:  # a random stack that shrinks the input away
        return None
    choice = rng.random()
    if choice < 0.4:
        q = tuple(rng.randint(1, max(1, mj)) for mj in m)
        layers.append(AVG[n](q))
    elif choice < 0.7:
        layers.append(ADAPTIVE[n](tuple(rng.choice([o for o in range(1, mj + 1) if mj % o == 0]) for mj in m)))
    if rng.random() < 0.3:
        layers.append(BN[n](channels))
    layers.append(nn.Flatten())
    if rng.random() < 0.3:
        layers.append(nn.Dropout(0.5))
    features = math.prod(spatial_shape(nn.Sequential(*layers).double(), (P, *d)))
    layers.append(nn.Linear(features, rng.randint(1, 5)))
    model = nn.Sequential(*layers).double()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            randomize_batchnorm(module, gen)
    return model.eval(), (P, *d)


def random_models(n: int, count: int):
    found, seed = [], 1000 * n
    while len(found) < count:
        made = random_linear_cnn(seed, n)
        if made is not None:
            found.append((seed, *made))
        seed += 1
    return found


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def check_identities(model, input_shape, n_samples=5):
    tr = TensorRegression.from_cnn(model, input_shape)
    x = torch.randn(n_samples, *input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        y = model(x)
    assert rel_err(tr.predict(x), y) < 1e-10
    inner = x.flatten(1) @ tr.effective_weight.flatten(1).T + tr.bias  # <X, W~_o> + b~
    assert rel_err(inner, y) < 1e-10
    O, P, n = y.shape[1], input_shape[0], len(input_shape) - 1
    assert tr.design(x).shape == (n_samples, P, *tr.kernel_size, *tr.pooled_size)
    assert tr.weight.shape == (O, P, *tr.kernel_size, *tr.pooled_size)
    assert tr.bias.shape == (O,)
    assert tr.effective_weight.shape == (O, *input_shape)
    assert [tuple(s.shape) for s in tr.factors] == [(d, l * p) for d, l, p in
                                                    zip(input_shape[1:], tr.kernel_size, tr.pooled_size)]
    return tr


MODELS_2D = random_models(2, 14)
MODELS_3D = random_models(3, 6)


@pytest.mark.parametrize("seed,model,input_shape", MODELS_2D, ids=[f"seed{s}" for s, *_ in MODELS_2D])
def test_random_2d_linear_cnn_is_a_tensor_regression(seed, model, input_shape):
    check_identities(model, input_shape)


@pytest.mark.parametrize("seed,model,input_shape", MODELS_3D, ids=[f"seed{s}" for s, *_ in MODELS_3D])
def test_random_3d_linear_cnn_is_a_tensor_regression(seed, model, input_shape):
    check_identities(model, input_shape)


def test_random_models_cover_what_they_claim():
    """The random configurations do exercise several layers, BN, pooling, padding and both trunk cases."""
    models = [m for _, m, _ in MODELS_2D + MODELS_3D]
    trs = [TensorRegression.from_cnn(m, s) for _, m, s in MODELS_2D + MODELS_3D]
    convs = [sum(isinstance(x, nn.modules.conv._ConvNd) for x in m.modules()) for m in models]
    assert {1, 2, 3} <= set(convs)
    assert any(isinstance(x, nn.BatchNorm2d) for m in models for x in m.modules())
    assert any(isinstance(x, nn.AdaptiveAvgPool3d) for m in models for x in m.modules())
    assert any(max(t.window) > 1 for t in trs)
    assert any(isinstance(x, nn.Conv2d) and x.padding == "same" for m in models for x in m.modules())
    assert any(isinstance(x, nn.Conv3d) and max(x.dilation) > 1 for m in models for x in m.modules())
    assert any(t.single_convolution for t in trs) and any(not t.single_convolution for t in trs)
    assert any(t.border_weight.abs().max() > 1e-3 * t.effective_weight.abs().max() for t in trs)


def test_one_layer_matches_the_formulas_of_section_1():
    """W = sum_k A[k] B[:, k], b~ = b + sum_{k,t} B a_k, Z by its definition, S_j by its definition."""
    torch.manual_seed(0)
    P, K, O, d, l, s, q = 2, 3, 4, (9, 8), (3, 2), (2, 1), (2, 3)
    conv = nn.Conv2d(P, K, l, stride=s, padding=(1, 0))
    m = [(dj + 2 * pj - lj) // sj + 1 for dj, pj, lj, sj in zip(d, (1, 0), l, s)]
    p = [mj // qj for mj, qj in zip(m, q)]
    model = nn.Sequential(conv, nn.AvgPool2d(q), nn.Flatten(), nn.Linear(K * p[0] * p[1], O)).double().eval()
    tr = TensorRegression.from_cnn(model, (P, *d))
    A, a = conv.weight.detach(), conv.bias.detach()
    B, b = model[3].weight.detach().reshape(O, K, *p), model[3].bias.detach()
    assert torch.allclose(tr.weight, torch.einsum("kcuv,oktw->ocuvtw", A, B), rtol=1e-12, atol=1e-14)
    assert torch.allclose(tr.bias, b + torch.einsum("oktw,k->o", B, a), rtol=1e-12, atol=1e-14)
    assert tr.pooled_size == tuple(p) and tr.window == q and tr.kernel_size == l
    # Z(X)[c,u,t] = mean over i in window t of Xpad[c, s*i + u], literally
    x = torch.randn(2, P, *d, dtype=torch.float64)
    xpad = nn.functional.pad(x, (0, 0, 1, 1))
    z = torch.zeros(2, P, *l, *p, dtype=torch.float64)
    for u0 in range(l[0]):
        for u1 in range(l[1]):
            for t0 in range(p[0]):
                for t1 in range(p[1]):
                    for r0 in range(q[0]):
                        for r1 in range(q[1]):
                            i0, i1 = q[0] * t0 + r0, q[1] * t1 + r1
                            z[:, :, u0, u1, t0, t1] += xpad[:, :, s[0] * i0 + u0, s[1] * i1 + u1] / (q[0] * q[1])
    assert torch.allclose(tr.design(x), z, rtol=1e-12, atol=1e-14)
    # W~ = W x_1 S_1 x_2 S_2 written out with einsum (independent of tensorly)
    S1 = tr.factors[0].reshape(d[0], l[0], p[0])
    S2 = tr.factors[1].reshape(d[1], l[1], p[1])
    assert torch.allclose(tr.effective_weight, torch.einsum("ocuvtw,xut,yvw->ocxy", tr.weight, S1, S2),
                          rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("d,l,s,q,pad", [(9, 3, 2, 2, 1), (12, 2, 1, 3, 0), (7, 1, 1, 1, 0), (10, 4, 3, 1, 2)])
def test_pooling_factor_is_the_count_in_its_definition(d, l, s, q, pad):
    """S_j[x, (u, t)] = (1/q) #{i in window t : s i + u - pad = x}, counted with loops."""
    m = (d + 2 * pad - l) // s + 1
    p = m // q
    expected = torch.zeros(d, l * p, dtype=torch.float64)
    for u in range(l):
        for t in range(p):
            for i in range(q * t, q * t + q):
                x = s * i + u - pad
                if 0 <= x < d:
                    expected[x, u * p + t] += 1 / q
    assert torch.equal(pooling_factor(d, l, s, q, p, pad), expected)


@pytest.mark.parametrize("seed,model,input_shape", MODELS_2D[:6] + MODELS_3D[:3],
                         ids=[f"seed{s}" for s, *_ in MODELS_2D[:6] + MODELS_3D[:3]])
def test_effective_weight_is_the_gradient_and_tucker_form(seed, model, input_shape):
    """W~ = W x_1 S_1 ... x_N S_N (+ E) equals d model / d X, computed by autograd."""
    tr = TensorRegression.from_cnn(model, input_shape)
    x = torch.zeros(1, *input_shape, dtype=torch.float64, requires_grad=True)
    grads = [torch.autograd.grad(model(x)[0, o], x)[0][0] for o in range(tr.num_outputs)]
    assert rel_err(tr.effective_weight, torch.stack(grads)) < 1e-10
    if tr.single_convolution:
        assert torch.count_nonzero(tr.border_weight) == 0


def test_stack_of_convolutions_is_one_convolution():
    """Kernel size l1 + s1 (l2 - 1), stride s1 s2, and the kernel is the stack's response to unit inputs."""
    torch.manual_seed(1)
    c1 = nn.Conv2d(2, 3, (3, 2), stride=(2, 1), bias=False)
    c2 = nn.Conv2d(3, 4, (2, 3), stride=(1, 2), bias=False)
    c3 = nn.Conv2d(4, 2, 2, stride=2, bias=False)
    trunk = nn.Sequential(c1, c2, c3).double()
    d = (20, 24)
    m = spatial_shape(trunk, (2, *d))[1:]
    model = nn.Sequential(trunk, nn.Flatten(), nn.Linear(2 * math.prod(m), 3)).double().eval()
    tr = TensorRegression.from_cnn(model, (2, *d))
    L12 = [l1 + s1 * (l2 - 1) for l1, s1, l2 in zip((3, 2), (2, 1), (2, 3))]
    L = tuple(L + s1 * s2 * (2 - 1) for L, s1, s2 in zip(L12, (2, 1), (1, 2)))
    assert tr.kernel_size == L and tr.stride == (4, 4) and tr.single_convolution
    # push the identity basis of a (2, L) input through the stack: output position 0 is the kernel
    basis = torch.eye(2 * L[0] * L[1], dtype=torch.float64).reshape(-1, 2, *L)
    with torch.no_grad():
        response = trunk(basis)[:, :, 0, 0]  # (P * L, K)
    assert torch.allclose(tr.kernel, response.T.reshape(2, 2, *L), rtol=1e-12, atol=1e-14)


def test_average_pooling_and_batchnorm_fold_into_the_kernel():
    torch.manual_seed(2)
    bn = nn.BatchNorm2d(3)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), bn, nn.AvgPool2d(2), nn.Conv2d(3, 2, 2), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(2, 2)).double()
    randomize_batchnorm(bn, torch.Generator().manual_seed(3))
    tr = check_identities(model.eval(), (1, 14, 14))
    assert tr.kernel_size == (3 + 1 * (2 - 1) + 2 * (2 - 1),) * 2  # conv, pool (l=2, s=2), conv
    assert tr.stride == (2, 2) and tr.window == (5, 5) and tr.pooled_size == (1, 1)


def test_padding_of_a_later_layer_is_a_border_term():
    """Zero padding after the first layer cuts kernel taps at the border; the border term makes it exact."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1), nn.AvgPool2d(2),
                          nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double().eval()
    tr = check_identities(model, (1, 8, 8))
    assert not tr.single_convolution
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    without_border = tr.design(x).flatten(1) @ tr.weight.flatten(1).T + tr.bias
    assert rel_err(without_border, model(x).detach()) > 1e-3  # the border term is needed
    inner = tr.border_weight[:, :, 2:-2, 2:-2]  # pixels that no cut tap reaches
    assert inner.abs().max() < 1e-12 * tr.effective_weight.abs().max()


@pytest.mark.parametrize("n", [2, 3])
def test_grouped_dilated_and_same_padded_convolutions(n):
    """Groups and dilation are expanded into a dense kernel; 'same' pads the odd zero on the right."""
    torch.manual_seed(4)
    model = nn.Sequential(
        CONV[n](4, 6, 2, groups=2, dilation=2, padding="same"),
        CONV[n](6, 4, 3, groups=2, padding=1, stride=2),
        CONV[n](4, 2, 2, groups=2, dilation=2),
        nn.Flatten(), nn.Linear(2 * 3 ** n, 3),
    ).double().eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Using padding='same'")
        check_identities(model, (4,) + (9,) * n)


def test_k_does_not_appear_in_the_shape_of_w():
    shapes = set()
    for K in (1, 2, 7):
        model = linear_cnn((1, 12, 12), num_classes=3, K=K, kernel_size=3, pool=2).double().eval()
        tr = TensorRegression.from_cnn(model, (1, 12, 12))
        assert tr.num_kernels == K and tr.kernel.shape[0] == K and tr.fc_weight.shape[1] == K
        shapes.add(tuple(tr.weight.shape))
    assert shapes == {(3, 1, 3, 3, 5, 5)}


def test_no_pooling_means_windows_of_one():
    model = nn.Sequential(nn.Conv1d(2, 3, 3, stride=2), nn.Flatten(), nn.Linear(3 * 4, 2)).double().eval()
    tr = check_identities(model, (2, 10))
    assert tr.window == (1,) and tr.pooled_size == tr.conv_size == (4,)


def test_float32_stays_float32():
    model = linear_cnn((1, 10, 10), num_classes=2, K=2, kernel_size=3, pool=2).eval()
    tr = TensorRegression.from_cnn(model, (1, 10, 10))
    assert all(t.dtype == torch.float32 for t in (tr.weight, tr.bias, tr.effective_weight, *tr.factors))
    x = torch.randn(3, 1, 10, 10)
    assert torch.allclose(tr.predict(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tensors_stay_on_the_model_device():
    model, shape = MODELS_2D[0][1:]
    model = model.to("cuda")
    tr = TensorRegression.from_cnn(model, shape)
    assert all(t.device.type == "cuda" for t in (tr.weight, tr.bias, tr.effective_weight, *tr.factors))
    x = torch.randn(3, *shape, dtype=torch.float64, device="cuda")
    assert rel_err(tr.predict(x), model(x).detach()) < 1e-10


def test_fit_linear_cnn_learns_and_stays_a_tensor_regression():
    """Synthetic data (labels from a random linear CNN teacher): the loss falls, the student agrees with the
    teacher far above chance, and the identity holds after training."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 10, 10, generator=gen)
    with torch.no_grad():
        y = linear_cnn((1, 10, 10), num_classes=3, K=4, kernel_size=3, pool=2, seed=1)(x).argmax(1)
    model = linear_cnn((1, 10, 10), num_classes=3, K=4, kernel_size=3, pool=2, seed=0)
    losses = fit_linear_cnn(model, x, y, epochs=5, lr=2e-2, batch_size=50, device="cpu")
    assert len(losses) == 5 and losses[-1] < 0.7 * losses[0]
    assert accuracy(model, x, y) > 0.6
    tr = TensorRegression.from_cnn(model, (1, 10, 10))
    assert torch.allclose(tr.predict(x), model(x), rtol=1e-4, atol=1e-4)
