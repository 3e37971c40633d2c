"""The findings of a results page: effects of K/R with intervals, stated by a rule, computed from the records.

The paper's prediction that the ablation runs can test (the introduction's claim 4; book section 4, :ref:`sec-kr`): a
block with :math:`K/R > 1` spends parameters on :math:`K - R` output channels that add nothing learnable, so **at a
fixed parameter budget, accuracy falls as K/R grows above 1**. It predicts nothing for :math:`K/R < 1` (no
output-side redundancy there).
Claim 3 (sample complexity is the degrees of freedom, not the naive parameter count) is read on real data
as: across all runs, the df predicts the test accuracy better than the naive count.

    records, corrupt = read_records("results/fashion_mnist")
    table = records_table(records)
    floor = noise_floor(records)              # runs of one network on different thread counts
    effects = paired_kr_effects(table)        # per design and K/R: accuracy(K/R) - accuracy(K/R = 1), by seed
    fit = kr_regression(table, min_kr=1)      # accuracy ~ C(design) + log2(K/R) + log(parameters), statsmodels
    size = size_predictors(records)           # df against the naive count: Spearman, bootstrap, two OLS fits
    verdict(low, high, floor["floor"])        # "supports", "contradicts" or "inconclusive" (VERDICT_RULE)
    design_sentences(effects, floor["floor"]) # one generated sentence per design
    family_verdicts(effects, floor["floor"])  # the same verdicts with Bonferroni intervals over the designs
    budget_distances(table)                   # each budget run's relative distance from its budget

Every function takes what :func:`~kr_lib.runs.records.records_table` or
:func:`~kr_lib.runs.records.read_records` gives and returns numbers or a reason why there are none
(fewer than two seeds, too few runs): an interval is never printed from one observation.
"""
from __future__ import annotations

import warnings
from fractions import Fraction
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from .records import records_table, same_networks

#: The sign of the effect the paper predicts for K/R > 1 at a fixed budget (accuracy falls).
PAPER_DIRECTION = -1
#: Level of every interval on the pages.
LEVEL = 0.95
#: Resamples and seed of the bootstrap intervals (seeded: a rebuilt page prints the same interval).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0

VERDICT_RULE = (
    "**The rule.** The paper predicts that at a fixed parameter budget the test accuracy *falls* as $K/R$ grows "
    "above 1 (the $K - R$ extra output channels cost parameters and add nothing learnable; section 4 of the theory chapter, The K/R ratio); it "
    "predicts nothing for $K/R \\le 1$. An effect is the difference in test accuracy from $K/R = 1$, with its 95 % "
    "interval. Let $f$ be the noise floor: the largest accuracy difference between two runs of one network on "
    "different thread counts, measured on this page ($f = 0$ where no such pair exists). A finding **supports** "
    "the paper when its whole interval lies below $-f$, **contradicts** it when its whole interval lies above "
    "$+f$, and is **inconclusive** otherwise, or when the interval cannot be computed (fewer than two seeds). For "
    "a design, the effect at its largest $K/R$ above 1 decides; the effects at the other $K/R$ are reported beside "
    "it. The regression's $\\log_2(K/R)$ coefficient $\\beta$ on the runs with $K/R \\ge 1$ (the change per doubling of "
    "$K/R$ at equal design and parameter count) is judged by the same rule on the same contrast as the designs: "
    "the change it predicts from $K/R = 1$ to the largest $K/R$ of the runs, $\\beta \\log_2 \\max(K/R)$, with "
    "its interval scaled alike (a noise floor is a difference between two runs, not a rate per doubling)."
)

SIZE_RULE = (
    "**df against the naive count.** Across every completed run of the dataset (a network trained twice under "
    "two names counted once), the Spearman rank correlation of the test accuracy with the network's degrees of "
    "freedom and with its naive parameter count, each with a 95 % bootstrap interval (percentile, resampling "
    f"the runs, seed {BOOTSTRAP_SEED}; the number of resamples is given with the numbers). The df predicts better "
    "when the interval of the difference (df minus naive) lies above 0, the naive count when it lies below 0; "
    "otherwise the data cannot tell. The fits of accuracy ~ log df and accuracy ~ log naive count (OLS) are shown "
    "beside it."
)


