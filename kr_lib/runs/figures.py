"""The ablation figures, drawn from result records (seaborn); nothing here recomputes what a record holds.

    plot_learning_curves(record)                       # one run: loss and accuracy per epoch
    table = records_table(records)
    plot_accuracy_vs_kr(table)                          # accuracy against K/R, one line per design, seed spread
    plot_accuracy_vs_size(table, "parameters")          # accuracy against parameters, coloured by K/R
    plot_accuracy_vs_size(table, "df")                  # accuracy against the network's df

Each function returns the matplotlib ``Figure``; ``title`` is appended to the default title.
"""
from __future__ import annotations

from typing import Mapping

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


def plot_learning_curves(record: Mapping, title: str = ""):
    """Training and test loss (left) and accuracy (right) per epoch of one record's ``history``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    history = pd.DataFrame(record.get("history") or [])
    if history.empty:
        raise ValueError(f"record {record.get('run_id')} has no finished epoch to draw (status {record.get('status')})")
    long = pd.concat([
        pd.DataFrame({"epoch": history["epoch"], "split": split, "loss": history[f"{split}_loss"],
                      "accuracy": history[f"{split}_accuracy"]}) for split in ("train", "test")])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    sns.lineplot(long, x="epoch", y="loss", hue="split", marker="o", ax=axes[0])
    sns.lineplot(long, x="epoch", y="accuracy", hue="split", marker="o", ax=axes[1], legend=False)
    axes[0].set_yscale("log")
    for ax in axes:
        ax.set_xticks(history["epoch"])
    p = record["parameters"]
    fig.suptitle(f"{p['dataset']}: {p['design']}, K/R = {p['kr_ratio']} ({record.get('run_id')}){title}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_kr(table: pd.DataFrame, title: str = ""):
    """Test accuracy against K/R (log scale), one line per block design, one panel per mode (fixed R,
    fixed budget); the band is the spread (standard deviation) over seeds, dots are the single runs.
    The dense baseline (K/R = 1 only) is drawn in every panel, whichever mode it was run in."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    done = _completed(table)
    dense = done[done["design"] == "dense"]
    order = _design_order(done)
    modes = [m for m in MODE_TITLES if m in set(done.loc[done["design"] != "dense", "mode"])] or \
        [m for m in MODE_TITLES if m in set(done["mode"])]
    fig, axes = plt.subplots(1, len(modes), figsize=(5.2 * len(modes), 3.8), squeeze=False, sharey=True)
    for ax, mode in zip(axes[0], modes):
        sub = pd.concat([dense, done[(done["mode"] == mode) & (done["design"] != "dense")]])
        sns.lineplot(sub, x="K/R", y="test accuracy", hue="design", hue_order=order, errorbar="sd", marker="o",
                     ax=ax, legend=ax is axes[0][-1])
        sns.scatterplot(sub, x="K/R", y="test accuracy", hue="design", hue_order=order, ax=ax, legend=False, s=12,
                        alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.set_title(MODE_TITLES[mode])
    if axes[0][-1].get_legend() is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1, 1))
    fig.suptitle(f"Test accuracy against K/R (mean and spread over seeds){title}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_size(table: pd.DataFrame, size: str = "parameters", title: str = ""):
    """Test accuracy against a size column (``parameters``, ``df`` or ``flops``; log scale), one dot per run,
    coloured by K/R (log scale) and shaped by design."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.colors import LogNorm

    if size not in ("parameters", "df", "flops", "naive_count"):
        raise ValueError(f"size must be one of parameters, df, flops, naive_count; got {size!r}")
    done = _completed(table)
    done[size] = done[size].astype(float)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    sns.scatterplot(done, x=size, y="test accuracy", hue="K/R", hue_norm=LogNorm(), palette="viridis",
                    style="design", style_order=_design_order(done), s=45, ax=ax)
    ax.set_xscale("log")
    labels = {"parameters": "parameters (naive count)", "df": "degrees of freedom of the network",
              "flops": "FLOPs per sample", "naive_count": "naive count"}
    ax.set_xlabel(labels[size])
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), fontsize=8)
    ax.set_title(f"Test accuracy against {labels[size]}{title}", fontsize=10)
    fig.tight_layout()
    return fig
