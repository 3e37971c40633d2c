"""Figures the notebooks share (seaborn on matplotlib). Each function takes a tidy DataFrame and returns
the matplotlib Figure; nothing is computed here that the library does not already compute.

Sample complexity (notebooks/sample_complexity.ipynb, book section 3, :ref:`sec-df`):
``plot_error_vs_n``, ``plot_error_vs_counts``, ``plot_n_to_reach``.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

_METRIC_LABEL = {
    "estimation_error": r"$\|\widehat W - W^*\|_F$",
    "relative_error": r"$\|\widehat W - W^*\|_F / \|W^*\|_F$",
    "root_excess_risk": r"$\sqrt{\mathrm{E}\,(\widehat f - f^*)^2}$",
}


def _label(metric: str) -> str:
    return _METRIC_LABEL.get(metric, metric)


def _annotate_K(ax, frame: pd.DataFrame, x: str, y: str) -> None:
    """Label each point with its K; points at the same place share one label (K=2,4,8)."""
    finite = frame[np.isfinite(frame[x]) & np.isfinite(frame[y])]
    for (xv, yv), group in finite.groupby([finite[x].round(12), finite[y].round(12)]):
        label = "K=" + ",".join(str(int(k)) for k in sorted(group.K.unique()))
        ax.annotate(label, (xv, yv), textcoords="offset points", xytext=(4, 4), fontsize=8)


def _log_axes(ax, x: bool = True, y: bool = True) -> None:
    """Log scale with plain numbers at 1, 2, 5 x 10^k."""
    for use, axis, setter in ((x, ax.xaxis, ax.set_xscale), (y, ax.yaxis, ax.set_yscale)):
        if use:
            setter("log")
            axis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(mticker.NullFormatter())


def plot_error_vs_n(results: pd.DataFrame, metric: str = "estimation_error", *, min_n_over_df: float = 4.0,
                    title: str | None = None):
    """Mean error (bars: standard error over repetitions) against n on log-log axes, one panel per
    student, one line per K, with the reference c sigma sqrt(df / n) (dashed, one constant c for all
    curves, fitted by ``reference_constant`` on n >= ``min_n_over_df`` df)."""
    from kr_lib.simulation import reference_constant, summarize

    s = summarize(results, metric)
    c = reference_constant(results, metric, min_n_over_df)
    students = list(dict.fromkeys(s.student))
    palette = dict(zip(sorted(s.K.unique()), sns.color_palette("viridis", s.K.nunique())))
    fig, axes = plt.subplots(1, len(students), figsize=(5 * len(students), 4), sharey=True, squeeze=False)
    for ax, student in zip(axes[0], students):
        part = s[s.student == student]
        for K, curve in part.groupby("K"):
            ax.errorbar(curve.n, curve["mean"], yerr=curve["sem"], marker="o", ms=4, capsize=2,
                        color=palette[K], label=f"K={K} (df={curve.df.iloc[0]})")
            if np.isfinite(c):
                n = np.geomspace(curve.n.min(), curve.n.max(), 50)
                ax.plot(n, c * curve.sigma.iloc[0] * np.sqrt(curve.df.iloc[0] / n), ls="--", lw=1, color=palette[K])
        _log_axes(ax)
        ax.set(xlabel="n", title=f"{student} students")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(_label(metric))
    fig.suptitle(title or f"Synthetic teacher-student data: error against n; dashed: {c:.2f} "
                          r"$\sigma\sqrt{\mathrm{df}/n}$")
    fig.tight_layout()
    return fig


def plot_error_vs_counts(results: pd.DataFrame, metric: str = "estimation_error", *, n: int | None = None,
                         title: str | None = None):
    """Mean error at one n (default: the largest) against df (left) and against the naive parameter count
    (right), one marker per (student, K). If df is what matters, the points fall on one curve on the left
    and spread apart on the right."""
    from kr_lib.simulation import summarize

    s = summarize(results, metric)
    n = int(s.n.max()) if n is None else n
    if n not in set(s.n):
        raise ValueError(f"n={n} is not in the results' n grid {sorted(set(s.n))}")
    at = s[s.n == n]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x, xlabel in zip(axes, ["df", "naive"], ["degrees of freedom df", "naive parameter count"]):
        sns.scatterplot(data=at, x=x, y="mean", hue="student", style="student", s=60, ax=ax)
        _annotate_K(ax, at, x, "mean")
        _log_axes(ax)
        ax.set(xlabel=xlabel, ylabel=_label(metric))
    fig.suptitle(title or f"Synthetic data: error at n = {n} against df and against the naive count")
    fig.tight_layout()
    return fig


def plot_n_to_reach(table: pd.DataFrame, target: float, *, title: str | None = None):
    """The n needed to reach ``target`` (``n_to_reach``'s table) against df (left) and the naive count
    (right), per student; the dotted line is n = c df, c the geometric mean of n_needed / df over the points."""
    needed = table[np.isfinite(table.n_needed)]
    if needed.empty:
        raise ValueError(f"no student reaches the target {target} within the n grid; raise the target or n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x, xlabel in zip(axes, ["df", "naive"], ["degrees of freedom df", "naive parameter count"]):
        sns.lineplot(data=needed, x=x, y="n_needed", hue="student", style="student", markers=True, estimator=None,
                     sort=True, ax=ax)
        _annotate_K(ax, needed, x, "n_needed")
        _log_axes(ax)
        ax.set(xlabel=xlabel, ylabel=f"n to reach {target:.3g}")
    ratio = float(np.exp(np.mean(np.log(needed.n_needed / needed.df))))
    df_line = np.geomspace(needed.df.min(), needed.df.max(), 20)
    axes[0].plot(df_line, ratio * df_line, ls=":", color="gray", label=f"n = {ratio:.1f} df")
    axes[0].legend(fontsize=8)
    fig.suptitle(title or "Synthetic data: samples needed for a target error, against df and the naive count")
    fig.tight_layout()
    return fig