def _kr(value) -> Fraction:
    return Fraction(str(value))


def _missing(value) -> bool:
    """None or NaN (a DataFrame stores a missing interval bound as NaN)."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def _completed(table: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame) or "status" not in table:
        raise TypeError("expected the DataFrame of kr_lib.runs.records_table")
    return table[table["status"] == "completed"]


def budget_runs(table: pd.DataFrame) -> pd.DataFrame:
    """The completed fixed-budget runs, with ``test_accuracy``, ``kr_ratio`` and ``parameters`` as floats."""
    done = _completed(table)
    runs = done[(done["mode"] == "budget") & (done["design"] != "dense")].copy()
    for col in ("test_accuracy", "kr_ratio", "parameters"):
        runs[col] = runs[col].astype(float)
    return runs


def t_interval(values: Iterable[float], level: float = LEVEL) -> dict:
    """Mean of ``values`` with its Student-t interval over them (statsmodels ``DescrStatsW.tconfint_mean``):
    ``{"mean", "low", "high", "n", "method", "reason"}``; ``low``/``high`` are None, and ``reason`` says why,
    when there are fewer than two values or when they are all equal (no estimate of their spread)."""
    from statsmodels.stats.weightstats import DescrStatsW

    values = np.asarray(list(values), dtype=float)
    out = {"mean": float(values.mean()) if len(values) else None, "low": None, "high": None, "n": len(values),
           "method": f"t over seeds ({len(values) - 1} df)" if len(values) > 1 else "t over seeds", "reason": None}
    if len(values) < 2:
        pairs = f"{len(values)} seed pair{'' if len(values) == 1 else 's'}"
        out["reason"] = f"{pairs}: an interval over seeds needs 2 or more"
        return out
    if np.ptp(values) <= 1e-12 * max(1.0, float(np.abs(values).max())):
        # identical values (two seeds can differ by the same count of test images): a standard deviation of 0
        # is not an estimate of the spread, and its interval of width 0 would decide any rule
        out["reason"] = f"the {len(values)} values are identical: their spread over seeds cannot be estimated"
        return out
    low, high = DescrStatsW(values).tconfint_mean(alpha=1 - level)
    out.update(low=float(low), high=float(high))
    return out


def paired_kr_effects(table: pd.DataFrame, reference: str = "1", level: float = LEVEL) -> pd.DataFrame:
    """At a fixed budget, per design and K/R value: the differences accuracy(K/R = v) - accuracy(K/R =
    ``reference``) of the runs with the same seed, their mean and t interval (:func:`t_interval`).

    One row per (design, K/R != reference): ``design, kr_fraction, kr_ratio, seeds`` (the paired seeds),
    ``differences`` (one a seed), ``mean, low, high, n, method, reason``. Empty when there are no budget runs."""
    runs = budget_runs(table)
    rows = []
    for design, sub in runs.groupby("design", sort=True):
        by_kr = {str(kr): g.groupby("seed")["test_accuracy"].mean() for kr, g in sub.groupby("kr_fraction")}
        ref = by_kr.get(reference)
        for kr in sorted(by_kr, key=_kr):
            if kr == reference:
                continue
            seeds = sorted(set(by_kr[kr].index) & set(ref.index)) if ref is not None else []
            diffs = [by_kr[kr][s] - ref[s] for s in seeds]
            stats = t_interval(diffs, level)
            if ref is None:
                stats["reason"] = f"no run at K/R = {reference} to pair with"
            rows.append({"design": design, "kr_fraction": kr, "kr_ratio": float(_kr(kr)), "seeds": seeds,
                         "differences": [float(d) for d in diffs], **stats})
    return pd.DataFrame(rows, columns=["design", "kr_fraction", "kr_ratio", "seeds", "differences", "mean", "low",
                                       "high", "n", "method", "reason"])


#: The regression of :func:`kr_regression` (patsy formula).
REGRESSION_FORMULA = "test_accuracy ~ C(design) + np.log2(kr_ratio) + np.log(parameters)"


def kr_regression(table: pd.DataFrame, min_kr: float | None = None, level: float = LEVEL) -> dict:
    """Across the fixed-budget runs (with K/R >= ``min_kr`` when given), the OLS fit (statsmodels) of
    :data:`REGRESSION_FORMULA`: the coefficient of log2(K/R) -- the change of test accuracy per doubling of
    K/R at equal design and equal parameter count -- with its t interval, n, R^2, and the fitted model.
    ``coefficient`` is None and ``reason`` says why when the fit has no residual degrees of freedom or K/R
    does not vary, or when size cannot be told apart from design and K/R (a rank-deficient design matrix)."""
    import statsmodels.formula.api as smf

    runs = budget_runs(table)
    if min_kr is not None:
        runs = runs[runs["kr_ratio"] >= min_kr]
    out = {"formula": REGRESSION_FORMULA, "min_kr": min_kr, "n": len(runs), "coefficient": None, "low": None,
           "high": None, "r_squared": None, "model": None, "reason": None}
    n_coef = runs["design"].nunique() + 2  # intercept + designs - 1 + log2(K/R) + log(parameters)
    if runs["kr_ratio"].nunique() < 2:
        out["reason"] = f"{runs['kr_ratio'].nunique()} K/R value(s) among {len(runs)} budget run(s): no slope to fit"
    elif len(runs) <= n_coef:
        out["reason"] = f"{len(runs)} budget run(s) for {n_coef} coefficients: no degrees of freedom left"
    if out["reason"]:
        return out
    model = smf.ols(REGRESSION_FORMULA, data=runs)
    if np.linalg.matrix_rank(model.exog) < model.exog.shape[1]:
        out["reason"] = ("the design matrix is rank-deficient (the parameter count is constant or a function of "
                         "design and K/R): K/R cannot be separated from size")
        return out
    fit = model.fit()
    name = "np.log2(kr_ratio)"
    low, high = fit.conf_int(alpha=1 - level).loc[name]
    out.update(coefficient=float(fit.params[name]), low=float(low), high=float(high), r_squared=float(fit.rsquared),
               df_resid=int(fit.df_resid), model=fit, kr_span=(float(runs["kr_ratio"].min()), float(runs["kr_ratio"].max())))
    return out


def regression_span_effect(fit: Mapping) -> dict | None:
    """The change of test accuracy a :func:`kr_regression` fit predicts across its K/R span, from the span's
    smallest K/R to its largest (``coefficient * log2(max / min)``, the interval scaled alike): the contrast
    :data:`VERDICT_RULE` judges, comparable with the designs' paired effects. None when there is no fit."""
    if fit["coefficient"] is None:
        return None
    lo_kr, hi_kr = fit["kr_span"]
    doublings = float(np.log2(hi_kr / lo_kr))
    return {"from": lo_kr, "to": hi_kr, "doublings": doublings, "estimate": fit["coefficient"] * doublings,
            "low": fit["low"] * doublings, "high": fit["high"] * doublings}


