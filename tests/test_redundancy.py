"""kr_lib.redundancy: blocks found by structure, K/R values of the torchvision zoo, df, FLOPs, aggregates."""
from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from torch import nn

from kr_lib.blocks import DESIGNS, make_block
from kr_lib.complexity import flop_count, jacobian_dof, tucker_dof
from kr_lib.redundancy import REPORT_COLUMNS, default_input_shape, find_blocks, kr_ratio, kr_report, kr_summary

VIDEO = {"r3d_18", "mc3_18", "r2plus1d_18"}
# the block classes torchvision uses; detection must find exactly these modules, by structure alone
TV_BLOCK_CLASSES = {"BasicBlock", "Bottleneck", "InvertedResidual", "MBConv", "ResBottleneckBlock"}


def build(name: str) -> nn.Module:
    """A torchvision model with weights=None, on the meta device when it can be built there.

    The report reads shapes and the autograd graph only, so meta tensors (no data, no compute) give the
    same report as real ones (``test_meta_device_gives_the_same_report``) at a fraction of the cost.
    """
    try:
        with torch.device("meta"):
            return torchvision.models.get_model(name, weights=None)
    except NotImplementedError:  # a builder that computes with tensors (RegNet's widths)
        torch.manual_seed(0)
        return torchvision.models.get_model(name, weights=None)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@functools.lru_cache(maxsize=None)
def zoo(name: str, size: int = 32):
    """(model, report) of a torchvision model at a small input (video: 3 x 4 x size x size)."""
    model = build(name)
    shape = (1, 3, 4, size, size) if name in VIDEO else (1, 3, size, size)
    return model, kr_report(model, torch.randn(shape, device=_device(model)))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_meta_device_gives_the_same_report(name):
    torch.manual_seed(0)
    real = torchvision.models.get_model(name, weights=None)
    on_cpu = kr_report(real, torch.randn(1, 3, 32, 32))
    on_meta = kr_report(real.to("meta"), torch.randn(1, 3, 32, 32, device="meta"))
    pd.testing.assert_frame_equal(on_meta, on_cpu)
    assert on_meta.attrs == on_cpu.attrs


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- the zoo's K/R values
@pytest.mark.parametrize("name, design, kr", [
    ("resnet18", "dense", 1.0),
    ("resnet50", "bottleneck", 4.0),
    ("wide_resnet50_2", "bottleneck", 2.0),
    ("resnext50_32x4d", "resnext", 2.0),
])
def test_resnet_family_kr(name, design, kr):
    model, report = zoo(name)
    assert len(report) == sum(len(getattr(model, f"layer{i}")) for i in range(1, 5))
    assert set(report["design"]) == {design}
    np.testing.assert_allclose(report["K/R"], kr)
    # K and R read off the torchvision modules themselves: the closing conv is conv3 (conv2 for basic blocks)
    for row in report.to_dict("records"):
        block = model.get_submodule(row["block"])
        name = "conv3" if hasattr(block, "conv3") else "conv2"
        closing = getattr(block, name)
        assert row["closing conv"] == f"{row['block']}.{name}"
        assert row["K"] == closing.out_channels
        assert row["R"] == (closing.in_channels if name == "conv3" else closing.out_channels)


def test_resnet50_first_bottleneck_is_64_to_256():
    _, report = zoo("resnet50")
    first = report.iloc[0]
    assert (first["block"], first["R"], first["K"], first["P"], first["R_in"]) == ("layer1.0", 64, 256, 64, 64)


def test_mobilenet_v2_inverted_residuals_have_kr_one_sixth():
    model, report = zoo("mobilenet_v2")
    # expansion t = R / P: 1 in the first block (depthwise separable, K/R = K/P), 6 elsewhere
    t = report["R"] / report["P"]
    assert t.iloc[0] == 1 and report["design"].iloc[0] == "separable"
    assert (t.iloc[1:] == 6).all() and set(report["design"].iloc[1:]) == {"inverted_residual"}
    np.testing.assert_allclose(report["K/R"].iloc[0], report["K"].iloc[0] / report["P"].iloc[0])
    same_width = report[report["P"] == report["K"]]
    assert len(same_width) >= 10
    np.testing.assert_allclose(same_width["K/R"], 1 / 6)


