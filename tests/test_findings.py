"""kr_lib.runs.findings / evidence / downloads: the findings of the results pages, checked by hand and against
statsmodels and scipy, on synthetic records (made-up accuracies; no training)."""
import base64
import copy
import functools
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.weightstats import DescrStatsW

sys.path.insert(0, str(Path(__file__).parent))
from runs_helpers import synthetic_record  # noqa: E402

from kr_lib.runs.downloads import csv_download_html, runs_csv_table  # noqa: E402
from kr_lib.runs.evidence import CLAIMS, evidence, evidence_markdown, evidence_table, not_run_commands  # noqa: E402
from kr_lib.runs.findings import (  # noqa: E402
    REGRESSION_FORMULA, budget_distance_table, budget_distances, design_sentences, design_verdicts, effects_display,
    family_sentence, family_verdicts, findings, kr_regression, noise_floor, noise_floor_text, paired_kr_effects, regression_sentence,
    regression_span_effect, size_predictors, size_sentence, t_interval, verdict,
)
from kr_lib.runs.identity import run_id, scientific  # noqa: E402
from kr_lib.runs.records import records_table, write_record  # noqa: E402

BUDGET = 29146


@functools.lru_cache(maxsize=None)
def _base(design: str, kr: str) -> dict:
    # check_parameters solves the budget (about a second): once per configuration, copied for each seed
    return synthetic_record(0.5, design=design, kr_ratio=kr, R=None, param_budget=BUDGET, seed=0)


def budget_record(accuracy: float, design: str, kr: str, seed: int, parameters: int = 29000, df: int | None = None,
                  budget_error: float | None = None) -> dict:
    """A completed fixed-budget record with the given accuracy, seed and size."""
    rec = copy.deepcopy(_base(design, kr))
    rec["parameters"]["seed"] = seed
    rec["run_id"] = f"{design}-kr{kr.replace('/', 'over')}-budget{BUDGET}-seed{seed}-p{parameters}"
    rec["metrics"].update(test_accuracy=accuracy, best_test_accuracy=accuracy, train_accuracy=accuracy)
    rec["model"].update(parameters=parameters, budget_error=budget_error)
    rec["network"].update(total_parameters=parameters, naive_count=parameters, df=df or parameters // 2)
    return rec


def design_records(design: str, ref: list[float], at4: list[float]) -> list[dict]:
    """K/R = 1 and K/R = 4 at a fixed budget, one record per seed and K/R; the size varies with the seed only,
    so that K/R and size can be told apart (and the regression's K/R effect is the mean paired difference)."""
    size = (29000, 29100, 29050, 29020, 29080)
    return ([budget_record(a, design, "1", s, parameters=size[s]) for s, a in enumerate(ref)]
            + [budget_record(a, design, "4", s, parameters=size[s]) for s, a in enumerate(at4)])


# -- intervals ---------------------------------------------------------------------------------------------

def test_t_interval_by_hand_and_against_statsmodels():
    out = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 df) * sd 1 / sqrt(n)
    assert out["mean"] == 2.0 and out["n"] == 3 and out["method"] == "t over seeds (2 df)"
    assert math.isclose(out["low"], 2 - half, rel_tol=1e-9) and math.isclose(out["high"], 2 + half, rel_tol=1e-9)
    values = np.random.default_rng(1).normal(0.01, 0.004, size=5)
    low, high = DescrStatsW(values).tconfint_mean(alpha=0.05)
    scipy_low, scipy_high = stats.t.interval(0.95, 4, loc=values.mean(), scale=stats.sem(values))
    out = t_interval(values)
    assert math.isclose(out["low"], low) and math.isclose(out["high"], high)
    assert math.isclose(out["low"], scipy_low) and math.isclose(out["high"], scipy_high)


