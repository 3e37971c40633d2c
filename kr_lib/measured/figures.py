"""The chapter's figures, drawn from a measured table (``kr_lib.measured.measure_records``); nothing recomputed.

    plot_dimension(table)             # measured dimension against K and against R, by design and K/R
    plot_pruning(table)               # accuracy lost pruning to R and to K/2 directions, and K/r*, against K/R

Each returns the matplotlib ``Figure``; a design keeps its colour in every figure of the book.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .measure import DROP_THRESHOLD

__all__ = ["plot_dimension", "plot_pruning"]


def _plain_formatter():
    """Tick labels 8, 16, 0.5 on log axes, not 2^3."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _position=None: f"{value:g}")


def _order(table: pd.DataFrame) -> list[str]:
    from ..complexity import DESIGNS

    present = set(table["design"])
    return [d for d in DESIGNS if d in present] + sorted(present - set(DESIGNS))


def _kr_label(value: float) -> str:
    from fractions import Fraction

    return str(Fraction(value).limit_denominator(64))


def _dodge(table: pd.DataFrame, column: str, order: list[str], width: float = 0.18) -> pd.Series:
    """``column`` moved a little per design on a log2 axis, so that designs at one K/R do not hide each other."""
    step = {d: (i - (len(order) - 1) / 2) * width / max(len(order) - 1, 1) for i, d in enumerate(order)}
    return table[column].astype(float) * 2.0 ** table["design"].map(step)


def _points_axis(ax, low: float, high: float, threshold: float) -> None:
    """A symlog y axis (linear within 1 point of zero) over the losses, labelled at plain numbers."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    bottom, top = min(-0.25, low * 1.3), max(2 * threshold, high * 1.3)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom, top)
    ticks = [t for t in (-50, -20, -10, -5, -2, -1, -0.5, 0, 0.5, 1, 2, 5, 10, 20, 50, 100) if bottom <= t <= top]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))


def plot_dimension(table: pd.DataFrame, measure: str = "components 99%", title: str = ""):
    """``measure`` (a dimension column: ``components 99%``, ``effective rank``, ...) of each block's output
    against its K (left: the line is dimension = K, no redundancy) and against its R (right: the line is
    dimension = R, the bound of a linear block). Colour: design; marker: K/R."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if table.empty:
        raise ValueError("the measured table is empty: nothing to draw")
    data = table.assign(**{"K/R value": table["K/R"].astype(float)}).sort_values("K/R value")
    data["K/R "] = data["K/R value"].map(_kr_label)
    order = _order(data)
    fig, axes = plt.subplots(1, 2, figsize=(10.4, 4.0), sharey=True)
    for ax, x in zip(axes, ("K", "R")):
        sns.scatterplot(data, x=x, y=measure, hue="design", hue_order=order, style="K/R ", s=55, alpha=0.8, ax=ax,
                        legend=ax is axes[-1])
        low = max(1.0, min(data[x].min(), data[measure].min()) / 1.5)
        high = max(data[x].max(), data[measure].max()) * 1.5
        ax.plot([low, high], [low, high], color="grey", lw=1, ls="--", zorder=0)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(_plain_formatter())
        ax.set_xlabel(f"{x} of the block")
        ax.set_title(f"against {x}: the line is dimension = {x}" + (" (the linear bound)" if x == "R" else
                                                                     " (no redundancy)"), fontsize=9)
    axes[0].set_ylabel(f"measured dimension ({measure})")
    sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1, 1), fontsize=8)
    fig.suptitle(f"Measured dimension of each block's output{title}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_pruning(table: pd.DataFrame, threshold: float = DROP_THRESHOLD, title: str = ""):
    """Against K/R (log scale), one dot per block, colour by design: the test accuracy lost (points, symlog)
    when the block's output is projected onto R directions (left; at K/R <= 1 that keeps all K: no loss) and
    onto K/2 (middle), the dashed line at ``threshold``; and the measured ratio K / r* (right, the line is
    K/r* = K/R)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if table.empty or "drop at R" not in table:
        raise ValueError("the measured table has no pruning columns (measure with prune=True): nothing to draw")
    order = _order(table)
    data = table.assign(**{"K/R value": _dodge(table, "K/R", order),
                           "measured K/r*": table["K"] / table["pruned dimension"]})
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.9))
    for ax, col, name in ((axes[0], "drop at R", "pruned to R directions"),
                          (axes[1], "drop at K/2", "pruned to K/2 directions")):
        sns.scatterplot(data, x="K/R value", y=col, hue="design", hue_order=order, s=45, alpha=0.8, ax=ax,
                        legend=False)
        ax.axhline(threshold, color="grey", lw=1, ls="--", zorder=0)
        _points_axis(ax, float(data[col].min()), float(data[col].max()), threshold)
        ax.set_title(f"{name} (dashed: {threshold:g} points)", fontsize=9)
        ax.set_ylabel("test accuracy lost (points)")
    sns.scatterplot(data, x="K/R value", y="measured K/r*", hue="design", hue_order=order, s=45, alpha=0.8,
                    ax=axes[2])
    values = np.array(sorted(set(table["K/R"].astype(float))))
    axes[2].plot(values, values, color="grey", lw=1, ls="--", zorder=0)
    axes[2].set_yscale("log", base=2)
    axes[2].yaxis.set_major_formatter(_plain_formatter())
    axes[2].set_title("measured K / r* (dashed: K/r* = K/R)", fontsize=9)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(values, [_kr_label(v) for v in values])
        ax.minorticks_off()
        ax.set_xlabel("K/R of the block")
    sns.move_legend(axes[2], "upper left", bbox_to_anchor=(1, 1), fontsize=8)
    fig.suptitle(f"The pruning test: each block's output cut to its top principal directions, no retraining{title}",
                 fontsize=10)
    fig.tight_layout()
    return fig