@pytest.mark.parametrize("name, weights", [("resnet50", "ResNet50_Weights"), ("mobilenet_v2", "MobileNet_V2_Weights")])
def test_parameter_totals_match_torchvision(name, weights):
    published = getattr(torchvision.models, weights).IMAGENET1K_V1.meta["num_params"]  # 25,557,032 and 3,504,872
    model, report = zoo(name)
    s = kr_summary(report)
    assert s["total_parameters"] == published == _params(model)
    # blocks + the rest, the rest counted independently from the parameter names
    rest = sum(p.numel() for n, p in model.named_parameters()
               if not any(n.startswith(b + ".") for b in report["block"]))
    assert s["rest_parameters"] == rest > 0
    assert s["block_parameters"] + rest == published
    for block, params in zip(report["block"], report["parameters"]):
        assert params == _params(model.get_submodule(block))


@pytest.mark.parametrize("name", [
    "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x1_0", "efficientnet_b0",
    "regnet_y_400mf", "mobilenet_v3_large", "r3d_18", "mc3_18", "r2plus1d_18",
])
def test_structure_finds_exactly_the_torchvision_blocks(name):
    model, report = zoo(name)
    by_class = [p for p, m in model.named_modules() if type(m).__name__ in TV_BLOCK_CLASSES]
    assert sorted(report["block"]) == sorted(by_class)
    assert kr_summary(report)["total_parameters"] == _params(model)


def test_video_designs():
    for name, design in (("r3d_18", "dense"), ("mc3_18", "dense"), ("r2plus1d_18", "r2plus1d")):
        _, report = zoo(name)
        assert set(report["design"]) == {design}, name
        np.testing.assert_allclose(report["K/R"], 1.0)


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenet_v3_small", "regnet_y_400mf"])
def test_squeeze_excitation_is_not_the_closing_projection(name):
    model, report = zoo(name)
    se = [p for p, m in model.named_modules() if type(m).__name__ == "SqueezeExcitation"]
    assert se, "these networks have squeeze-excitation"
    for closing in report["closing conv"]:
        assert not any(closing.startswith(s + ".") for s in se), closing
        assert model.get_submodule(closing).kernel_size == (1, 1)
    # at 16 x 16 the last stages run on 1 x 1 maps, where shapes alone cannot tell a gate from a projection
    _, tiny = zoo(name, 16)
    cols = ["block", "design", "K", "R", "closing conv"]
    pd.testing.assert_frame_equal(tiny[cols], report[cols])


# ----------------------------------------------------------------------------- user-defined blocks
class GatedUnit(nn.Module):
    """A user block with arbitrary names: 1x1 reduce, 3x3 mix, 1x1 expand, then a channel gate, + skip."""

    def __init__(self, c: int, k: int, r: int):
        super().__init__()
        self.reduce = nn.Conv2d(c, r, 1, bias=False)
        self.norm = nn.BatchNorm2d(r)
        self.mix = nn.Conv2d(r, r, 3, padding=1)
        self.expand = nn.Conv2d(r, k, 1)
        self.gate_in = nn.Conv2d(k, 4, 1)
        self.gate_out = nn.Conv2d(4, k, 1)
        self.skip = nn.Identity() if c == k else nn.Conv2d(c, k, 1)

    def forward(self, x):
        y = self.expand(torch.relu(self.mix(torch.relu(self.norm(self.reduce(x))))))
        g = torch.sigmoid(self.gate_out(torch.relu(self.gate_in(y.mean((2, 3), keepdim=True)))))
        return torch.relu(y * g + self.skip(x))


def user_net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        GatedUnit(8, 32, 8),
        GatedUnit(32, 32, 8),
        nn.Sequential(nn.Conv2d(32, 16, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, groups=4),
                      nn.ReLU(), nn.Conv2d(16, 48, 1)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 10))


@pytest.mark.parametrize("size", [8, 1])
def test_user_defined_blocks_are_found_by_structure(size):
    net = user_net()
    report = kr_report(net, torch.randn(2, 3, size, size))
    assert list(report["block"]) == ["1", "2", "3"]
    assert list(report["closing conv"]) == ["1.expand", "2.expand", "3.5"]
    assert list(report["design"]) == ["bottleneck", "bottleneck", "resnext"]
    np.testing.assert_allclose(report["K/R"], [4, 4, 3])
    assert kr_summary(report)["rest_parameters"] == _params(net[0]) + _params(net[6])


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("linear", [False, True])
def test_structure_agrees_with_kr_lib_blocks(design, linear):
    dim = 3 if design == "r2plus1d" else 2
    R = None if design == "dense" else 16
    block = make_block(design, 12, 32, R, dim=dim, linear=linear)
    x = torch.randn(1, 12, *((4, 8, 8) if dim == 3 else (8, 8)))
    report = kr_report(block, x)
    if design == "dense" and linear:
        assert report.empty  # one plain conv is a layer, not a block
        return
    (row,) = report.to_dict("records")
    assert (row["design"], row["K"], row["R"], row["P"]) == (block.design, block.K, block.R, block.in_channels)
    assert row["K/R"] == block.kr_ratio == kr_ratio(block)