def test_one_seed_says_the_interval_cannot_be_computed():
    out = t_interval([0.01])
    assert out["low"] is None and out["high"] is None
    assert out["reason"] == "1 seed pair: an interval over seeds needs 2 or more"
    records = design_records("bottleneck", [0.90], [0.88])
    effects = paired_kr_effects(records_table(records))
    assert len(effects) == 1 and effects.iloc[0]["n"] == 1 and math.isclose(effects.iloc[0]["mean"], -0.02)
    assert pd.isna(effects.iloc[0]["low"]) and effects.iloc[0]["reason"].startswith("1 seed pair")
    shown = effects_display(design_verdicts(effects, None)["effects"].iloc[0].assign(verdict="inconclusive"))
    assert shown.iloc[0]["interval"].startswith("cannot be computed") and "nan" not in shown.iloc[0]["interval"]
    sentence = design_sentences(effects, None)[0]
    assert "inconclusive" in sentence and "cannot be computed" in sentence and "nan" not in sentence
    fit = kr_regression(records_table(records))
    assert fit["coefficient"] is None and "no degrees of freedom left" in fit["reason"]
    same_size = [budget_record(a, "bottleneck", kr, s) for s, a in enumerate([0.9, 0.91, 0.92]) for kr in ("1", "4")]
    fit = kr_regression(records_table(same_size))
    assert fit["coefficient"] is None and "rank-deficient" in fit["reason"]


def test_identical_seed_differences_give_no_interval_and_no_verdict():
    # seen on Moving Fashion-MNIST: two seeds of r2plus1d both lost exactly 9 of 2,000 test images from K/R = 1
    # to 4; their standard deviation, 0, estimates no spread, and an interval of width 0 would "support"
    out = t_interval([-0.0045, -0.0045])
    assert out["low"] is None and out["mean"] == -0.0045
    assert out["reason"] == "the 2 values are identical: their spread over seeds cannot be estimated"
    effects = paired_kr_effects(records_table(design_records("bottleneck", [0.8175, 0.8045], [0.8130, 0.8000])))
    assert design_verdicts(effects, None)["verdict"].tolist() == ["inconclusive"]
    assert "cannot be computed: the 2 values are identical" in design_sentences(effects, None)[0]
    assert t_interval([0.01, 0.01 + 1e-9])["low"] is not None  # a real, if small, spread is an estimate


def test_paired_effects_pair_by_seed():
    ref, at4 = [0.90, 0.91, 0.92], [0.87, 0.89, 0.88]
    records = design_records("resnext", ref, at4)
    records.append(budget_record(0.10, "resnext", "4", seed=7))  # no K/R = 1 run with seed 7: left out
    effects = paired_kr_effects(records_table(records))
    row = effects.iloc[0]
    diffs = [b - a for a, b in zip(ref, at4)]
    low, high = DescrStatsW(diffs).tconfint_mean(alpha=0.05)
    assert row["kr_fraction"] == "4" and row["seeds"] == [0, 1, 2] and row["n"] == 3
    assert math.isclose(row["mean"], np.mean(diffs))
    assert math.isclose(row["low"], low) and math.isclose(row["high"], high)


# -- regression ---------------------------------------------------------------------------------------------

def _regression_records(noise: float) -> list[dict]:
    rng = np.random.default_rng(3)
    records = []
    for design, offset in (("bottleneck", 0.0), ("separable", -0.02)):
        for kr, params in (("1/4", 27000), ("1", 29000), ("2", 31000), ("4", 25000)):
            for seed in range(3):
                size = params + 10 * seed
                acc = 0.5 + offset - 0.01 * math.log2(float(eval(kr))) + 0.03 * math.log(size) + rng.normal(0, noise)
                records.append(budget_record(acc, design, kr, seed, parameters=size))
    return records


def test_regression_recovers_a_hand_made_slope():
    fit = kr_regression(records_table(_regression_records(noise=0.0)))
    assert fit["n"] == 24 and math.isclose(fit["coefficient"], -0.01, abs_tol=1e-9)
    assert math.isclose(fit["r_squared"], 1.0, abs_tol=1e-9)


def test_regression_equals_statsmodels_own_fit():
    records = _regression_records(noise=0.004)
    frame = pd.DataFrame({"test_accuracy": [r["metrics"]["test_accuracy"] for r in records],
                          "design": [r["model"]["design"] for r in records],
                          "kr_ratio": [float(eval(r["model"]["kr_fraction"])) for r in records],
                          "parameters": [float(r["network"]["total_parameters"]) for r in records]})
    own = smf.ols(REGRESSION_FORMULA, data=frame).fit()
    fit = kr_regression(records_table(records))
    low, high = own.conf_int(alpha=0.05).loc["np.log2(kr_ratio)"]
    assert math.isclose(fit["coefficient"], own.params["np.log2(kr_ratio)"])
    assert math.isclose(fit["low"], low) and math.isclose(fit["high"], high)
    assert math.isclose(fit["r_squared"], own.rsquared) and fit["n"] == len(frame)
    above = kr_regression(records_table(records), min_kr=1)
    assert above["n"] == 18  # K/R = 1/4 left out


