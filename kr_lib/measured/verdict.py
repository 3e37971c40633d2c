"""The rule that turns measured redundancy into a verdict on the paper's claim, and its sentences.

The claim (book section 4, :ref:`sec-kr`): K/R measures the redundancy left in a block's K outputs -- with linear
activations they span at most R directions, and the paper says this still holds with nonlinear ones.
Read on measurements (:func:`kr_lib.measured.measure_redundancy`), per block:

* a block **carries redundancy at level r** when projecting its output onto its top r principal directions
  (no retraining) costs less than ``threshold`` points of test accuracy;
* for a block with K/R > 1 the claim predicts redundancy at level R: it **holds** for the block when pruning
  to R directions costs less than ``threshold`` points, and **fails** otherwise;
* a block with K/R <= 1 has no output redundancy by structure; when it nevertheless carries redundancy at
  level K/2, the network has redundancy that K/R does not account for;
* **K/R predicts redundancy** for a design when the claim holds in every block with K/R > 1 and the measured
  ratio K / r* (r*: the pruned dimension) rises with K/R across its blocks (Spearman rho >= ``rho_min``);
* beside the rule, the variance view: a block's output is R-dimensional *by variance* when its 99 % components
  number at most R;
* **the data cannot tell** when a design has no measured block with K/R > 1 (the claim), or fewer than
  ``min_points`` blocks or fewer than 3 distinct K/R values (the trend).
"""
from __future__ import annotations

import math
import warnings

import pandas as pd

from .measure import DROP_THRESHOLD
# the network bootstrap takes the project's one setting for its intervals (seeded: a rebuilt page prints the same one)
from ..runs.findings import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, LEVEL

__all__ = ["rule_text", "design_verdicts", "verdict_sentences", "RHO_MIN", "dataset_rule_text", "dataset_verdict"]

#: Spearman correlation between K/R and the measured ratio K / r* above which the ratio "rises with K/R".
RHO_MIN = 0.5


def rule_text(threshold: float = DROP_THRESHOLD, rho_min: float = RHO_MIN) -> str:
    """The rule, in words, to put on a page before the numbers it judges."""
    return (f"**The rule.** A block *carries redundancy at level r* when projecting its output onto its top r "
            f"principal directions (estimated on training data, no retraining) costs less than {threshold:g} "
            f"points of test accuracy. For a block with $K/R > 1$ the paper's claim predicts redundancy at level "
            f"$R$: the claim *holds* for that block when pruning it to $R$ directions costs less than "
            f"{threshold:g} points, and *fails* otherwise. A block with $K/R \\le 1$ has no output redundancy by "
            f"structure; if it carries redundancy at level $K/2$ anyway, that redundancy is not what $K/R$ "
            f"counts. $K/R$ *predicts* redundancy for a design when the claim holds in every block with "
            f"$K/R > 1$ and the measured ratio $K/r^*$ ($r^*$: the smallest tested r at which the block, and "
            f"every larger r, still carries redundancy) rises with $K/R$ (Spearman $\\rho \\ge {rho_min:g}$). The "
            f"data *cannot tell* when a design has no measured block with $K/R > 1$, or too few blocks or "
            f"$K/R$ values for a trend. Beside the rule, the variance view: a block's output is $R$-dimensional "
            f"*by variance* when its 99 % components number at most $R$.")


def _spearman(x: pd.Series, y: pd.Series) -> float:
    if x.nunique() < 2 or y.nunique() < 2:
        return math.nan
    return float(x.rank().corr(y.rank()))