def test_kr_ratio_of_a_torchvision_block_and_errors():
    resnet = build("resnet50")
    assert kr_ratio(resnet.layer2[1]) == 4.0
    assert kr_ratio(build("mobilenet_v2").features[3]) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="holds 3 blocks"):
        kr_ratio(resnet.layer1)
    with pytest.raises(ValueError, match="no convolution"):
        kr_ratio(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(TypeError, match="nn.Module"):
        kr_ratio("resnet50")


# ----------------------------------------------------------------------------- df, FLOPs
def _composite_bottleneck(w1, w2, w3):
    """Composite kernel (K, P, l, l) of 1x1 -> l x l -> 1x1 convs (weights as torch stores them)."""
    return torch.einsum("kr,rsij,sc->kcij", w3[:, :, 0, 0], w2, w1[:, :, 0, 0])


def test_block_df_is_the_jacobian_rank_of_the_composite_kernel():
    P, R_in, R, K = 5, 3, 2, 6
    net = nn.Sequential(nn.Conv2d(P, R_in, 1, bias=False), nn.Conv2d(R_in, R, 3, bias=False),
                        nn.Conv2d(R, K, 1, bias=False)).double()
    x = torch.randn(1, P, 7, 7, dtype=torch.float64)
    # the composite kernel is the kernel of the block (no padding, so the block is exactly one conv)
    w = [m.weight for m in net]
    A = _composite_bottleneck(*w)
    torch.testing.assert_close(net(x), torch.nn.functional.conv2d(x, A))
    (row,) = kr_report(net, x).to_dict("records")
    rank = jacobian_dof(_composite_bottleneck, *[t.detach().clone() for t in w])
    assert row["df"] == rank == tucker_dof((K, P, 3, 3), (R, R_in, 3, 3))
    assert row["df"] < row["naive count"] == P * R_in + R_in * R * 9 + R * K


def test_dense_chain_df_is_an_upper_bound():
    """Two 3x3 convs: composite 5x5 kernel; df = min(Tucker df, weights) bounds the Jacobian rank."""
    C = 2
    net = nn.Sequential(nn.Conv2d(C, C, 3, bias=False), nn.Conv2d(C, C, 3, bias=False)).double()

    def composite(w1, w2):
        A = torch.zeros(C, C, 5, 5, dtype=w1.dtype)
        for a in range(3):
            for b in range(3):
                A = A + nn.functional.pad(torch.einsum("km,mc...->kc...", w2[:, :, a, b], w1), (b, 2 - b, a, 2 - a))
        return A

    x = torch.randn(1, C, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(net(x), nn.functional.conv2d(x, composite(net[0].weight, net[1].weight)))
    (row,) = kr_report(net, x).to_dict("records")
    assert row["design"] == "dense" and row["df"] == min(C * C * 25, 2 * C * C * 9)
    assert jacobian_dof(composite, net[0].weight.detach().clone(), net[1].weight.detach().clone()) <= row["df"]


def test_block_flops_match_the_conv_formula_and_the_total():
    model, report = zoo("resnet50")
    x = torch.randn(1, 3, 32, 32, device=_device(model))
    model.eval()
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.__setitem__(m, o.shape))
             for m in model.layer1[0].modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert len(shapes) == 4  # conv1..conv3 and the downsample conv
    expected = sum(2 * m.out_channels * (m.in_channels // m.groups) * math.prod(m.kernel_size) * math.prod(s[2:])
                   for m, s in shapes.items())
    assert report.loc[report["block"] == "layer1.0", "FLOPs"].item() == expected
    assert report.attrs["total_flops"] == flop_count(model, x) > report["FLOPs"].sum()


# ----------------------------------------------------------------------------- the report itself
def test_report_leaves_the_model_as_it_was():
    model = torchvision.models.resnet18()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kr_report(model, torch.randn(2, 3, 32, 32))
    assert all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm running stats untouched
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_report_columns_and_summary():
    model, report = zoo("resnet18")
    assert list(report.columns) == REPORT_COLUMNS
    assert (report["naive count"] == report["parameters"]).all()
    assert (report["df"] <= report["naive count"]).all()
    assert report.attrs["total_parameters"] == _params(model)
    s = kr_summary(report)
    assert {k: report.attrs[k] for k in s} == s


def test_kr_summary_aggregates():
    report = pd.DataFrame({"block": ["a", "b", "c"], "K/R": [4.0, 0.5, 1.0], "parameters": [100, 50, 50],
                           "FLOPs": [1, 2, 3]})
    s = kr_summary(report, total_parameters=400)
    assert s["weighted_kr"] == pytest.approx(np.average([4.0, 0.5, 1.0], weights=[100, 50, 50]))
    assert (s["max_kr"], s["share_kr_gt_1"], s["rest_parameters"], s["block_flops"]) == (4.0, 0.25, 200, 6)
    with pytest.raises(ValueError, match="total_parameters"):
        kr_summary(report)
    with pytest.raises(TypeError, match="kr_report"):
        kr_summary({"K/R": [1.0]})


def test_default_input_shape():
    assert default_input_shape(build("resnet18")) == (3, 224, 224)
    assert default_input_shape(build("r3d_18")) == (3, 16, 112, 112)
    with pytest.raises(ValueError, match="no convolution"):
        default_input_shape(nn.Linear(2, 2))


def test_find_blocks_chain_and_composite_kernel():
    model = build("resnet18")
    blocks = find_blocks(model, torch.randn(1, 3, 32, 32, device=_device(model)))
    by_path = {b.path: b for b in blocks}
    # the shortcut (layer2.0.downsample.0) is not on the chain; the chain's receptive field is
    # l = l_1 + s_1 (l_2 - 1): 3 + 1 * 2 = 5 at stride 1, 3 + 2 * 2 = 7 after a stride-2 conv
    assert [c.path for c in by_path["layer2.0"].chain] == ["layer2.0.conv1", "layer2.0.conv2"]
    assert by_path["layer1.0"].composite_kernel == (5, 5) and by_path["layer2.0"].composite_kernel == (7, 7)
    assert all(b.kr_ratio == 1 for b in blocks)


def test_find_blocks_rejects_non_modules():
    with pytest.raises(TypeError, match="nn.Module"):
        find_blocks(lambda x: x, torch.randn(1, 3, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_report_on_cuda_matches_cpu():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2()
    report = kr_report(model, torch.randn(1, 3, 32, 32))
    on_gpu = kr_report(model.to("cuda"), torch.randn(1, 3, 32, 32, device="cuda"))
    cols = ["block", "design", "K", "R", "parameters", "FLOPs", "df"]
    pd.testing.assert_frame_equal(on_gpu[cols], report[cols])
    assert on_gpu.attrs["total_parameters"] == report.attrs["total_parameters"]


def test_only_the_tracing_module_reads_pytorch_internals():
    """The autograd-graph machinery lives in kr_lib._graph, so a PyTorch upgrade that changes it breaks there."""
    import inspect

    import kr_lib._graph
    import kr_lib.redundancy

    internals = ("next_functions", "grad_fn", "saved_tensors_hooks", "FlopCounterMode(", "get_flop_counts",
                 "._modules", "register_forward")
    report, graph = inspect.getsource(kr_lib.redundancy), inspect.getsource(kr_lib._graph)
    assert [name for name in internals if name in report] == []
    assert [name for name in internals if name not in graph] == []


def test_trace_forward_finds_the_chain_and_the_shortcut():
    from kr_lib._graph import has_bypass, longest_chain, trace_forward

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2, self.shortcut = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 8, 1), nn.Conv2d(4, 8, 1)

        def forward(self, x):
            return self.conv2(self.conv1(x)) + self.shortcut(x)

    net = nn.Sequential(Residual())
    trace = trace_forward(net, torch.randn(1, 4, 6, 6))
    assert [c.path for c in trace.convs] == ["0.conv1", "0.conv2", "0.shortcut"]
    call = trace.calls["0"]
    chain = longest_chain(call, trace.node_conv)
    assert [c.path for c in chain] == ["0.conv1", "0.conv2"] and has_bypass(call, chain, trace.node_conv)
    assert not has_bypass(trace.calls["0.conv1"], [trace.convs[0]], trace.node_conv)
    assert trace.total_flops == sum(trace.flops[c.path] for c in trace.convs) > 0
