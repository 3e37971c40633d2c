"""Summaries of ``run_sample_complexity`` results: mean curves, log-log slopes, the n needed to reach a
target error, and the constant of the sigma sqrt(df / n) reference (book section 3, :ref:`sec-df`).

All take the tidy DataFrame (one row per student, K, n, repetition) and a ``metric`` column:
``estimation_error`` ||W^ - W*||_F (identity activation), ``relative_error``, or ``root_excess_risk``
sqrt(E (f^ - f*)^2), all of which the theory puts at the rate sqrt(df / n).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

CURVE = ["student", "K", "df", "naive", "K_over_R"]


def _check(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    missing = [c for c in [*CURVE, "n", "sigma", metric] if c not in results.columns]
    if missing:
        raise ValueError(f"results lack the column(s) {missing}; pass the DataFrame of run_sample_complexity")
    data = results.dropna(subset=[metric])
    if data.empty:
        raise ValueError(f"metric {metric!r} has no values here (estimation_error is NaN for the relu "
                         f"activation: use 'root_excess_risk')")
    return data


def summarize(results: pd.DataFrame, metric: str = "estimation_error") -> pd.DataFrame:
    """Mean, standard error and count of ``metric`` over repetitions, per (student, K, n)."""
    data = _check(results, metric)
    out = (data.groupby([*CURVE, "n"], as_index=False)
           .agg(mean=(metric, "mean"), sem=(metric, "sem"), reps=(metric, "size"), sigma=("sigma", "first")))
    return out.sort_values(["student", "K", "n"], ignore_index=True)


def reference_constant(results: pd.DataFrame, metric: str = "estimation_error", min_n_over_df: float = 2.0) -> float:
    """One constant c for all curves with error ~ c sigma sqrt(df / n), fitted (geometric mean of the
    ratios) on the mean errors where n >= ``min_n_over_df`` * df; NaN when no point qualifies."""
    s = summarize(results, metric)
    s = s[(s.n >= min_n_over_df * s.df) & (s["mean"] > 0) & (s.sigma > 0)]
    if s.empty:
        return float("nan")
    return float(np.exp(np.mean(np.log(s["mean"]) - np.log(s.sigma * np.sqrt(s.df / s.n)))))


def loglog_slopes(results: pd.DataFrame, metric: str = "estimation_error", min_n_over_df: float = 2.0,
                  require_decreasing: bool = True) -> pd.DataFrame:
    """Least-squares slope (``np.polyfit``) of log(mean metric) against log n, per (student, K), on the
    points with n >= ``min_n_over_df`` * df (the regime the rate is about). The theory's slope is -1/2.

    A power law is fitted only through a curve it can describe: with ``require_decreasing`` a curve whose
    mean error does not fall at every step in n gets no slope (NaN) and ``note`` says so -- a line through
    non-monotone points (gradient-trained ReLU students at small n) would report a rate that is not there.
    Columns: student, K, df, naive, K_over_R, slope, n_min, n_max, points, note (NaN slope below 2 points)."""
    rows = []
    for key, curve in summarize(results, metric).groupby(CURVE, sort=True):
        used = curve[(curve.n >= min_n_over_df * curve.df) & (curve["mean"] > 0)].sort_values("n")
        note = ""
        if len(used) < 2:
            slope, note = np.nan, "fewer than 2 points"
        elif require_decreasing and not (np.diff(used["mean"].to_numpy()) < 0).all():
            slope, note = np.nan, "not fitted: the error does not fall at every step in n"
        else:
            slope = np.polyfit(np.log(used.n), np.log(used["mean"]), 1)[0]
        rows.append(dict(zip(CURVE, key), slope=float(slope), n_min=used.n.min() if len(used) else np.nan,
                         n_max=used.n.max() if len(used) else np.nan, points=len(used), note=note))
    return pd.DataFrame(rows)


def k_ordering(results: pd.DataFrame, metric: str = "estimation_error", student: str = "dense") -> pd.DataFrame:
    """At each n, how one student family's mean error orders in K: ``"increasing"`` (the order of df for dense
    students: more channels, more degrees of freedom, larger error), ``"decreasing"``, or ``"mixed"``, and
    whether neighbouring K are further apart than two standard errors (``separated``).

    Columns: n, K (the K values, ascending), mean (their mean errors), order, separated."""
    s = summarize(results, metric)
    s = s[s.student == student]
    if s.empty:
        raise ValueError(f"no {student!r} students in these results; students: {sorted(set(results.student))}")
    rows = []
    for n, at in s.groupby("n", sort=True):
        at = at.sort_values("K")
        step = np.diff(at["mean"].to_numpy())
        noise = 2 * np.sqrt(at["sem"].fillna(np.inf).to_numpy()[1:] ** 2 + at["sem"].fillna(np.inf).to_numpy()[:-1] ** 2)
        order = "increasing" if (step > 0).all() else "decreasing" if (step < 0).all() else "mixed"
        rows.append({"n": int(n), "K": at["K"].tolist(), "mean": at["mean"].round(5).tolist(), "order": order,
                     "separated": bool((np.abs(step) > noise).all())})
    return pd.DataFrame(rows)


def describe_k_ordering(ordering: pd.DataFrame, student: str = "dense") -> str:
    """One sentence from :func:`k_ordering`: in how many of the n the error grows with K (as df does), falls
    with K (against df), or neither, and how many of those orders are beyond two standard errors."""
    total = len(ordering)
    counts = ordering.order.value_counts()
    firm = ordering[ordering.separated].order.value_counts()
    parts = [f"{counts.get(o, 0)} of {total} sample sizes {label} ({firm.get(o, 0)} beyond two standard errors "
             f"at every step)" for o, label in (("increasing", "grow with K, as df does"),
                                                ("decreasing", "fall as K grows, against the df ordering"),
                                                ("mixed", "are not monotone in K"))]
    return f"The {student} students' mean errors: " + "; ".join(parts) + "."


def n_to_reach(results: pd.DataFrame, target: float, metric: str = "estimation_error") -> pd.DataFrame:
    """The n at which each (student, K) mean curve first falls to ``target``, interpolated linearly in
    log n - log error between the two grid points around the crossing.

    Columns: student, K, df, naive, K_over_R, n_needed, reached ("interpolated", "at the first n" -- then
    n_needed is the smallest n of the grid, an upper bound -- or "not reached", n_needed NaN).
    """
    if not (isinstance(target, (int, float)) and target > 0):
        raise ValueError(f"target must be a positive number, got {target!r}")
    rows = []
    for key, curve in summarize(results, metric).groupby(CURVE, sort=True):
        n, err = curve.n.to_numpy(float), curve["mean"].to_numpy(float)
        below = np.flatnonzero(err <= target)
        if below.size == 0:
            needed, how = np.nan, "not reached"
        elif below[0] == 0:
            needed, how = n[0], "at the first n"
        else:
            i = below[0]
            x0, x1, e0, e1 = np.log(n[i - 1]), np.log(n[i]), np.log(err[i - 1]), np.log(err[i])
            needed, how = float(np.exp(x0 + (np.log(target) - e0) * (x1 - x0) / (e1 - e0))), "interpolated"
        rows.append(dict(zip(CURVE, key), n_needed=needed, reached=how))
    return pd.DataFrame(rows)


def reachable_target(results: pd.DataFrame, metric: str = "estimation_error") -> float:
    """The smallest error every (student, K) mean curve reaches within the n grid: the largest, over
    curves, of each curve's lowest mean. A natural default target for ``n_to_reach``."""
    return float(summarize(results, metric).groupby(["student", "K"])["mean"].min().max())