def design_verdicts(table: pd.DataFrame, threshold: float = DROP_THRESHOLD, rho_min: float = RHO_MIN,
                    min_points: int = 4) -> pd.DataFrame:
    """One row per design (per dataset and design when the table has a ``dataset`` column) of a measured table (the rows of ``measure_records``): networks, blocks with
    K/R > 1 and how many of them hold the claim, the worst drop at R, blocks with K/R <= 1 and how many
    carry redundancy at level K/2, Spearman rho of K/R against K / r*, and the verdicts ``claim``
    (holds / fails / partly / cannot tell) and ``trend`` (rises / does not rise / cannot tell)."""
    need = {"design", "K", "K/R", "drop at R", "drop at K/2", "pruned dimension"}
    if missing := need - set(table.columns):
        raise ValueError(f"the table lacks {sorted(missing)}: give what measure_records returns (with prune=True)")
    rows = []
    keys = ["dataset", "design"] if "dataset" in table.columns else ["design"]
    for key, t in table.groupby(keys, sort=True):
        dataset, design = key if len(keys) == 2 else (None, key[0] if isinstance(key, tuple) else key)
        hi, lo = t[t["K/R"] > 1], t[t["K/R"] <= 1]
        holds = int((hi["drop at R"] < threshold).sum())
        worst = hi.loc[hi["drop at R"].idxmax()] if len(hi) else None
        measured = t["K"] / t["pruned dimension"]
        enough = len(t) >= min_points and t["K/R"].nunique() >= 3
        rho = _spearman(t["K/R"], measured) if enough else math.nan
        rows.append({
            **({"dataset": dataset} if dataset is not None else {}), "design": design, "networks": int(t["run_id"].nunique()) if "run_id" in t else 1, "blocks": len(t),
            "blocks K/R > 1": len(hi), "hold at R": holds,
            "worst drop at R": float(worst["drop at R"]) if worst is not None else math.nan,
            "worst block": (f"{worst['block']} of {worst['run_id']}" if "run_id" in t else worst["block"])
            if worst is not None else "",
            "worst K/R": float(worst["K/R"]) if worst is not None else math.nan,
            "99% within R": int((hi["components 99%"] <= hi["R"]).sum()) if "components 99%" in t else 0,
            "median 99% / R": float((hi["components 99%"] / hi["R"]).median()) if len(hi) and "components 99%" in t
            else math.nan,
            "blocks K/R <= 1": len(lo), "redundant at K/2": int((lo["drop at K/2"] < threshold).sum()),
            "spearman rho": rho,
            "claim": ("cannot tell" if not len(hi) else "holds" if holds == len(hi) else "fails" if holds == 0
                      else "partly"),
            "trend": ("cannot tell" if math.isnan(rho) else "rises" if rho >= rho_min else "does not rise"),
        })
    return pd.DataFrame(rows)


def _blocks(n: int) -> str:
    return f"{n} block{'s' if n != 1 else ''}"