def test_regression_is_judged_over_its_span_not_per_doubling():
    """A slope of -0.01 per doubling over K/R 1..4 predicts -0.02 from K/R = 1 to 4: beyond a noise floor of
    0.015 that the per-doubling interval alone would not clear (the rule judges the span's contrast)."""
    fit = kr_regression(records_table(_regression_records(noise=0.0005)), min_kr=1)
    span = regression_span_effect(fit)
    assert (span["from"], span["to"], span["doublings"]) == (1.0, 4.0, 2.0)
    assert math.isclose(span["estimate"], 2 * fit["coefficient"]) and math.isclose(span["low"], 2 * fit["low"])
    assert span["high"] < -0.015 < fit["high"]  # the span clears the floor; one doubling does not
    assert verdict(fit["low"], fit["high"], 0.015) == "inconclusive"
    assert verdict(span["low"], span["high"], 0.015) == "supports"
    sentence = regression_sentence(fit, 0.015)
    assert "from K/R = 1 to 4" in sentence and sentence.endswith("supports by the rule.")
    assert regression_span_effect({"coefficient": None}) is None


# -- the verdict rule ----------------------------------------------------------------------------------------

def test_verdict_rule_with_noise_floor():
    assert verdict(-0.03, -0.01, 0.0024) == "supports"
    assert verdict(0.01, 0.03, 0.0024) == "contradicts"
    assert verdict(-0.01, 0.01, 0.0024) == "inconclusive"
    assert verdict(-0.003, -0.001, 0.0024) == "inconclusive"  # below 0 but within the noise floor
    assert verdict(-0.003, -0.001, None) == "supports"
    assert verdict(None, None, 0.0) == "inconclusive" and verdict(float("nan"), 0.1) == "inconclusive"


def test_verdicts_on_records_built_to_support_contradict_and_be_inconclusive():
    records = (design_records("bottleneck", [0.90, 0.91, 0.92], [0.85, 0.865, 0.87])     # falls: supports
               + design_records("resnext", [0.85, 0.86, 0.87], [0.90, 0.915, 0.92])      # rises: contradicts
               + design_records("separable", [0.90, 0.91, 0.92], [0.92, 0.89, 0.91]))    # mixed: inconclusive
    effects = paired_kr_effects(records_table(records))
    verdicts = dict(design_verdicts(effects, 0.0024)[["design", "verdict"]].values)
    assert verdicts == {"bottleneck": "supports", "resnext": "contradicts", "separable": "inconclusive"}
    sentences = design_sentences(effects, 0.0024)
    assert sentences[0].startswith("**bottleneck** supports the paper's prediction (decided at K/R = 4)")
    # differences -0.050, -0.045, -0.050: mean -0.0483, t(0.975, 2) 4.303 x sd 0.00289 / sqrt 3 = 0.0072
    assert "-0.0483 (95 % interval -0.0555 to -0.0412, 3 seed pairs)" in sentences[0]
    assert sentences[1].startswith("**resnext** contradicts")
    assert sentences[2].startswith("**separable** is inconclusive")
    # the same effects below the noise floor are inconclusive
    tiny = (design_records("bottleneck", [0.9000, 0.9100, 0.9200], [0.8990, 0.9089, 0.9191]))
    assert design_verdicts(paired_kr_effects(records_table(tiny)), 0.0024)["verdict"].tolist() == ["inconclusive"]


