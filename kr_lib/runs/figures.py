"""The ablation figures, drawn from result records (seaborn); nothing here recomputes what a record holds.

    plot_learning_curves(record)                       # one run: loss and accuracy per epoch
    table = records_table(records)
    plot_accuracy_vs_kr(table)                          # accuracy against K/R, one line per design, seed spread
    plot_accuracy_vs_size(table, "parameters")          # accuracy against parameters, a panel per design
    plot_accuracy_vs_size(table, "df")                  # accuracy against the network's df, a panel per design
    plot_kr_effects({"Fashion-MNIST": (effects, floor)}) # the paired K/R effects with intervals (forest plot)

Each function returns the matplotlib ``Figure``; ``title`` is appended to the default title.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

MODE_TITLES = {"fixed_r": "fixed R", "budget": "fixed parameter budget"}


def _completed(table: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame) or "status" not in table:
        raise TypeError("expected the DataFrame of kr_lib.runs.records_table")
    done = table[table["status"] == "completed"].copy()
    if done.empty:
        raise ValueError("no completed runs in the table: nothing to draw")
    done["test accuracy"] = done["test_accuracy"].astype(float)
    done["K/R"] = done["kr_ratio"].astype(float)
    return done


def _design_order(done: pd.DataFrame) -> list[str]:
    """Designs in the library's order, so that a design has one colour in every figure."""
    from ..complexity import DESIGNS

    present = set(done["design"])
    return [d for d in DESIGNS if d in present] + sorted(present - set(DESIGNS))


def _thousands(value, _position=None) -> str:
    """A count as a tick label: 900, 20k, 1.5M (log axes label few ticks, none of them overlapping)."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _fraction(value: float) -> str:
    """K/R as the book writes it: 4, 1, 1/4."""
    from fractions import Fraction

    return str(Fraction(value).limit_denominator(64))


def _count_axis(ax, low: float, high: float) -> None:
    """A log x axis over [low, high] (counts) with at most about five labelled ticks at 1, 2 and 5 times a
    power of ten, minor ticks unlabelled: the default labels every minor tick of a span under a decade."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("log")
    span = np.log10(high / low) if low > 0 and high > low else 0.0
    subs = (1, 2, 5) if span < 1.5 else (1, 3) if span < 3 else (1,)
    ticks = [m * 10.0 ** e for e in range(int(np.floor(np.log10(low))) - 1, int(np.ceil(np.log10(high))) + 1)
             for m in subs]
    inside = [t for t in ticks if low / 1.05 <= t <= high * 1.05] or [low, high]
    ax.xaxis.set_major_locator(FixedLocator(inside))
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_learning_curves(record: Mapping, title: str = ""):
    """Training and test loss (left) and accuracy (right) per epoch of one record's ``history``, one
    marker per epoch (a run of one epoch draws one marker per split, and says so in the title)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    history = pd.DataFrame(record.get("history") or [])
    if history.empty:
        raise ValueError(f"record {record.get('run_id')} has no finished epoch to draw (status {record.get('status')})")
    long = pd.concat([
        pd.DataFrame({"epoch": history["epoch"], "split": split, "loss": history[f"{split}_loss"],
                      "accuracy": history[f"{split}_accuracy"]}) for split in ("train", "test")])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, y in zip(axes, ("loss", "accuracy")):
        sns.lineplot(long, x="epoch", y=y, hue="split", style="split", markers=True, markersize=8, dashes=False,
                     ax=ax, legend=ax is axes[0])
    losses = long["loss"].astype(float)
    if losses.min() > 0 and losses.max() / losses.min() > 3:  # a log axis only where the loss spans a range
        axes[0].set_yscale("log")
    for ax in axes:
        ax.set_xticks(history["epoch"])
        if len(history) == 1:
            ax.set_xlim(history["epoch"].iloc[0] - 0.5, history["epoch"].iloc[0] + 0.5)
    p = record["parameters"]
    one = " -- one epoch, one point per split" if len(history) == 1 else ""
    fig.suptitle(f"{p['dataset']}: {p['design']}, K/R = {p['kr_ratio']} ({record.get('run_id')}){one}{title}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def dense_baseline(done: pd.DataFrame, panel: pd.DataFrame, mode: str) -> pd.DataFrame:
    """The dense runs that are a baseline *of the same setting* as the ``panel``'s runs of ``mode``: at a
    fixed R, dense runs with one of the panel's first-stage R; at a fixed budget, dense runs of the same
    budget, or of any mode whose parameter count is as close to the panel's budget as its own runs are (at
    least within 2 %). Empty when the records hold no such run: a dense net of another size is no baseline."""
    dense = done[done["design"] == "dense"]
    if dense.empty or panel.empty:
        return dense.iloc[:0]
    if mode == "fixed_r":
        return dense[dense["R"].isin(set(panel["R"].dropna()))]
    budgets = panel["param_budget"].dropna().astype(float).unique()
    errors = pd.to_numeric(panel["budget_error"], errors="coerce").abs() if "budget_error" in panel else pd.Series()
    tolerance = max(0.02, float(errors.max()) if errors.notna().any() else 0.0)
    params = dense["parameters"].astype(float)
    near = np.zeros(len(dense), dtype=bool)
    for budget in budgets:
        near |= (np.abs(params / budget - 1) <= tolerance).to_numpy()
    return dense[near]


def plot_accuracy_vs_kr(table: pd.DataFrame, title: str = ""):
    """Test accuracy against K/R (log scale), one line per block design, one panel per mode (fixed R,
    fixed budget); the band is the spread (standard deviation) over seeds, dots are the single runs.
    The dense baseline (K/R = 1 only) is drawn in a panel only where it is of the panel's setting
    (:func:`dense_baseline`); a panel without one says so in its corner."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    done = _completed(table)
    order = _design_order(done)
    modes = [m for m in MODE_TITLES if m in set(done.loc[done["design"] != "dense", "mode"])] or \
        [m for m in MODE_TITLES if m in set(done["mode"])]
    fig, axes = plt.subplots(1, len(modes), figsize=(5.2 * len(modes), 3.8), squeeze=False, sharey=True)
    for ax, mode in zip(axes[0], modes):
        runs = done[(done["mode"] == mode) & (done["design"] != "dense")]
        dense = dense_baseline(done, runs, mode) if len(runs) else done[(done["design"] == "dense") &
                                                                         (done["mode"] == mode)]
        sub = pd.concat([dense, runs])
        sns.lineplot(sub, x="K/R", y="test accuracy", hue="design", hue_order=order, errorbar="sd", marker="o",
                     ax=ax, legend=ax is axes[0][-1])
        sns.scatterplot(sub, x="K/R", y="test accuracy", hue="design", hue_order=order, ax=ax, legend=False, s=12,
                        alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.set_title(MODE_TITLES[mode])
        others = done[(done["design"] == "dense") & ~done.index.isin(dense.index)]
        if dense.empty and len(others):
            sizes = ", ".join(sorted({f"{int(n):,}" for n in others["parameters"]}))
            ax.text(0.02, 0.02, f"no dense baseline of this setting\n(the dense runs have {sizes} parameters)",
                    transform=ax.transAxes, fontsize=7, color="dimgrey", va="bottom")
    if axes[0][-1].get_legend() is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1, 1))
    fig.suptitle(f"Test accuracy against K/R (mean and spread over seeds){title}", fontsize=10)
    fig.tight_layout()
    return fig