def distinct_networks(records: Iterable[Mapping]) -> list[Mapping]:
    """The completed records, a network trained twice under two names (:func:`same_networks`) kept once
    (the first of its group), so that a duplicated run does not count twice in a correlation."""
    records = [r for r in records if r.get("status") == "completed"]
    twins = same_networks(records)
    dropped = {rid for ids in twins["run_ids"] for rid in ids[1:]} if len(twins) else set()
    return [r for r in records if r["run_id"] not in dropped]


def size_predictors(records: Iterable[Mapping], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                    level: float = LEVEL) -> dict:
    """Does the network's df or its naive parameter count predict the test accuracy better, across all
    completed runs (:func:`distinct_networks`)? Spearman correlations of accuracy with df and with the naive
    count, and their difference, each with a percentile bootstrap interval over runs (scipy, seeded); OLS
    fits of accuracy on log df and on log naive count (R^2, AIC); the answer (``"df"``, ``"naive count"`` or
    None: cannot tell) by :data:`SIZE_RULE`. With fewer than 4 runs, ``reason`` says why nothing is computed."""
    import statsmodels.formula.api as smf
    from scipy import stats

    runs = records_table(distinct_networks(records))
    runs = runs.dropna(subset=["df", "naive_count", "test_accuracy"])
    data = pd.DataFrame({"accuracy": runs["test_accuracy"].astype(float), "df": runs["df"].astype(float),
                         "naive": runs["naive_count"].astype(float)})
    out = {"n": len(data), "reason": None, "rule": SIZE_RULE, "better": None, "resamples": resamples}
    if len(data) < 4 or data["df"].nunique() < 2 or data["naive"].nunique() < 2:
        out["reason"] = (f"{len(data)} run(s) with {data['df'].nunique()} distinct df and {data['naive'].nunique()} "
                         "distinct naive counts: too few to compare")
        return out

    def statistic(acc, df, naive):
        rho_df, rho_naive = stats.spearmanr(acc, df).statistic, stats.spearmanr(acc, naive).statistic
        return np.array([rho_df, rho_naive, rho_df - rho_naive])

    point = statistic(data["accuracy"], data["df"], data["naive"])
    with warnings.catch_warnings():
        # a resample with one size only has no rank correlation (NaN): reported below, not warned about
        warnings.simplefilter("ignore", category=stats.ConstantInputWarning)
        warnings.simplefilter("ignore", category=stats.DegenerateDataWarning)
        boot = stats.bootstrap((data["accuracy"].to_numpy(), data["df"].to_numpy(), data["naive"].to_numpy()),
                               statistic, paired=True, vectorized=False, n_resamples=resamples, confidence_level=level,
                               method="percentile", rng=seed)
    low, high = boot.confidence_interval
    if np.isnan(point).any() or np.isnan(low).any() or np.isnan(high).any():
        out["reason"] = (f"{len(data)} runs: too few distinct sizes or accuracies for a rank correlation in every "
                         "bootstrap resample")
        return out
    for i, name in enumerate(("spearman_df", "spearman_naive", "difference")):
        out[name] = {"estimate": float(point[i]), "low": float(low[i]), "high": float(high[i])}
    for name, column in (("fit_df", "df"), ("fit_naive", "naive")):
        fit = smf.ols(f"accuracy ~ np.log({column})", data=data).fit()
        out[name] = {"r_squared": float(fit.rsquared), "aic": float(fit.aic), "slope": float(fit.params.iloc[1])}
    diff = out["difference"]
    out["better"] = "df" if diff["low"] > 0 else "naive count" if diff["high"] < 0 else None
    return out