def test_bonferroni_check_widens_each_deciding_interval_to_the_family_level():
    # two designs: each deciding interval at 1 - 0.05/2 = 97.5 %; bottleneck's effect is clear at 95 % and not at
    # 97.5 % (differences -0.010, -0.0075, -0.005: t interval at 95 % -0.0137 to -0.0013, at 97.5 % -0.0165 to +0.0015)
    records = (design_records("bottleneck", [0.900, 0.900, 0.900], [0.890, 0.8925, 0.895])
               + design_records("resnext", [0.90, 0.91, 0.92], [0.85, 0.865, 0.87]))
    effects = paired_kr_effects(records_table(records))
    family = family_verdicts(effects, 0.0)
    assert family["m"].tolist() == [2, 2] and family["level"].tolist() == pytest.approx([0.975, 0.975])
    diffs = np.array([-0.010, -0.0075, -0.005])
    half = stats.t.ppf(1 - 0.025 / 2, 2) * diffs.std(ddof=1) / math.sqrt(3)  # by hand
    b = family.set_index("design").loc["bottleneck"]
    assert b["low"] == pytest.approx(diffs.mean() - half) and b["high"] == pytest.approx(diffs.mean() + half)
    assert b["high"] > 0 > effects.query("design == 'bottleneck'")["high"].iloc[0]  # wider than the 95 % one
    assert (b["verdict"], b["family verdict"]) == ("supports", "inconclusive")
    assert family.set_index("design").loc["resnext", "family verdict"] == "supports"
    sentence = family_sentence(family)
    assert "Bonferroni level 97.50 %" in sentence and "bottleneck (supports -> inconclusive)" in sentence
    one = family_verdicts(paired_kr_effects(records_table(design_records("resnext", [0.9] * 3, [0.8] * 3))), 0.0)
    assert one["level"].tolist() == [0.95] and "no correction applies" in family_sentence(one)
    single_seed = family_verdicts(paired_kr_effects(records_table(design_records("resnext", [0.9], [0.8]))), 0.0)
    assert single_seed["family verdict"].tolist() == ["inconclusive"]
    assert "1 seed pair: an interval over seeds needs 2 or more" in family_sentence(
        pd.concat([single_seed.assign(m=2, level=0.975), single_seed.assign(m=2, level=0.975, design="x")]))


def test_noise_floor_from_runs_of_one_network():
    fixed = synthetic_record(0.8, design="bottleneck", kr_ratio="1", R=8, seed=0)
    twin = copy.deepcopy(fixed)
    twin.update(run_id=fixed["run_id"] + "-again", mode="budget")
    twin["metrics"]["test_accuracy"] = 0.8025
    fixed["timing"]["torch_threads"], twin["timing"]["torch_threads"] = 1, 2
    floor = noise_floor([fixed, twin])
    assert floor["pairs"] == 1 and math.isclose(floor["floor"], 0.0025)
    assert "Noise floor $f$ = 0.0025" in noise_floor_text(floor)
    none = noise_floor([fixed])
    assert none["floor"] is None and noise_floor_text(none).startswith("Noise floor: not measured")


# -- df against the naive count --------------------------------------------------------------------------------

def test_size_predictors_tell_df_from_naive_count():
    rng = np.random.default_rng(0)
    records = []
    for i in range(30):
        df, naive = 1000 + 100 * i, int(rng.integers(20_000, 40_000))
        records.append(budget_record(0.6 + 0.01 * i + rng.normal(0, 0.002), "bottleneck", "1", i,
                                     parameters=naive, df=df))
    out = size_predictors(records, resamples=300)
    acc = [r["metrics"]["test_accuracy"] for r in records]
    expected = stats.spearmanr(acc, [r["network"]["df"] for r in records]).statistic
    assert math.isclose(out["spearman_df"]["estimate"], expected) and out["n"] == 30
    assert out["better"] == "df" and out["difference"]["low"] > 0
    assert out["fit_df"]["r_squared"] > out["fit_naive"]["r_squared"]
    assert out == size_predictors(records, resamples=300)  # seeded: the page prints the same interval
    assert size_sentence(out).startswith("The degrees of freedom predict the test accuracy better")
    # swap the roles: the naive count predicts
    for r in records:
        r["network"]["df"], r["network"]["naive_count"] = r["network"]["naive_count"], r["network"]["df"]
    assert size_predictors(records, resamples=300)["better"] == "naive count"
    few = size_predictors(records[:3])
    assert few["reason"] and size_sentence(few).startswith("Whether df or the naive count")


# -- budget distance, CSV ----------------------------------------------------------------------------------------

