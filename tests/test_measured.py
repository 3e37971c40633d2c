"""Measured redundancy (kr_lib.measured): streaming spectrum, rank controls, pruning test, kr measure, verdicts."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from kr_lib.blocks import make_block
from kr_lib.cli import main
from kr_lib.data import load_splits
from kr_lib.data.base import DatasetInfo, TensorData
from kr_lib.measured import (StreamingCovariance, components, effective_rank, linear_control, measure_record,
                             measure_redundancy, numerical_rank, records_with_weights, stable_rank)
from kr_lib.measured.measure import _pruned_dimension
from kr_lib.measured.pruning import PrunedOutputs, magnitude_order, principal_directions, rank_grid, torch_pruning_available
from kr_lib.measured.verdict import design_verdicts, rule_text, verdict_sentences
from kr_lib.models import build_model
from kr_lib.runs.weights import MissingWeights



@pytest.fixture(scope="module")
def data():
    return load_splits("fashion_mnist", train_limit=256, test_limit=256)


def _synthetic_split(channels=4, n=64, size=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    info = DatasetInfo("synthetic", 2, (channels, size, size), mean=(0.5,) * channels, std=(0.25,) * channels)
    return TensorData(torch.rand(n, channels, size, size, generator=g), torch.randint(0, 2, (n,), generator=g), info)


# -- the spectrum ------------------------------------------------------------------------------------------------

def test_streaming_covariance_equals_the_direct_computation():
    g = torch.Generator().manual_seed(1)
    a = 5.0 + torch.randn(37, 6, 3, 4, generator=g, dtype=torch.float64) * torch.arange(1, 7).view(1, 6, 1, 1)
    acc = StreamingCovariance(6)
    for chunk in torch.split(a, [1, 10, 26]):  # uneven batches, the first of one sample
        acc.update(chunk.float())
    direct = a.float().double().movedim(1, -1).reshape(-1, 6).numpy()
    assert acc.count == 37 * 12
    np.testing.assert_allclose(acc.mean().numpy(), direct.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(acc.covariance().numpy(), np.cov(direct, rowvar=False), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"expected activations \(n, 6"):
        acc.update(torch.zeros(2, 5, 3))


def test_spectrum_numbers_on_known_spectra():
    assert effective_rank([2.0, 2.0, 2.0, 0.0]) == pytest.approx(3.0)
    assert effective_rank([1.0, 0.0]) == pytest.approx(1.0)
    assert 1.0 < effective_rank([3.0, 1.0]) < 2.0
    assert components([90.0, 8.0, 1.5, 0.5], 0.99) == 3 and components([90.0, 8.0, 1.5, 0.5], 0.999) == 4
    assert components([90.0, 9.0, 0.9, 0.1], 0.99) == 2  # 99 % reached exactly counts
    assert components([1.0, 0.0, 0.0], 0.99) == 1
    assert stable_rank([2.0, 2.0, 1.0]) == pytest.approx(9 / 4)
    assert numerical_rank([1.0, 1e-3, 1e-9]) == 2


# -- rank controls -----------------------------------------------------------------------------------------------

def _assert_projection_rank_at_most_R(table):
    for row in table.to_dict(orient="records"):
        lam = row["projection eigenvalues"]
        assert 1 <= row["projection numerical rank"] <= row["R"], row["block"]
        if row["K"] > row["R"]:
            assert lam[row["R"]] <= 1e-9 * lam[0], row["block"]  # what lies outside the span: rounding only


def test_the_projection_output_has_rank_at_most_R_in_a_trained_network(tiny_run, data):
    table = measure_redundancy(tiny_run.model, data[0], prune=False, progress=False)
    assert list(table["block"]) == list(tiny_run.report["block"]) and (table["K"] > table["R"]).all()
    _assert_projection_rank_at_most_R(table)


@pytest.mark.parametrize("design", ["bottleneck", "resnext", "inverted_residual", "separable"])
def test_the_projection_output_has_rank_at_most_R_in_random_networks(design, data):
    torch.manual_seed(0)
    model = build_model("fashion_mnist", design, 2, R=8, stages=2, stem_stride=2).eval()
    table = measure_redundancy(model, data[0], prune=False, progress=False)
    _assert_projection_rank_at_most_R(table)
    # the block's output, after the shortcut and the ReLU, is not bounded by R: the control is not vacuous
    assert (table["numerical rank"] > table["R"]).all()


@pytest.mark.parametrize("design", ["bottleneck", "resnext", "inverted_residual", "separable"])
def test_a_linear_block_without_shortcut_has_output_rank_at_most_R(design):
    split = _synthetic_split(channels=4)  # 9 P = 36 > R: the rank is R's, not the input's
    extra = {"groups": 2} if design == "resnext" else {}
    linear = make_block(design, 4, 32, 8, linear=True, **extra)
    row = measure_redundancy(linear, split, prune=False, progress=False).iloc[0]
    assert row["numerical rank"] == 8 and row["eigenvalues"][8] <= 1e-9 * row["eigenvalues"][0]
    relu = make_block(design, 4, 32, 8, linear=False, **extra).eval()
    assert measure_redundancy(relu, split, prune=False, progress=False).iloc[0]["numerical rank"] > 8


def test_the_linear_control_on_real_images(data):
    table = linear_control(data[0], K=32, R=8)
    assert set(table["design"]) == {"bottleneck", "resnext", "inverted_residual", "separable"}
    assert (table["numerical rank"] <= 8).all() and (table["numerical rank"] >= 1).all()


# -- the pruning test --------------------------------------------------------------------------------------------

def test_rank_grid_holds_R_and_half_K_and_goes_down_to_one():
    assert rank_grid(64, 16) == [32, 16, 8, 4, 2, 1]
    assert rank_grid(24, 6) == [12, 6, 3, 1]  # K halved: 12, 6, 3, 1; R = 6 and R/2 = 3 among them
    assert rank_grid(28, 8) == [14, 8, 7, 4, 3, 1]  # R = 8 and R/2 = 4 added to the halvings of K
    assert rank_grid(16, 64) == [8, 4, 2, 1]  # K/R < 1: R is not below K
    assert rank_grid(1, 1) == [1]


def test_projection_onto_all_K_directions_keeps_the_logits(tiny_run, data):
    model, x = tiny_run.model.eval(), None
    from kr_lib.data.augment import prepare_batch

    x = prepare_batch(data[1].x[:64], data[1].info)
    block = model.stages[0][0]
    acc = StreamingCovariance(block.K)
    handle = block.register_forward_hook(lambda m, a, o: acc.update(o))
    with torch.no_grad():
        model(prepare_batch(data[0].x, data[0].info))
    handle.remove()
    mu, U = principal_directions(acc.mean(), acc.covariance())
    hook = PrunedOutputs(mu, U, [block.K, 1], keep_channels=[range(block.K)])
    with torch.no_grad():
        plain = model(x)
        handle = block.register_forward_hook(hook)
        pruned = model(x)
        handle.remove()
    full, one, all_channels = pruned.split(64)
    torch.testing.assert_close(full, plain, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(all_channels, plain, rtol=0, atol=0)
    assert not torch.allclose(one, plain, atol=1e-3)


@pytest.mark.parametrize("shape", [(6, 8, 5, 7), (3, 8, 2, 4, 5)])
def test_channels_last_activations_give_the_same_covariance_and_projections(shape):
    # the pruning test's passes run channels-last (measure._pruning_copy): the layout must not change a number
    g = torch.Generator().manual_seed(1)
    y = torch.randn(*shape, generator=g) * torch.linspace(0.1, 3, shape[1]).view(1, -1, *[1] * (len(shape) - 2))
    fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
    y_last = y.contiguous(memory_format=fmt)
    plain, last = StreamingCovariance(shape[1]), StreamingCovariance(shape[1])
    for part, part_last in zip(y.split(2), y_last.split(2)):
        plain.update(part)
        last.update(part_last)
    assert plain.count == last.count == y.numel() // shape[1]
    torch.testing.assert_close(last.covariance(), plain.covariance(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last.mean(), plain.mean(), rtol=1e-12, atol=1e-12)
    mu, U = principal_directions(plain.mean(), plain.covariance())
    hook = PrunedOutputs(mu, U, [8, 3, 1], keep_channels=[[0, 5]])
    a, b = hook.project(y), hook.project(y_last)
    assert b.is_contiguous(memory_format=fmt) and a.shape == b.shape == (4 * shape[0], *shape[1:])
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a[:shape[0]], y, rtol=1e-4, atol=1e-4)  # r = K: the identity


def test_the_pruning_copy_folds_batchnorm_keeps_paths_and_outputs_and_leaves_the_model(tiny_run, data):
    from kr_lib.data.augment import prepare_batch
    from kr_lib.measured.measure import _pruning_copy

    model = tiny_run.model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = _pruning_copy(model, torch.channels_last)
    bns = lambda m: [n for n, x in m.named_modules() if isinstance(x, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns(model) and not bns(fast)  # every BatchNorm of the tiny network follows a conv
    block = model.stages[0][0]
    path = next(n for n, m in model.named_modules() if m is block)
    assert type(fast.get_submodule(path)) is type(block)
    x = prepare_batch(data[1].x[:64], data[1].info)
    with torch.no_grad():
        torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), model(x), rtol=1e-4, atol=1e-4)
    assert bns(model) and all(p.is_contiguous() for p in model.parameters())  # the model is untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_pruning_gives_the_same_accuracies_in_either_layout(tiny_run, data):
    fast = measure_redundancy(tiny_run.model, data, progress=False)
    plain = measure_redundancy(tiny_run.model, data, progress=False, channels_last=False)
    for a, b in zip(fast["pruned accuracy"], plain["pruned accuracy"]):
        assert a.keys() == b.keys()
        np.testing.assert_allclose(list(a.values()), list(b.values()), atol=2 / 256)  # a sample or two may flip
    assert (fast["accuracy"] == plain["accuracy"]).all()  # the unpruned accuracy: the model as trained


def test_pruning_at_r_equal_K_keeps_the_accuracy(tiny_run, data):
    table = measure_redundancy(tiny_run.model, data, ranks=[8], progress=False)  # block 0 has K = 8
    first = table.iloc[0]
    assert first["K"] == 8 and first["pruned accuracy"][8] == first["accuracy"]
    assert first["accuracy"] == tiny_run.record["metrics"]["test_accuracy"]


def test_measure_record_reads_the_saved_network(tiny_run):
    table = measure_record(tiny_run.path, fit_limit=256, test_limit=256, progress=False)
    assert (table["run_id"] == tiny_run.record["run_id"]).all() and len(table) == 2
    assert (table["accuracy"] == tiny_run.record["metrics"]["test_accuracy"]).all()
    for row in table.to_dict(orient="records"):
        assert row["ranks"] == rank_grid(row["K"], row["R"])
        assert set(row["pruned accuracy"]) == set(row["ranks"])
        assert row["accuracy at R"] == row["pruned accuracy"][row["R"]]
        assert row["drop at R"] == pytest.approx(100 * (row["accuracy"] - row["accuracy at R"]))
        assert 1 <= row["pruned dimension"] <= row["K"]
        assert len(row["eigenvalues"]) == row["K"] and len(row["kernel singular values"]) == row["R"]
        assert row["effective rank"] <= row["K"] and row["components 99%"] <= row["components 99.9%"] <= row["K"]
    if torch_pruning_available():
        assert table["magnitude pruning accuracy at R"].between(0, 1).all()
        assert table.attrs["torch_pruning"]


def test_pruned_dimension_is_the_smallest_r_below_which_nothing_larger_costs():
    assert _pruned_dimension({4: 0.1, 2: 0.6, 1: 0.2}, 8, 0.5) == 4
    assert _pruned_dimension({4: 0.7, 2: 0.1}, 8, 0.5) == 8
    assert _pruned_dimension({4: 0.1, 2: 0.1, 1: 0.4}, 8, 0.5) == 1


@pytest.mark.skipif(not torch_pruning_available(), reason="Torch-Pruning is optional (pip install torch-pruning)")
def test_magnitude_order_is_a_permutation_of_the_channels_and_leaves_the_model(tiny_run):
    before = {k: v.clone() for k, v in tiny_run.model.state_dict().items()}
    order = magnitude_order(tiny_run.model, "stages.1.0.body.6", torch.zeros(1, 1, 28, 28))
    assert sorted(order) == list(range(16))
    assert all(torch.equal(before[k], v) for k, v in tiny_run.model.state_dict().items())


# -- errors ------------------------------------------------------------------------------------------------------

def test_bad_input_is_refused_before_any_work(tiny_run, data, tmp_path):
    with pytest.raises(ValueError, match="r = 9 is larger than K = 8 of block stages.0.0"):
        measure_redundancy(tiny_run.model, data, ranks=[9, 2], progress=False)
    with pytest.raises(ValueError, match="positive whole numbers"):
        measure_redundancy(tiny_run.model, data, ranks=[0], progress=False)
    with pytest.raises(ValueError, match=r"needs \(train, test\)"):
        measure_redundancy(tiny_run.model, data[0], progress=False)
    with pytest.raises(ValueError, match="is a fashion_mnist record, not svhn"):
        measure_record(tiny_run.path, dataset="svhn")
    old = tmp_path / tiny_run.path.name
    old.write_text(json.dumps({k: v for k, v in tiny_run.record.items() if k != "weights"}))
    with pytest.raises(MissingWeights, match="kr reproduce .* --save-weights"):
        measure_record(old)
    assert records_with_weights(tmp_path) == ([], [old])
    assert records_with_weights(tiny_run.path.parent)[0] == [tiny_run.path]


def test_kr_measure_prints_the_table_and_writes_the_csv(tiny_run, tmp_path, capsys):
    csv = tmp_path / "out" / "measured.csv"
    assert main(["measure", str(tiny_run.path), "--fit-limit", "256", "--test-limit", "256", "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "effective rank" in out and "accuracy at R/2" in out and "stages.1.0" in out
    table = pd.read_csv(csv)
    assert len(table) == 2 and len(table["eigenvalues"][0].split()) == 8
    assert not list(csv.parent.glob(".*partial"))


def test_kr_measure_errors_are_one_line(tiny_run, tmp_path, capsys):
    assert main(["measure", str(tiny_run.path), "--ranks", "99"]) == 2
    assert "larger than K" in capsys.readouterr().err
    assert main(["measure", str(tiny_run.path), "--dataset", "svhn"]) == 2
    assert "not svhn" in capsys.readouterr().err
    old = tmp_path / "fashion_mnist" / tiny_run.path.name
    old.parent.mkdir()
    old.write_text(json.dumps({k: v for k, v in tiny_run.record.items() if k != "weights"}))
    assert main(["measure", "fashion_mnist", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no completed record" in err and "kr reproduce" in err and "--save-weights" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["measure", "no_such_thing"]) == 2
    assert "neither a record file" in capsys.readouterr().err


# -- the verdict -------------------------------------------------------------------------------------------------

def _verdict_table():
    rows = []
    for design, kr, drop_R, drop_K2, K, rstar in [
            ("bottleneck", 2, 0.1, 0.0, 32, 8), ("bottleneck", 4, 0.3, 0.0, 64, 8), ("bottleneck", 1, 0.0, 2.0, 16, 16),
            ("bottleneck", 0.5, 0.0, 1.5, 8, 8), ("separable", 4, 3.0, 0.0, 64, 64), ("separable", 2, 0.2, 0.0, 32, 8),
            ("dense", 1, 0.0, 0.2, 16, 4)]:
        rows.append({"run_id": f"{design}-{kr}", "block": "stages.0.0", "design": design, "K": K, "K/R": kr,
                     "drop at R": drop_R, "drop at K/2": drop_K2, "pruned dimension": rstar})
    return pd.DataFrame(rows)


def test_verdicts_follow_the_stated_rule():
    v = design_verdicts(_verdict_table()).set_index("design")
    assert v.loc["bottleneck", "claim"] == "holds" and v.loc["bottleneck", "trend"] == "rises"
    assert v.loc["bottleneck", "spearman rho"] > 0.9  # K/r* = 1, 1, 4, 8 against K/R = 0.5, 1, 2, 4 (one tie)
    assert v.loc["separable", "claim"] == "partly" and v.loc["separable", "worst drop at R"] == 3.0
    assert v.loc["dense", "claim"] == "cannot tell" and v.loc["dense", "redundant at K/2"] == 1
    assert v.loc["separable", "trend"] == "cannot tell"  # two blocks: too few for a trend
    sentences = verdict_sentences(_verdict_table())
    assert len(sentences) == 3
    text = dict(zip(["bottleneck", "dense", "separable"], sentences))
    assert "the claim holds" in text["bottleneck"] and "no output redundancy, as K/R says" in text["bottleneck"]
    assert "holds only in part: 1 of the 2 blocks" in text["separable"] and "3.00 points" in text["separable"]
    assert "data cannot tell" in text["dense"] and "redundancy that K/R does not count" in text["dense"]
    assert "0.5 points" in rule_text() and "Spearman" in rule_text()
    with pytest.raises(ValueError, match="lacks"):
        design_verdicts(pd.DataFrame({"design": ["x"]}))
    # the variance view: 99 % components against R, for the blocks with K/R > 1
    table = _verdict_table().assign(R=lambda t: (t["K"] / t["K/R"]).astype(int),
                                    **{"components 99%": [20, 12, 16, 8, 60, 10, 16]})
    v = design_verdicts(table).set_index("design")
    assert v.loc["bottleneck", "99% within R"] == 1 and v.loc["bottleneck", "median 99% / R"] == pytest.approx(1.0)
    assert "by variance, 1 of them has its 99 % components within R (median 1.00 R)" in verdict_sentences(table)[0]


# -- the page's words ----------------------------------------------------------------------------------------------

def test_page_texts_name_what_was_measured_and_the_command_that_makes_weights(tiny_run, tmp_path):
    from kr_lib.measured.page import control_text, find_measurable, no_weights_text, records_text

    found = find_measurable(["fashion_mnist"], results_dir=tiny_run.path.parent.parent)
    assert found == {"fashion_mnist": ([tiny_run.path], [])}
    assert "**1 trained network**" in records_text(found) and "1 bottleneck" in records_text(found)
    assert "trained one tiny network itself" in records_text(found, trained_here=True)
    old = tmp_path / "fashion_mnist" / tiny_run.path.name
    old.parent.mkdir()
    old.write_text(json.dumps({k: v for k, v in tiny_run.record.items() if k != "weights"}))
    empty = find_measurable(["fashion_mnist"], results_dir=tmp_path)
    assert empty == {"fashion_mnist": ([], [old])}
    assert "No record of fashion_mnist has saved weights" in no_weights_text(empty)
    assert "--save-weights" in no_weights_text(empty)
    with pytest.raises(ValueError, match="unknown dataset"):
        find_measurable(["mnist"])
    good = pd.DataFrame({"R": [4, 8], "projection numerical rank": [4, 7]})
    assert control_text(good).startswith("**Control.** In all 2 blocks")
    assert "FAILED" in control_text(good.assign(**{"projection numerical rank": [5, 7]}))