def size_sentence(result: Mapping) -> str:
    """One sentence from :func:`size_predictors`: which predicts the accuracy better, or that the data cannot tell."""
    if result.get("reason"):
        return f"Whether df or the naive count predicts the accuracy better cannot be computed: {result['reason']}."
    d, s_df, s_nv = result["difference"], result["spearman_df"], result["spearman_naive"]
    nums = (f"Spearman correlation with accuracy {s_df['estimate']:.2f} for df ({_ci(s_df)}) and "
            f"{s_nv['estimate']:.2f} for the naive count ({_ci(s_nv)}); difference {d['estimate']:+.2f} ({_ci(d)}), "
            f"{result['n']} runs, {result['resamples']} bootstrap resamples. OLS on the logarithm: "
            f"R² {result['fit_df']['r_squared']:.2f} for df against {result['fit_naive']['r_squared']:.2f} for the "
            f"naive count (AIC {result['fit_df']['aic']:.1f} against {result['fit_naive']['aic']:.1f}).")
    if result["better"] == "df":
        return f"The degrees of freedom predict the test accuracy better than the naive parameter count: {nums}"
    if result["better"] == "naive count":
        return f"The naive parameter count predicts the test accuracy better than the degrees of freedom: {nums}"
    return f"The data cannot tell whether df or the naive count predicts the test accuracy better: {nums}"


