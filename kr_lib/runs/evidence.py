"""The summary page "What the evidence says" (``notebooks/evidence.ipynb``): the paper's claims as rows,
the evidence of each dataset's records as columns, computed by :mod:`kr_lib.runs.findings`.

    cells = evidence(results_dir)        # one dict per (claim, dataset): effect, interval, n, verdict, text
    table = evidence_table(cells)        # rows = claims, columns = simulation and the datasets (Markdown cells)
    not_run = not_run_commands(results_dir)   # dataset -> the commands that would give it records

The claims are the four steps of the book's introduction, plus the measured redundancy of trained
networks, read from the measurement cache by ``kr_lib.measured.evidence(dataset, results_dir)`` (a
``Mapping`` with ``text`` and ``verdict``). Claims 1 and 2 are identities
of the theory, checked on simulated data in their chapters; the ablation runs do not test them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pandas as pd

from .findings import (BOOTSTRAP_RESAMPLES, design_verdicts, family_verdicts, kr_regression, noise_floor,
                       paired_kr_effects, regression_span_effect, size_predictors, verdict)
from .pages import TITLES
from .records import read_records, records_table
from .presets import fill_commands  # not the runner: a page that runs nothing loads no papermill


@dataclass(frozen=True)
class Claim:
    """A claim of the paper as the book's introduction states it, and where the book checks it."""

    key: str
    text: str
    simulation: str  # where the theory chapters check it on simulated data ("" where they do not); no result


CLAIMS = (
    Claim("regression", "1. A CNN is a tensor regression (linear activations: $y = \\langle Z(X), W\\rangle + b$).",
          "an identity, checked numerically (chapter *CNNs as statistical models*)"),
    Claim("decomposition", "2. A compressed CNN is a tensor decomposition of the kernel (Tucker-2 = bottleneck, "
          "CP = separable, diagonal core = inverted residual).",
          "an identity, checked numerically (chapter *Compressed CNNs as tensor decompositions*)"),
    Claim("df", "3. Sample complexity is not parameter counting: the degrees of freedom, not the naive count, "
          "govern it. On real data: df predicts the test accuracy better than the naive count.",
          "estimation error against n on simulated data (chapter *Sample complexity*)"),
    Claim("kr", "4. K/R > 1 means K - R output channels that add parameters and nothing learnable. On real data: "
          "at a fixed parameter budget, accuracy falls as K/R grows above 1.",
          "teacher and student CNNs at a fixed R with K varied, linear and ReLU (chapter *Sample complexity*)"),
    Claim("measured", "5. K/R measures redundancy in trained networks.", ""),
)


def _records(dataset: str, results_dir: os.PathLike) -> list[dict]:
    records, _ = read_records(Path(results_dir) / dataset)
    return [r for r in records if r.get("status") == "completed"]


def _fmt(estimate, low, high, digits: int = 4) -> str:
    return f"{estimate:+.{digits}f} ({low:+.{digits}f} to {high:+.{digits}f})"