def verdict_sentences(table: pd.DataFrame, threshold: float = DROP_THRESHOLD, rho_min: float = RHO_MIN,
                      min_points: int = 4) -> list[str]:
    """One sentence (or two) per design, generated from :func:`design_verdicts` by the rule of :func:`rule_text`."""
    out = []
    for v in design_verdicts(table, threshold, rho_min, min_points).to_dict(orient="records"):
        n_hi, n_lo = v["blocks K/R > 1"], v["blocks K/R <= 1"]
        nets = f"{v['networks']} network{'s' if v['networks'] != 1 else ''}"
        if v.get("dataset"):
            from ..runs.pages import dataset_title

            nets = f"{dataset_title(v['dataset'])}, {nets}"
        if v["claim"] == "cannot tell":
            claim = "no measured block has K/R > 1, so the data cannot tell whether the claim holds"
        elif v["claim"] == "holds":
            claim = (f"the claim holds: all {_blocks(n_hi)} with K/R > 1 lose less than {threshold:g} points when "
                     f"pruned to R directions (largest loss {v['worst drop at R']:.2f} points)")
        else:
            held = ("none" if v["claim"] == "fails" else str(v["hold at R"]))
            claim = (f"the claim {'fails' if v['claim'] == 'fails' else 'holds only in part'}: {held} of the "
                     f"{_blocks(n_hi)} with K/R > 1 lose less than {threshold:g} points when pruned to R directions, "
                     f"and the worst loses {v['worst drop at R']:.2f} points ({v['worst block']}, "
                     f"K/R = {v['worst K/R']:g})")
        if n_hi and not math.isnan(v["median 99% / R"]):
            m = v["99% within R"]
            claim += (f"; by variance, {m or 'none'} of them {'has' if m <= 1 else 'have'} "
                      f"{'its' if m <= 1 else 'their'} 99 % components within R (median {v['median 99% / R']:.2f} R)")
        if n_lo and v["redundant at K/2"]:
            j = v["redundant at K/2"]
            low = (f"at K/R <= 1, {j} of {_blocks(n_lo)} {'loses' if j == 1 else 'lose'} less than {threshold:g} "
                   f"points pruned to K/2 directions: redundancy that K/R does not count")
        elif n_lo:
            low = (f"at K/R <= 1, none of the {_blocks(n_lo)} loses less than {threshold:g} points pruned to K/2 "
                   f"directions: no output redundancy, as K/R says")
        else:
            low = ""
        if v["trend"] == "cannot tell":
            trend = "too few blocks or K/R values to tell whether the measured ratio K/r* follows K/R"
        else:
            trend = (f"the measured ratio K/r* {'rises' if v['trend'] == 'rises' else 'does not rise'} with K/R "
                     f"(Spearman rho = {v['spearman rho']:.2f} over {_blocks(v['blocks'])})")
        parts = [claim] + ([low] if low else []) + [trend]
        out.append(f"**{v['design']}** ({nets}): " + "; ".join(parts) + ".")
    return out


# -- a dataset's verdict (the evidence page's row 5 and the introduction) -----------------------------------------

#: Fewest measured networks with a block of K/R > 1 for a dataset's verdict.
MIN_NETWORKS = 3
#: The dimension read against R and K.
DIMENSION = "components 99%"


def dataset_rule_text(threshold: float = DROP_THRESHOLD) -> str:
    """The dataset-level rule, in words: the per-block rule of :func:`rule_text`, aggregated with its uncertainty."""
    return (f"**On a dataset.** Over its measured networks, the *share* of blocks with $K/R > 1$ for which the claim "
            f"holds (pruned to $R$ directions they lose less than {threshold:g} points), with a {round(100 * LEVEL)} % "
            f"percentile bootstrap interval (scipy) that resamples *networks* (the blocks of one network are not "
            f"independent; {BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}). The measurements **support** "
            f"the claim when the whole interval lies above 1/2 (the claim holds in most such blocks), "
            f"**contradict** it when the whole interval lies below 1/2, and are **inconclusive** otherwise or with "
            f"fewer than {MIN_NETWORKS} networks that have a block with $K/R > 1$. Beside it, not part of the "
            f"verdict: the Spearman correlation of each block's measured dimension (its 99 % components) with "
            f"its $R$ and with its $K$, and their difference, with the same bootstrap.")


def _network_interval(n: int, statistic, resamples: int, seed: int) -> tuple[float, float]:
    """The percentile bootstrap interval (scipy.stats.bootstrap, seeded) of ``statistic(networks)`` -- a number
    from an array of network indices, drawn from ``range(n)`` with replacement: the networks are resampled, not
    the blocks (the blocks of one network are not independent). NaN, NaN when a resample has no value."""
    import numpy as np
    from scipy import stats

    with warnings.catch_warnings():
        # a resample whose blocks share one R (or K) has no rank correlation: NaN, reported as no interval
        warnings.simplefilter("ignore", category=stats.ConstantInputWarning)
        warnings.simplefilter("ignore", category=stats.DegenerateDataWarning)
        boot = stats.bootstrap((np.arange(n),), statistic, vectorized=False, n_resamples=resamples,
                               confidence_level=LEVEL, method="percentile", rng=seed)
    low, high = boot.confidence_interval
    return (math.nan, math.nan) if np.isnan(low) or np.isnan(high) else (float(low), float(high))