def noise_floor(records: Iterable[Mapping]) -> dict:
    """The numerical noise floor: among runs of one network with one seed (:func:`same_networks`), those on
    different torch thread counts, and the largest difference of their test accuracies. ``floor`` is None
    when no such pair exists; ``pairs`` counts them; ``differences`` lists them; ``equal_threads_identical``
    counts the pairs on equal thread counts with bit-identical accuracy (of ``equal_threads``)."""
    twins = same_networks(records)
    out = {"floor": None, "pairs": 0, "differences": [], "equal_threads": 0, "equal_threads_identical": 0}
    if twins.empty:
        return out
    equal = twins["torch_threads"].map(lambda t: len(set(t)) == 1)
    diffs = [max(a) - min(a) for a in twins.loc[~equal, "test_accuracies"]]
    identical = int(twins.loc[equal, "identical_accuracy"].sum())
    out.update(pairs=len(diffs), differences=diffs, floor=max(diffs) if diffs else None,
               equal_threads=int(equal.sum()), equal_threads_identical=identical)
    return out


def noise_floor_text(floor: Mapping) -> str:
    """One sentence: the noise floor and what it rests on."""
    if floor["floor"] is None:
        return ("Noise floor: not measured (no two runs of one network on different thread counts); the rule "
                "uses $f = 0$.")
    diffs = ", ".join(f"{d:.4f}" for d in floor["differences"])
    return (f"Noise floor $f$ = {floor['floor']:.4f}: the largest test-accuracy difference between runs of one "
            f"network and seed on different thread counts ({floor['pairs']} pair(s): {diffs}); "
            f"{floor['equal_threads_identical']} of the {floor['equal_threads']} pair(s) on equal thread counts are "
            "bit-identical.")


def verdict(low: float | None, high: float | None, floor: float | None = None,
            direction: int = PAPER_DIRECTION) -> str:
    """:data:`VERDICT_RULE`: ``"supports"`` when the interval [low, high] lies beyond the noise floor on the
    paper's side of 0 (``direction``: -1, below ``-floor``), ``"contradicts"`` beyond it on the other side,
    ``"inconclusive"`` otherwise or when there is no interval."""
    if _missing(low) or _missing(high):
        return "inconclusive"
    f = floor or 0.0
    below, above = high < -f, low > f
    if (below and direction < 0) or (above and direction > 0):
        return "supports"
    if below or above:
        return "contradicts"
    return "inconclusive"


def _ci(row: Mapping) -> str:
    return f"95 % interval {row['low']:+.4f} to {row['high']:+.4f}" if not _missing(row.get("low")) else "no interval"


def effects_with_verdicts(effects: pd.DataFrame, floor: float | None) -> pd.DataFrame:
    """:func:`paired_kr_effects` with a ``verdict`` column: the rule for K/R > 1, "no prediction" below 1."""
    effects = effects.copy()
    effects["verdict"] = [verdict(r["low"], r["high"], floor) if r["kr_ratio"] > 1 else "no prediction"
                          for _, r in effects.iterrows()]
    return effects


def design_verdicts(effects: pd.DataFrame, floor: float | None) -> pd.DataFrame:
    """Per design: the deciding effect (largest K/R above 1 with runs paired), its verdict, and the others."""
    effects = effects_with_verdicts(effects, floor)
    rows = []
    for design, sub in effects.groupby("design", sort=True):
        above = sub[sub["kr_ratio"] > 1].sort_values("kr_ratio")
        deciding = above.iloc[-1] if len(above) else None
        rows.append({"design": design, "kr_fraction": None if deciding is None else deciding["kr_fraction"],
                     "verdict": "inconclusive" if deciding is None else deciding["verdict"],
                     "deciding": deciding, "effects": sub})
    return pd.DataFrame(rows, columns=["design", "kr_fraction", "verdict", "deciding", "effects"])


FAMILY_RULE = (
    "**Several designs, one question.** Each design's verdict is one pre-stated contrast at the 95 % level; with "
    "$m$ designs judged, the chance that at least one interval misses its true effect is up to $m$ times 5 %. As "
    "a check, each deciding effect is judged again by the same rule with its interval at the Bonferroni level "
    "$1 - 0.05/m$ (t over seeds), which holds that chance at 5 % or less whatever the dependence between designs."
)


