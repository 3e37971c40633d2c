"""What the measured redundancy says, for the pages that do not measure: the evidence page's row "5. K/R measures
redundancy in trained networks" and the verdict paragraph of the introduction. Both read the measurement cache
(``kr_lib.measured.cache``, at the chapter's parameters :data:`~kr_lib.measured.cache.DEFAULTS`) and judge it by
the chapter's rule (:func:`kr_lib.measured.verdict.dataset_verdict`); nothing is measured and nothing typed.

    cell = evidence("fashion_mnist", "results")   # {"text", "verdict"}, or None without any saved weights
    text = intro_paragraph("results")             # the introduction's paragraph (Markdown)
"""
from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import pandas as pd

from .verdict import LEVEL, dataset_verdict

LEVEL_TEXT = f"{round(100 * LEVEL)} %"

__all__ = ["evidence", "evidence_text", "measured_datasets", "dataset_sentence", "intro_paragraph", "intro_text"]

# The chapter, as a link from a page of book/ (the introduction) or of notebooks/ (kept off the API page,
# whose file check reads a relative link as a missing file).
_CHAPTER = {"book": "../notebooks/measured_redundancy.ipynb", "notebooks": "measured_redundancy.ipynb"}


def measured_datasets(results_dir: str | os.PathLike, datasets=None) -> dict[str, tuple[pd.DataFrame, int]]:
    """dataset -> (its valid cached rows, how many completed records have saved weights), for every dataset
    (default: the book's, ``kr_lib.runs.pages.TITLES``) with at least one record with weights."""
    from ..runs.pages import TITLES
    from .cache import cached_table
    from .measure import records_with_weights

    out = {}
    for d in datasets or TITLES:
        have, _ = records_with_weights(Path(results_dir) / d)
        if have:
            out[d] = (cached_table(have), len(have))
    return out


def _interval(low: float, high: float, digits: int = 2, sign: bool = False) -> str:
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"{f.format(low)} to {f.format(high)}" if not (math.isnan(low) or math.isnan(high)) else "no interval"


def _coverage(table: pd.DataFrame, have: int) -> str:
    measured = int(table["run_id"].nunique()) if len(table) else 0
    return "" if measured == have else f", {measured} of the {have} with saved weights measured"


def evidence_text(table: pd.DataFrame, have: int, dataset: str) -> dict:
    """The evidence cell of one dataset from its cached rows (``have``: its records with weights)."""
    if table.empty:
        stale = table.attrs.get("stale", 0)
        why = f"{stale} cached at other parameters or by older code" if stale else "none cached"
        return {"verdict": None, "text": f"not measured yet: {have} network{'s' if have != 1 else ''} with saved "
                                         f"weights, {why}; `kr measure {dataset}` measures them"}
    v = dataset_verdict(table)
    if not v["blocks K/R > 1"]:
        return {"verdict": v["verdict"], "text": f"no measured block has K/R > 1 ({v['networks']} networks"
                                                 f"{_coverage(table, have)}): **{v['verdict']}**"}
    share = (f"{v['hold at R']} of {v['blocks K/R > 1']} blocks with K/R > 1 keep their accuracy within "
             f"{v['threshold']:g} points when pruned to R directions")
    share += f": {v['share']:.2f} ({_interval(v['share low'], v['share high'])})"
    text = (f"{share}, {v['networks']} network{'s' if v['networks'] != 1 else ''}{_coverage(table, have)}; "
            f"99 % components vs R: Spearman {v['rho R']:.2f}, vs K: {v['rho K']:.2f} (difference "
            f"{v['difference']:+.2f}, {_interval(v['difference low'], v['difference high'], sign=True)}): "
            f"**{v['verdict']}**" + (f" ({v['reason']})" if v["reason"] else ""))
    return {"verdict": v["verdict"], "text": text.replace("nan", "n/a")}


def evidence(dataset: str, results_dir: str | os.PathLike) -> dict | None:
    """Claim 5 on one dataset: ``{"text", "verdict"}`` from its cached measurements (``verdict`` None when none
    is cached), or None when no record of the dataset has saved weights."""
    found = measured_datasets(results_dir, [dataset])
    if dataset not in found:
        return None
    table, have = found[dataset]
    return evidence_text(table, have, dataset)


def _kr_range(table: pd.DataFrame) -> str:
    values = sorted(set(table["K/R"].astype(float)))
    label = lambda x: str(Fraction(x).limit_denominator(64))  # noqa: E731
    return f"K/R = {label(values[0])}" if len(values) == 1 else f"K/R from {label(values[0])} to {label(values[-1])}"


def _names(designs) -> str:
    designs = [f"*{d}*" for d in designs]
    return designs[0] if len(designs) == 1 else ", ".join(designs[:-1]) + " and " + designs[-1]