SIZE_LABELS = {"parameters": "parameters (naive count)", "df": "degrees of freedom of the network",
               "flops": "FLOPs per sample", "naive_count": "naive count"}


def plot_accuracy_vs_size(table: pd.DataFrame, size: str = "parameters", title: str = ""):
    """Test accuracy against a size column (``parameters``, ``df`` or ``flops``; log scale), one panel per
    block design (three to a row), one dot per run, coloured by K/R (log scale, one colour bar) and shaped
    by mode (fixed R, fixed budget); the dense baseline is grey in every panel for reference."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.lines import Line2D

    if size not in SIZE_LABELS:
        raise ValueError(f"size must be one of {', '.join(SIZE_LABELS)}; got {size!r}")
    done = _completed(table)
    done[size] = done[size].astype(float)
    designs = [d for d in _design_order(done) if d != "dense"] or ["dense"]
    dense = done[done["design"] == "dense"]
    ncols = min(3, len(designs))
    nrows = -(-len(designs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols + 0.9, 2.5 * nrows + 0.6), squeeze=False,
                             sharex=True, sharey=True)
    kr = done["K/R"]
    norm = LogNorm(vmin=kr.min(), vmax=kr.max()) if kr.max() > kr.min() else LogNorm(vmin=kr.min() / 2,
                                                                                          vmax=kr.max() * 2)
    markers = {"fixed_r": "o", "budget": "s"}
    for ax, design in zip(axes.flat, designs):
        if design != "dense" and len(dense):
            ax.scatter(dense[size], dense["test accuracy"], c="lightgrey", edgecolors="grey", s=22, zorder=1,
                       label="dense")
        runs = done[done["design"] == design]
        for mode, marker in markers.items():
            part = runs[runs["mode"] == mode]
            if len(part):
                ax.scatter(part[size], part["test accuracy"], c=part["K/R"], cmap="viridis", norm=norm,
                                    marker=marker, s=30, edgecolors="black", linewidths=0.3, zorder=2,
                                    label=MODE_TITLES[mode])
        ax.set_title(design, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(designs):]:
        ax.set_visible(False)
    _count_axis(axes.flat[0], float(done[size].min()), float(done[size].max()))
    for ax in axes[-1]:
        ax.set_xlabel(SIZE_LABELS[size], fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.86, 0.93))
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=axes.ravel().tolist(), fraction=0.03,
                       pad=0.02)
    bar.set_label("K/R", fontsize=8)
    values = sorted(set(done["K/R"]))
    bar.set_ticks(values, labels=[_fraction(v) for v in values], fontsize=7)
    bar.minorticks_off()
    present = [m for m in markers if m in set(done.loc[done["design"] != "dense", "mode"])]
    handles = [Line2D([], [], marker=markers[m], color="white", markerfacecolor="white", markeredgecolor="black",
                      markersize=6, label=MODE_TITLES[m]) for m in present]
    if len(dense) and designs != ["dense"]:
        handles.append(Line2D([], [], marker="o", color="white", markerfacecolor="lightgrey", markeredgecolor="grey",
                              markersize=6, label="dense (K/R = 1), every panel"))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.01, 0.955), fontsize=7, ncol=len(handles),
               frameon=False)
    fig.suptitle(f"Test accuracy against {SIZE_LABELS[size]}, a panel per design{title}", fontsize=10, x=0.01,
                 y=0.995, ha="left")
    return fig


VERDICT_COLOURS = {"supports": "tab:blue", "contradicts": "tab:red", "inconclusive": "dimgrey",
                   "no prediction": "darkgrey"}


def plot_kr_effects(panels: Mapping[str, tuple[pd.DataFrame, float | None]], title: str = ""):
    """A forest plot: for each dataset (a panel), each design's paired effect of K/R at a fixed budget --
    the mean change in test accuracy from K/R = 1, with its 95 % interval over seeds -- one row per design
    and K/R, coloured by its verdict; the grey band is the noise floor +-f, the line 0 no effect.

    ``panels``: title -> (the effects of :func:`kr_lib.runs.findings.effects_with_verdicts` or
    :func:`~kr_lib.runs.findings.paired_kr_effects`, the noise floor ``f`` or None). Effects without an
    interval (one seed pair) are drawn as hollow markers; a dataset without effects is left out. Raises
    ``ValueError`` when no panel has an effect."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .findings import effects_with_verdicts

    shown = {name: (e if "verdict" in e else effects_with_verdicts(e, floor), floor)
             for name, (e, floor) in panels.items() if e is not None and len(e)}
    if not shown:
        raise ValueError("no paired K/R effects in any panel: nothing to draw (no fixed-budget runs with K/R = 1)")
    heights = [len(e) for e, _ in shown.values()]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.6 * len(shown), 0.28 * max(heights) + 1.4), squeeze=False)
    for ax, (name, (effects, floor)) in zip(axes[0], shown.items()):
        effects = effects.sort_values(["design", "kr_ratio"]).reset_index(drop=True)
        y = np.arange(len(effects))[::-1]
        f = floor or 0.0
        if f:
            ax.axvspan(-f, f, color="lightgrey", alpha=0.6, lw=0)
        ax.axvline(0, color="black", lw=0.8)
        for yi, (_, row) in zip(y, effects.iterrows()):
            colour = VERDICT_COLOURS.get(row["verdict"], "dimgrey")
            has = row["low"] is not None and not pd.isna(row["low"])
            if has:
                ax.plot([row["low"], row["high"]], [yi, yi], color=colour, lw=1.6)
            ax.plot(row["mean"], yi, "o", color=colour, markerfacecolor=colour if has else "white", markersize=5)
        ax.set_yticks(y, [f"{d}, K/R = {k}" for d, k in zip(effects["design"], effects["kr_fraction"])], fontsize=7)
        ax.set_ylim(-0.7, len(effects) - 0.3)
        ax.set_xlabel("change in test accuracy from K/R = 1", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"{name} (noise floor f = {f:.4f})" if floor is not None else f"{name} (no noise floor measured)",
                     fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    legend = [Line2D([], [], color=c, marker="o", lw=1.6, label=v) for v, c in VERDICT_COLOURS.items()]
    legend.append(Line2D([], [], color="black", marker="o", markerfacecolor="white", lw=0, label="no interval (1 seed)"))
    fig.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=7, frameon=False)
    fig.suptitle(f"The effect of K/R at a fixed budget, paired by seed, 95 % intervals; grey: the noise floor{title}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