def test_budget_distance_is_read_from_the_record():
    records = [budget_record(0.9, "resnext", "4", 0, parameters=23010, budget_error=23010 / BUDGET - 1),
               budget_record(0.9, "resnext", "1", 0, parameters=32770)]  # no budget_error: recomputed
    d = budget_distances(records_table(records))
    assert math.isclose(d.set_index("kr_fraction").loc["4", "budget_error"], -0.2105, abs_tol=1e-4)
    assert math.isclose(d.set_index("kr_fraction").loc["1", "budget_error"], 32770 / BUDGET - 1)
    pivot = budget_distance_table(records_table(records))
    assert list(pivot.columns) == ["design", "K/R = 1", "K/R = 4"]


def test_runs_csv_has_every_parameter_and_metric_and_no_folder():
    records = design_records("bottleneck", [0.9, 0.91], [0.88, 0.89])
    table = runs_csv_table(records)
    assert len(table) == 4 and "metrics.test_accuracy" in table and "parameters.lr" in table and "network.df" in table
    assert "parameters.output_dir" not in table and "parameters.data_dir" not in table
    html = csv_download_html(records, "fashion_mnist_runs.csv")
    assert 'download="fashion_mnist_runs.csv"' in html
    payload = html.split("base64,", 1)[1].split('"', 1)[0]
    assert base64.b64decode(payload).decode() == table.to_csv(index=False)


# -- the summary page ----------------------------------------------------------------------------------------

def test_evidence_on_synthetic_records(tmp_path, monkeypatch):
    records = (design_records("bottleneck", [0.90, 0.91, 0.92], [0.85, 0.865, 0.87])
               + design_records("resnext", [0.90, 0.91, 0.92], [0.86, 0.87, 0.87]))
    for r in records:  # under the id their parameters give: a record whose id does not match them is corrupt
        write_record({**r, "run_id": run_id(scientific(r["parameters"]))}, tmp_path)
    cells = evidence(tmp_path, resamples=100)  # no record has saved weights: nothing measured
    by = {(c["claim"][:2], c["dataset"]): c for c in cells}
    assert len(cells) == len(CLAIMS) * 5
    kr = by[("4.", "fashion_mnist")]
    assert kr["verdict"] == "supports" and kr["estimate"] < 0 and "designs: 2 supports (2 supports with Bonferroni intervals over the 2)" in kr["text"]
    assert by[("4.", "cifar10")]["text"].startswith("not run here")
    assert by[("4.", "cifar10")]["command"] == "kr sweep sweeps/cifar10.yaml --preset paper --device cuda --download"
    assert by[("1.", "fashion_mnist")]["text"] == "not tested by the ablation runs"
    assert by[("5.", "fashion_mnist")]["text"] == "not measured yet on this dataset"
    assert by[("5.", "fashion_mnist")]["verdict"] is None
    assert "fashion_mnist" not in not_run_commands(tmp_path) and "svhn" in not_run_commands(tmp_path)
    table = evidence_table(cells)
    assert list(table.columns) == ["claim", "simulation", "Fashion-MNIST", "Moving Fashion-MNIST", "CIFAR-10", "SVHN",
                                   "UCF101"]
    assert len(table) == len(CLAIMS) and "**supports**" in evidence_markdown(cells)
    # the row is the measured-redundancy chapter's evidence (tests/test_measured_cache.py tests it on measurements)
    import kr_lib.measured.findings

    monkeypatch.setattr(kr_lib.measured.findings, "evidence",
                        lambda dataset, results_dir: {"verdict": "supports", "text": f"measured on {dataset}"})
    assert measured_row(evidence(tmp_path, resamples=100)) == "measured on fashion_mnist"


def measured_row(cells):
    return next(c["text"] for c in cells if c["claim"].startswith("5.") and c["dataset"] == "fashion_mnist")


def test_findings_bundle_on_synthetic_records():
    records = design_records("bottleneck", [0.90, 0.91, 0.92], [0.85, 0.865, 0.87])
    found = findings(records)
    assert set(found) >= {"effects", "floor", "sentences", "regression_all", "regression_above_1", "size", "distances"}
    assert found["effects"]["verdict"].tolist() == ["supports"] and len(found["sentences"]) == 1
