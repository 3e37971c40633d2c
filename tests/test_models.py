"""The ablation network family: the K/R asked for is the K/R every block has, by its attributes and by
kr_report's structural reading of the built network; budgets are met as closely as whole K and R allow."""
from __future__ import annotations

import math

import pytest
import torch

from kr_lib.blocks import Block
from kr_lib.data import DatasetInfo, dataset_info
from kr_lib.models import as_fraction, build_model, count_parameters
from kr_lib.redundancy import kr_report

KR_GRID = ["1/4", 0.5, 1, 2, 4, 8]
DESIGNS_2D = ["bottleneck", "resnext", "inverted_residual", "separable"]
# a small 2D input so that the structural trace of kr_report stays quick
SMALL = DatasetInfo("synthetic_small", 10, (1, 12, 12), (0.5,), (0.25,))
SMALL_VIDEO = DatasetInfo("synthetic_small_video", 7, (1, 4, 12, 12), (0.5,), (0.25,))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def blocks_of(model):
    return [m for m in model.modules() if isinstance(m, Block)]


def base_R(design, kr):
    return 8 * as_fraction(kr).denominator if design != "resnext" else 16 * as_fraction(kr).denominator


@pytest.mark.parametrize("design", DESIGNS_2D)
def test_every_block_has_the_asked_kr_at_fixed_R(design):
    for kr in KR_GRID:
        R = base_R(design, kr)
        model = build_model(SMALL, design, kr, R=R, stages=3, blocks_per_stage=2)
        blocks = blocks_of(model)
        assert len(blocks) == 6
        assert [b.R for b in blocks] == [R, R, 2 * R, 2 * R, 4 * R, 4 * R]
        assert all(b.kr_ratio == pytest.approx(float(as_fraction(kr))) for b in blocks)
        assert model.spec["R"] == R and model.spec["K"] == as_fraction(kr) * R
        out = model(torch.randn(3, *SMALL.input_shape))
        assert out.shape == (3, 10) and torch.isfinite(out).all()


def test_kr_report_agrees_with_the_asked_kr():
    for design, kr in [(d, kr) for d in DESIGNS_2D for kr in KR_GRID]:
        model = build_model(SMALL, design, kr, R=base_R(design, kr))
        report = kr_report(model, torch.randn(2, *SMALL.input_shape))
        assert len(report) == 3, (design, kr)
        assert report["K/R"].tolist() == pytest.approx([float(as_fraction(kr))] * 3), (design, kr)
        assert report["K"].tolist() == model.spec["stage_K"] and report["R"].tolist() == model.spec["stage_R"]
        assert set(report["design"]) == {design}, (design, kr, set(report["design"]))
    dense = kr_report(build_model(SMALL, "basic", 1, R=8), torch.randn(2, *SMALL.input_shape))
    assert dense["K/R"].tolist() == [1.0, 1.0, 1.0] and set(dense["design"]) == {"dense"}


@pytest.mark.parametrize("design,kr", [("r2plus1d", 2), ("r2plus1d", "1/2"), ("dense", 1), ("bottleneck", 4),
                                       ("separable", 8)])
def test_3d_networks_for_video(design, kr):
    model = build_model(SMALL_VIDEO, design, kr, R=4 * as_fraction(kr).denominator)
    x = torch.randn(2, *SMALL_VIDEO.input_shape)
    assert model(x).shape == (2, 7)
    assert all(isinstance(m, torch.nn.Conv3d) for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd))
    report = kr_report(model, x)
    assert report["K/R"].tolist() == pytest.approx([float(as_fraction(kr))] * 3)


def test_video_strides_never_shrink_a_mode_below_one():
    info = DatasetInfo("synthetic_video", 5, (1, 2, 16, 16), (0.5,), (0.25,))
    model = build_model(info, "r2plus1d", 1, R=4, stages=4)
    strides = [blocks[0].stride for blocks in model.stages]
    assert strides == [(1, 1, 1), (2, 2, 2), (1, 2, 2), (1, 2, 2)]
    assert model(torch.randn(1, 1, 2, 16, 16)).shape == (1, 5)


@pytest.mark.parametrize("design", ["bottleneck", "inverted_residual", "resnext"])
def test_parameter_budget_is_met_as_closely_as_whole_K_and_R_allow(design):
    budget = 60_000
    for kr in ("1/2", 2, 4):
        model = build_model(SMALL, design, kr, param_budget=budget, budget_tolerance=0.5)
        n = count_parameters(model)
        assert n == model.spec["parameters"] == sum(p.numel() for p in model.parameters())
        assert model.spec["budget_error"] == pytest.approx(n / budget - 1)
        assert all(b.kr_ratio == pytest.approx(float(as_fraction(kr))) for b in blocks_of(model))
        # no neighbouring admissible R (K/R exact; resnext: a multiple of its group width 4) is closer
        unit = as_fraction(kr).denominator
        unit = unit if design != "resnext" else math.lcm(unit, 4)
        for R in (model.spec["R"] - unit, model.spec["R"] + unit):
            if R < 1 or (design == "resnext" and R < 8):
                continue
            other = count_parameters(build_model(SMALL, design, kr, R=R))
            assert abs(other - budget) >= abs(n - budget), (design, kr, R, other, n)


def test_fixed_K_and_dataset_names():
    model = build_model("cifar10", "inverted_residual", "1/4", K=8)
    assert model.spec["R"] == 32 and model.spec["input_shape"] == [3, 32, 32]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    video = build_model(dataset_info("moving_fashion_mnist", frames=4, canvas=32), "r2plus1d", 2, R=4)
    assert video(torch.randn(1, 1, 4, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("kwargs,match", [
    (dict(design="dense", kr_ratio=2, R=8), "only K/R = 1"),
    (dict(design="r2plus1d", kr_ratio=1, R=8), "video"),
    (dict(design="bottleneck", kr_ratio="1/4", R=6), "multiple of 4"),
    (dict(design="bottleneck", kr_ratio=1, R=8, param_budget=1000), "exactly one"),
    (dict(design="bottleneck", kr_ratio=1), "exactly one"),
    (dict(design="mobilenet", kr_ratio=1, R=8), "unknown design"),
    (dict(design="bottleneck", kr_ratio=-1, R=8), "positive"),
    (dict(design="resnext", kr_ratio=1, R=4), "2 groups"),
    (dict(design="bottleneck", kr_ratio=8, param_budget=50), "cannot come within"),
])
def test_bad_requests_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(SMALL, **kwargs)