def _samples(split: str | None) -> str:
    """"fashion_mnist train (2000 samples)" (a measured table's ``attrs``) -> "2,000"."""
    import re

    m = re.search(r"\((\d+) samples\)", split or "")
    return f"{int(m.group(1)):,}" if m else "the"


def dataset_sentence(dataset: str, table: pd.DataFrame, have: int) -> str:
    from ..runs.pages import dataset_title

    title = dataset_title(dataset)
    if table.empty:
        return f"{title} has {have} network{'s' if have != 1 else ''} with saved weights, not measured yet."
    v = dataset_verdict(table)
    n_designs = table["design"].nunique()
    head = (f"On {title} ({v['networks']} network{'s' if v['networks'] != 1 else ''}{_coverage(table, have)}, "
            f"{n_designs} design{'s' if n_designs != 1 else ''}, {_kr_range(table)}; spectra from "
            f"{_samples(table.attrs.get('fit_split'))} training samples, accuracies on "
            f"{_samples(table.attrs.get('test_split'))} test samples)")
    if not v["blocks K/R > 1"]:
        return f"{head}, no block has K/R > 1, so the data cannot tell: **{v['verdict']}**."
    interval = (f"{LEVEL_TEXT} interval over networks {_interval(v['share low'], v['share high'])}"
                if not math.isnan(v["share low"]) else "too few networks for an interval")
    body = (f"the claim holds in {v['hold at R']} of the {v['blocks K/R > 1']} blocks with K/R > 1 (share "
            f"{v['share']:.2f}, {interval})"
            f": **{v['verdict']}**" + (f", because there are {v['reason']}" if v["reason"] else ""))
    d = v["designs"].set_index("design")
    parts = []
    for claim, words in (("holds", "it holds in every such block of"), ("partly", "in part for"),
                         ("fails", "in none for"), ("cannot tell", "the data cannot tell for")):
        names = list(d.index[d["claim"] == claim])
        if names:
            parts.append(f"{words} {_names(names)}" + (" (no block with K/R > 1)" if claim == "cannot tell" else ""))
    worst = d[d["claim"].isin(["partly", "fails"])]
    if len(worst):
        w = worst.loc[worst["worst drop at R"].idxmax()]
        parts.append(f"the largest loss is {w['worst drop at R']:.2f} points ({w.name}, K/R = "
                     f"{Fraction(float(w['worst K/R'])).limit_denominator(64)})")
    variance = ""
    if not (math.isnan(v["rho R"]) or math.isnan(v["rho K"])):
        follows = "K rather than R" if v["rho K"] > v["rho R"] else "R rather than K" if v["rho R"] > v["rho K"] else \
            "R and K alike"
        variance = (f" By variance, the measured dimension (99 % components) follows {follows}: Spearman "
                    f"{v['rho K']:.2f} with K, {v['rho R']:.2f} with R (difference R minus K {v['difference']:+.2f}, "
                    f"{_interval(v['difference low'], v['difference high'], sign=True)}).")
    return f"{head}, {body}; by design, " + "; ".join(parts) + "." + variance


def intro_text(found: dict[str, tuple[pd.DataFrame, int]], link: str | None = None) -> str:
    """The introduction's paragraph from :func:`measured_datasets`' result: what was measured, on which networks
    and data, the verdict of each dataset with its numbers, and where the claim holds, fails or cannot be told.
    ``link``: the chapter's address from the page that shows the paragraph (default: from a page of the book's
    ``book`` folder, the introduction)."""
    link = link or _CHAPTER["book"]
    from ..runs.pages import TITLES
    from .measure import DROP_THRESHOLD

    opening = (f"**Measured redundancy.** The chapter [Does K/R measure the redundancy of trained networks?]({link}) "
               f"tests the fourth step with nonlinear activations, on the trained networks of the ablations (their saved "
               f"weights): after each block, the output is projected onto its top $R$ principal directions (no "
               f"retraining), and the claim *holds* for a block with $K/R > 1$ when that costs less than "
               f"{DROP_THRESHOLD:g} points of test accuracy.")
    if not found:
        return opening + (" No record of this book has saved weights yet, so nothing is measured: "
                          "`kr measure DATASET` measures the networks once they do.")
    sentences = [dataset_sentence(d, t, have) for d, (t, have) in found.items()]
    absent = [TITLES[d] for d in TITLES if d not in found]
    tail = (f" {', '.join(absent)}: no network with saved weights, not measured." if absent else "")
    return opening + " " + " ".join(sentences) + tail + (
        " The rule, with its bootstrap over networks, is stated on the chapter's page before the numbers.")


def intro_paragraph(results_dir: str | os.PathLike) -> str:
    """:func:`intro_text` of the cached measurements under ``results_dir``."""
    return intro_text(measured_datasets(results_dir))