def df_evidence(records: list[Mapping], resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """Claim 3 on one dataset's records: the difference of Spearman correlations (df minus naive count)."""
    size = size_predictors(records, resamples=resamples)
    if size["reason"]:
        return {"verdict": "inconclusive", "text": f"cannot be computed: {size['reason']}", "n": size["n"]}
    d = size["difference"]
    v = {"df": "supports", "naive count": "contradicts", None: "inconclusive"}[size["better"]]
    return {"verdict": v, "estimate": d["estimate"], "low": d["low"], "high": d["high"], "n": size["n"],
            "text": f"Spearman(acc, df) - Spearman(acc, naive) = {_fmt(d['estimate'], d['low'], d['high'], 2)}, "
                    f"{size['n']} runs: **{v}**"}


def _tally(verdicts: pd.Series) -> str:
    """"2 inconclusive, 3 supports": how many of each verdict, in alphabetical order."""
    return ", ".join(f"{n} {v}" for v, n in verdicts.value_counts().sort_index().items())


def kr_evidence(records: list[Mapping]) -> dict:
    """Claim 4 on one dataset's records: the log2(K/R) coefficient over the budget runs with K/R >= 1, judged
    by :data:`~kr_lib.runs.findings.VERDICT_RULE` on the change it predicts from K/R = 1 to the largest K/R
    (:func:`~kr_lib.runs.findings.regression_span_effect`), and the tally of the designs' verdicts."""
    table = records_table(records)
    floor = noise_floor(records)["floor"]
    fit = kr_regression(table, min_kr=1)
    effects = paired_kr_effects(table)
    designs = design_verdicts(effects, floor)
    tally = _tally(designs["verdict"]) or "none"
    family = family_verdicts(effects, floor)
    if len(family) > 1:  # the same verdicts with Bonferroni intervals over the designs (FAMILY_RULE)
        tally += f" ({_tally(family['family verdict'])} with Bonferroni intervals over the {len(family)})"
    if fit["coefficient"] is None:
        return {"verdict": "inconclusive", "n": fit["n"],
                "text": f"regression cannot be computed ({fit['reason']}); designs: {tally}"}
    span = regression_span_effect(fit)  # the contrast the rule judges: K/R = 1 to the largest K/R
    v = verdict(span["low"], span["high"], floor)
    return {"verdict": v, "estimate": span["estimate"], "low": span["low"], "high": span["high"], "n": fit["n"],
            "text": f"{_fmt(span['estimate'], span['low'], span['high'])} from K/R = 1 to {span['to']:g} at equal size "
                    f"({_fmt(fit['coefficient'], fit['low'], fit['high'])} per doubling), "
                    f"{fit['n']} runs, {'no noise floor measured' if floor is None else f'noise floor {floor:.4f}'}: "
                    f"**{v}**; designs: {tally}"}


def measured_evidence(dataset: str, results_dir: os.PathLike) -> dict:
    """Claim 5: :func:`kr_lib.measured.findings.evidence` (the chapter's cached measurements, judged by its rule),
    or "not measured yet on this dataset" when no record of it has saved weights."""
    from ..measured.findings import evidence as measured

    out = measured(dataset, results_dir)
    if not out:
        return {"verdict": None, "text": "not measured yet on this dataset"}
    return {"verdict": out.get("verdict"), "text": out.get("text", "")}


def not_run_commands(results_dir: os.PathLike) -> dict[str, list[str]]:
    """Dataset -> the commands that would fill it, for every dataset of the book with no completed record."""
    return {d: fill_commands(d) for d in TITLES if not _records(d, results_dir)}


def evidence(results_dir: os.PathLike, resamples: int = BOOTSTRAP_RESAMPLES) -> list[dict]:
    """One dict per (claim, dataset): ``claim, dataset, verdict, text`` (and ``estimate, low, high, n`` where
    an effect was computed). A dataset without records says "not run here" (``command``: the sweep that runs
    it; :func:`not_run_commands` lists them all). ``resamples``: of the bootstrap of claim 3."""
    cells = []
    for dataset in TITLES:
        records = _records(dataset, results_dir)
        for claim in CLAIMS:
            if claim.key in ("regression", "decomposition"):
                cell = {"verdict": None, "text": "not tested by the ablation runs"}
            elif claim.key == "measured":
                cell = measured_evidence(dataset, results_dir)
            elif not records:
                cell = {"verdict": None, "text": "not run here (command below)", "command": fill_commands(dataset)[0]}
            elif claim.key == "df":
                cell = df_evidence(records, resamples)
            else:
                cell = kr_evidence(records)
            cells.append({"claim": claim.text, "dataset": dataset, **cell})
    return cells


def evidence_table(cells: list[Mapping]) -> pd.DataFrame:
    """Rows = the claims (in :data:`CLAIMS` order), columns = "simulation" and the datasets' titles; each
    cell the evidence's text (Markdown)."""
    simulation = {c.text: c.simulation or "-" for c in CLAIMS}
    frame = pd.DataFrame(cells)
    table = frame.pivot(index="claim", columns="dataset", values="text")
    table = table.reindex(index=[c.text for c in CLAIMS], columns=[d for d in TITLES if d in set(frame["dataset"])])
    table.columns = [TITLES[d] for d in table.columns]
    table.insert(0, "simulation", [simulation[c] for c in table.index])
    table.index.name = "claim"
    return table.reset_index()


def evidence_markdown(cells: list[Mapping]) -> str:
    """:func:`evidence_table` as a Markdown table (the cells hold Markdown: bold verdicts, commands)."""
    table = evidence_table(cells)
    clean = table.map(lambda v: str(v).replace("|", "\\|").replace("\n", " "))
    lines = ["| " + " | ".join(clean.columns) + " |", "|" + "---|" * len(clean.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in clean.itertuples(index=False)]
    return "\n".join(lines)