def family_verdicts(effects: pd.DataFrame, floor: float | None, level: float = LEVEL) -> pd.DataFrame:
    """:data:`FAMILY_RULE`: per design with a deciding effect (:func:`design_verdicts`), its verdict at the
    per-contrast ``level`` and again with the t interval of its paired differences at the Bonferroni level
    ``1 - (1 - level) / m``, m the number of designs judged. Columns ``design, kr_fraction, m, level, mean,
    low, high, verdict, family verdict, reason`` (why an interval is missing)."""
    decided = [d for _, d in design_verdicts(effects, floor).iterrows() if d["deciding"] is not None]
    m = len(decided)
    rows = []
    for d in decided:
        adjusted = 1 - (1 - level) / m
        stats = t_interval(d["deciding"]["differences"], adjusted)
        rows.append({"design": d["design"], "kr_fraction": d["kr_fraction"], "m": m, "level": adjusted,
                     "mean": stats["mean"], "low": stats["low"], "high": stats["high"], "verdict": d["verdict"],
                     "family verdict": verdict(stats["low"], stats["high"], floor), "reason": stats["reason"]})
    return pd.DataFrame(rows, columns=["design", "kr_fraction", "m", "level", "mean", "low", "high", "verdict",
                                       "family verdict", "reason"])


def family_sentence(family: pd.DataFrame) -> str:
    """:func:`family_verdicts` in one sentence: which verdicts survive the Bonferroni check."""
    if family.empty:
        return "No design has a deciding effect: nothing to correct."
    m, level = int(family["m"].iloc[0]), float(family["level"].iloc[0])
    if m == 1:
        return "One design judged: its 95 % interval is already the family's; no correction applies."
    parts = [f"{r['design']} {r['family verdict']}" + (f" (no interval: {r['reason']})" if _missing(r["low"]) else
             f" ({r['low']:+.4f} to {r['high']:+.4f})") for _, r in family.iterrows()]
    changed = family[family["verdict"] != family["family verdict"]]
    tail = ("every verdict is the same as at 95 %" if changed.empty else
            "changed from the 95 % verdict: " + ", ".join(f"{r['design']} ({r['verdict']} -> {r['family verdict']})"
                                                          for _, r in changed.iterrows()))
    return (f"With the {m} designs' deciding intervals at the Bonferroni level {100 * level:.2f} %: "
            f"{'; '.join(parts)}. {tail[0].upper() + tail[1:]}.")


def _effect_phrase(row: Mapping) -> str:
    if _missing(row["low"]):
        why = f"interval cannot be computed: {row['reason'] or 'no pairs'}"
        mean = f"{row['mean']:+.4f} (" if not _missing(row["mean"]) else "("
        return f"K/R = {row['kr_fraction']}: {mean}{why})"
    return f"K/R = {row['kr_fraction']}: {row['mean']:+.4f} ({_ci(row)}, {row['n']} seed pairs)"


def design_sentences(effects: pd.DataFrame, floor: float | None) -> list[str]:
    """One sentence per design, generated from :func:`paired_kr_effects` by :data:`VERDICT_RULE`."""
    sentences = []
    for _, d in design_verdicts(effects, floor).iterrows():
        listed = "; ".join(_effect_phrase(r) for _, r in d["effects"].iterrows())
        if d["deciding"] is None:
            sentences.append(f"**{d['design']}**: inconclusive -- no K/R above 1 paired with K/R = 1 ({listed}).")
            continue
        said = {"supports": "supports the paper's prediction", "contradicts": "contradicts the paper's prediction",
                "inconclusive": "is inconclusive about the paper's prediction"}[d["verdict"]]
        sentences.append(f"**{d['design']}** {said} (decided at K/R = {d['kr_fraction']}). "
                         f"Accuracy change from K/R = 1 at a fixed budget: {listed}.")
    return sentences


