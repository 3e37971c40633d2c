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

import pandas as pd

from .measure import DROP_THRESHOLD

__all__ = ["rule_text", "design_verdicts", "verdict_sentences", "RHO_MIN"]

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
