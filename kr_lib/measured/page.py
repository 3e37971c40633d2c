"""What the chapter "Does K/R measure the redundancy of trained networks?" says around its numbers: which
networks it measured, the control, and, for the test build, a tiny network to measure when no weights exist.

    found = find_measurable(["fashion_mnist"], results_dir=None, max_records=None)  # dataset -> (have, lack)
    records_text(found), no_weights_text(found), control_text(table)
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .measure import records_with_weights

__all__ = ["find_measurable", "records_text", "no_weights_text", "control_text", "train_tiny_network"]


def find_measurable(datasets, results_dir=None, max_records: int | None = None) -> dict[str, tuple[list, list]]:
    """dataset -> (records with saved weights, completed records without) in ``results_dir/<dataset>`` (default
    the checkout's ``results/``); ``max_records`` keeps the first n with weights of each dataset."""
    from ..data import DATASETS
    from ..runs.records import REPO_ROOT

    if isinstance(datasets, str):
        datasets = [datasets]
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise ValueError(f"unknown dataset(s) {', '.join(unknown)}; accepted: {', '.join(DATASETS)}")
    root = Path(results_dir) if results_dir else REPO_ROOT / "results"
    found = {}
    for d in datasets:
        have, lack = records_with_weights(root / d)
        found[d] = (have[:max_records] if max_records is not None else have, lack)
    return found


def records_text(found: dict, trained_here: bool = False) -> str:
    """Which networks the page measures, how many per dataset, and how many records lack weights."""
    from ..runs.pages import dataset_title

    total = sum(len(h) for h, _ in found.values())
    if trained_here:
        return ("**No record with saved weights was found**, so this build trained one tiny network itself (a "
                "bottleneck network with K/R = 2 on 512 Fashion-MNIST training images, one epoch) and measures "
                "that: the numbers below show the machinery at work, not the trained ablation networks.")
    parts = []
    for d, (have, _) in found.items():
        designs = pd.Series([Path(p).stem.split("-kr")[0] for p in have]).value_counts().sort_index()
        parts.append(f"{len(have)} of {dataset_title(d)}"
                     + (f" ({', '.join(f'{n} {k}' for k, n in designs.items())})" if len(designs) else ""))
    lacking = sum(len(lack) for _, lack in found.values())
    text = f"This page measures **{total} trained network{'s' if total != 1 else ''}**, every record with saved weights: " \
        + "; ".join(parts) + "."
    if lacking:
        text += (f" {lacking} completed record{'s' if lacking != 1 else ''} of these datasets "
                 f"{'have' if lacking != 1 else 'has'} no weights (recorded before weights were kept) and "
                 f"{'are' if lacking != 1 else 'is'} not measured; `kr reproduce RECORD --save-weights` regenerates them.")
    return text


def no_weights_text(found: dict) -> str:
    """What the page says when no record has weights: that there are no numbers, and the command that makes them."""
    lacking = [p for _, lack in found.values() for p in lack]
    if lacking:
        from ..runs.records import REPO_ROOT

        example = Path(lacking[0])
        try:
            example = example.resolve().relative_to(REPO_ROOT)
        except ValueError:
            pass
        command = f"kr reproduce {example} --save-weights"
    else:
        command = "kr sweep sweeps/fashion_mnist.yaml --preset book"
    return (f"**No record of {', '.join(found)} has saved weights**, so this page measures nothing. This command "
            f"makes the weights of a record (each ablation run saves them since weights are kept):\n\n"
            f"```bash\n{command}\n```")


def control_text(table: pd.DataFrame) -> str:
    """The in-block control in one sentence: the closing conv's output has numerical rank at most R in every block."""
    n = len(table)
    ok = int((table["projection numerical rank"] <= table["R"]).sum())
    if ok == n:
        return (f"**Control.** In all {n} blocks the closing pointwise conv's own output has numerical rank at most R "
                f"(as it must: it is a K x R matrix applied to R channels), so the hooks read what they should.")
    return (f"**Control FAILED.** In {n - ok} of {n} blocks the closing conv's output has numerical rank above R: the "
            f"measurement does not read the tensors it claims to, and the numbers below cannot be trusted.")


def train_tiny_network(folder: str | os.PathLike) -> Path:
    """Train one tiny network (bottleneck, K/R = 2, R = 4, two stages, 512 training images, one epoch) into
    ``folder`` and return its record: the test build's stand-in when no record has weights."""
    from ..runs import run_ablation

    run = run_ablation({"dataset": "fashion_mnist", "design": "bottleneck", "kr_ratio": 2, "R": 4, "stages": 2,
                        "stem_stride": 2, "epochs": 1, "batch_size": 64, "train_limit": 512, "test_limit": 512,
                        "device": "cpu", "output_dir": str(folder), "checkpoint": False}, progress=False)
    return run.path