def regression_sentence(fit: Mapping, floor: float | None = None) -> str:
    """The K/R coefficient of :func:`kr_regression` in one sentence, with its verdict by the rule."""
    which = f"budget runs with K/R >= {fit['min_kr']:g}" if fit["min_kr"] is not None else "all budget runs"
    if fit["coefficient"] is None:
        return f"Regression on {which}: cannot be computed ({fit['reason']})."
    if fit["min_kr"] is not None and fit["min_kr"] >= 1:
        span = regression_span_effect(fit)
        judged = (f"; from K/R = {span['from']:g} to {span['to']:g} that is {span['estimate']:+.4f} "
                  f"({span['low']:+.4f} to {span['high']:+.4f}): {verdict(span['low'], span['high'], floor)} by the rule")
    else:
        judged = "; the paper predicts nothing below K/R = 1, so this fit gets no verdict"
    return (f"Regression on {which} (`{fit['formula']}`, OLS): the test accuracy changes by "
            f"{fit['coefficient']:+.4f} per doubling of K/R at equal design and parameter count ({_ci(fit)}, t; "
            f"n = {fit['n']}, R² = {fit['r_squared']:.2f}){judged}.")


def budget_distances(table: pd.DataFrame) -> pd.DataFrame:
    """Each fixed-budget run's relative distance from its budget (``budget_error`` = parameters / budget - 1,
    read from the record; recomputed from the counts only for a record that lacks it), sorted by design and K/R."""
    runs = budget_runs(table)
    error = runs["budget_error"].astype(float) if "budget_error" in runs else pd.Series(np.nan, index=runs.index)
    recomputed = runs["parameters"] / runs["param_budget"].astype(float) - 1
    runs = runs.assign(budget_error=error.fillna(recomputed))
    cols = ["design", "kr_fraction", "kr_ratio", "seed", "param_budget", "parameters", "budget_error"]
    return runs[cols].sort_values(["design", "kr_ratio", "seed"]).reset_index(drop=True)


def budget_distance_text(table: pd.DataFrame) -> str:
    """One sentence: how far the fixed-budget networks are from their budget."""
    d = budget_distances(table)
    if d.empty:
        return "No fixed-budget runs."
    e = d["budget_error"]
    worst = d.loc[e.abs().idxmax()]
    return (f"The {len(d)} fixed-budget runs have {int(d['parameters'].min()):,} to {int(d['parameters'].max()):,} "
            f"parameters for a budget of {', '.join(f'{int(b):,}' for b in sorted(d['param_budget'].unique()))}: "
            f"from {e.min():+.1%} to {e.max():+.1%} of it (median distance {e.abs().median():.1%}; the farthest is "
            f"{worst['design']} at K/R = {worst['kr_fraction']}). K/R is therefore partly mixed with size; the "
            "regression below separates them.")


def findings(records: Iterable[Mapping]) -> dict:
    """Everything the Findings section of a results page shows, from the records of one dataset."""
    records = list(records)
    table = records_table(records)
    floor = noise_floor(records)
    effects = paired_kr_effects(table)
    return {"table": table, "floor": floor, "effects": effects_with_verdicts(effects, floor["floor"]),
            "designs": design_verdicts(effects, floor["floor"]), "sentences": design_sentences(effects, floor["floor"]),
            "family": family_verdicts(effects, floor["floor"]),
            "regression_all": kr_regression(table), "regression_above_1": kr_regression(table, min_kr=1),
            "size": size_predictors(records), "distances": budget_distances(table)}


def effects_display(effects: pd.DataFrame) -> pd.DataFrame:
    """The effects table as the page shows it (mean, interval, n, method, verdict; a reason for a missing interval)."""
    out = effects.assign(interval=[f"{r['low']:+.4f} to {r['high']:+.4f}" if not _missing(r["low"]) else
                                   f"cannot be computed ({r['reason']})" for _, r in effects.iterrows()])
    out = out.rename(columns={"kr_fraction": "K/R", "mean": "mean change from K/R = 1", "n": "seeds paired"})
    return out[["design", "K/R", "mean change from K/R = 1", "interval", "seeds paired", "method", "verdict"]]


def budget_distance_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`budget_distances` as design x K/R (the mean over seeds of the relative distance; seeds of one
    configuration train the same network, so the distance is the same for each)."""
    d = budget_distances(table)
    if d.empty:
        return pd.DataFrame()
    order = sorted(d["kr_fraction"].unique(), key=_kr)
    pivot = d.pivot_table(index="design", columns="kr_fraction", values="budget_error", aggfunc="mean")
    pivot = pivot[order]
    pivot.columns = [f"K/R = {c}" for c in pivot.columns]
    return pivot.reset_index()