def _share_interval(table: pd.DataFrame, threshold: float, resamples: int, seed: int) -> tuple[float, float]:
    """The share of K/R > 1 blocks that hold at R, over resamples of the networks that have such blocks."""
    hi = table[table["K/R"] > 1].assign(holds=lambda t: t["drop at R"] < threshold)
    per = hi.groupby("run_id", sort=True)["holds"].agg(["sum", "count"])
    held, blocks = per["sum"].to_numpy(dtype=float), per["count"].to_numpy(dtype=float)
    return _network_interval(len(per), lambda pick: held[pick].sum() / blocks[pick].sum(), resamples, seed)


def _rho_difference_interval(table: pd.DataFrame, resamples: int, seed: int) -> tuple[float, float]:
    """Spearman(dimension, R) - Spearman(dimension, K) over all blocks, over resamples of the networks."""
    import numpy as np

    flat = table.reset_index(drop=True)
    rows = [g.index.to_numpy() for _, g in flat.groupby("run_id", sort=True)]
    dim, R, K = (flat[c].to_numpy(dtype=float) for c in (DIMENSION, "R", "K"))

    def difference(pick):
        i = np.concatenate([rows[j] for j in pick])
        d = pd.Series(dim[i])
        return _spearman(d, pd.Series(R[i])) - _spearman(d, pd.Series(K[i]))

    return _network_interval(len(rows), difference, resamples, seed)


def _share(t: pd.DataFrame, threshold: float) -> float:
    hi = t[t["K/R"] > 1]
    return float((hi["drop at R"] < threshold).mean()) if len(hi) else math.nan


def dataset_verdict(table: pd.DataFrame, threshold: float = DROP_THRESHOLD, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> dict:
    """One dataset's measured table (the rows of ``kr_lib.measured.cache.cached_table``, with ``run_id``) judged
    by :func:`dataset_rule_text`: ``verdict`` (supports / contradicts / inconclusive), ``reason`` (why
    inconclusive without an interval, else None), ``networks`` / ``networks K/R > 1``, ``blocks K/R > 1``,
    ``hold at R``, ``share`` with ``share low`` / ``share high``, ``rho R`` / ``rho K`` (Spearman of the 99 %
    components with R and with K over all blocks) with ``difference`` / ``difference low`` / ``difference high``,
    and ``designs`` (:func:`design_verdicts`)."""
    need = {"run_id", "design", "K", "R", "K/R", "drop at R", DIMENSION}
    if missing := need - set(table.columns):
        raise ValueError(f"the table lacks {sorted(missing)}: give the measured rows of one dataset")
    groups = [g for _, g in table.groupby("run_id", sort=True)]
    hi = table[table["K/R"] > 1]
    out = {"networks": len(groups), "networks K/R > 1": int(hi["run_id"].nunique()), "blocks K/R > 1": len(hi),
           "hold at R": int((hi["drop at R"] < threshold).sum()), "share": _share(table, threshold),
           "share low": math.nan, "share high": math.nan, "rho R": _spearman(table[DIMENSION], table["R"]),
           "rho K": _spearman(table[DIMENSION], table["K"]), "difference low": math.nan,
           "difference high": math.nan, "threshold": threshold, "resamples": resamples,
           "designs": design_verdicts(table, threshold) if len(table) else pd.DataFrame(), "reason": None}
    out["difference"] = out["rho R"] - out["rho K"]
    if len(groups) >= MIN_NETWORKS:
        out["difference low"], out["difference high"] = _rho_difference_interval(table, resamples, seed)
    if out["networks K/R > 1"] < MIN_NETWORKS:
        out["reason"] = (f"{out['networks K/R > 1']} measured network(s) with a block of K/R > 1, fewer than "
                         f"{MIN_NETWORKS}")
        out["verdict"] = "inconclusive"
        return out
    out["share low"], out["share high"] = _share_interval(table, threshold, resamples, seed)
    out["verdict"] = ("supports" if out["share low"] > 0.5 else "contradicts" if out["share high"] < 0.5
                      else "inconclusive")
    return out
