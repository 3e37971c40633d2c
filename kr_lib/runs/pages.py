"""The sentences of a results page (``notebooks/ablation_summary.ipynb``), written from the records.

Each function returns Markdown built only from what the records hold (and, for the code check, from
git), so the page states nothing that a record does not back:

    records, corrupt = read_records("results/fashion_mnist")
    results_title("fashion_mnist")    # the page's title: "Results: Fashion-MNIST"
    provenance_text(records)          # how many runs, where, when, how long, at which commits
    run_code_text(records)            # did the code that decides the numbers change between them?
    progress_text("fashion_mnist")    # is the book preset complete? (None when it is)
    no_records_text("cifar10")        # the commands that would fill an empty page
    same_network_table(records)       # runs that trained one network under two names, and what that shows
    chance_level_text(record)         # one run's page: a sentence when its accuracy is near chance (else None)
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping

import pandas as pd

from ..provenance import code_changes
from .ablation import RUN_CODE
from .records import provenance_summary, records_table, same_networks
from .presets import book_progress, fill_commands

TITLES = {"fashion_mnist": "Fashion-MNIST", "moving_fashion_mnist": "Moving Fashion-MNIST", "cifar10": "CIFAR-10",
          "svhn": "SVHN", "ucf101": "UCF101"}


def dataset_title(dataset: str) -> str:
    """The dataset's name as the book writes it; a ``ValueError`` names the accepted datasets."""
    if dataset not in TITLES:
        raise ValueError(f"unknown dataset {dataset!r}; accepted: {', '.join(TITLES)}")
    return TITLES[dataset]


def results_title(dataset: str) -> str:
    """The title of a dataset's results page (its first heading, so each page has its own)."""
    return f"Results: {dataset_title(dataset)}"


def no_records_text(dataset: str) -> str:
    """What an empty results page says: that there are no numbers, and the commands that would fill it."""
    commands = "\n".join(fill_commands(dataset))
    return (f"**No result records have been committed for {dataset_title(dataset)}** (`results/{dataset}/` holds no "
            "completed run), so this page shows no numbers. These commands would fill it (the sweep file states "
            f"what the preset costs; the runs resume where they stop):\n\n```bash\n{commands}\n```")


def provenance_text(records: Iterable[Mapping]) -> str:
    """How many records, of which presets, made on which machines and devices, between which dates, in how
    much run time (resumed runs included), at how many commits, with which statuses."""
    records = list(records)
    prov = provenance_summary(records)
    statuses = records_table(records)["status"].value_counts()
    resumed = (f" ({prov['resumed']} run(s) cut off and resumed from a checkpoint: their earlier epochs count by "
               "training time)" if prov["resumed"] else "")
    commits = ", ".join(prov["commits"][:3]) + (", ..." if len(prov["commits"]) > 3 else "")
    return (f"{prov['records']} records (sweep preset(s): {', '.join(prov['presets'])}), made on "
            f"{', '.join(prov['machines'])} (device {', '.join(prov['devices'])}) between {prov['first']} and "
            f"{prov['last']}, {prov['run_time_hours']:.1f} hours ({prov['run_time_hours'] * 60:.0f} minutes) of run "
            f"time in all{resumed}; kr_lib at {len(prov['commits'])} commit(s) ({commits}; each record names its own). "
            f"Status: {', '.join(f'{n} {s}' for s, n in statuses.items())}.")


def run_code_text(records: Iterable[Mapping], root: os.PathLike | None = None) -> str:
    """Whether the code that decides a run's numbers (:data:`~kr_lib.runs.ablation.RUN_CODE`) changed
    between the records' commits (git), how many records ran on a checkout with uncommitted changes, and
    the distinct run-code hashes the records carry (``versions.run_code``)."""
    records = list(records)
    prov = provenance_summary(records)
    files = ", ".join(f"`{p}`" for p in RUN_CODE)
    changes = code_changes([r.get("git_commit") for r in records], RUN_CODE, root=root)
    if changes is None:
        parts = ["Whether the code that decides a run's numbers changed between these commits cannot be checked "
                 "here (their git history is not in this checkout)."]
    elif not changes:
        parts = [f"The code that decides a run's numbers ({files}) did not change between the first and the last "
                 "of these commits (checked with git)."]
    else:
        # file names as code: Markdown would read kr_lib/data/__init__.py's underscores as bold
        listing = "\n".join(f"- `{c['commit']}` {c['subject']} ({', '.join(f'`{f}`' for f in c['files'])})"
                             for c in changes)
        parts = [f"The code that decides a run's numbers ({files}) changed in {len(changes)} commit(s) between the "
                 "first and the last of these commits (checked with git; read them to judge whether a number could "
                 f"have moved):\n\n{listing}\n"]
    if prov["dirty"]:
        parts.append(f"{prov['dirty']} record(s) ran on a checkout with uncommitted changes (their commit ends in "
                     "`-dirty`), so for them the commit alone does not say what code ran.")
    if prov["run_code"]:
        older = (f"; {prov['without_run_code']} older record(s) predate the hash" if prov["without_run_code"] else "")
        parts.append(f"{prov['records'] - prov['without_run_code']} record(s) carry a hash of the run code as it was "
                     f"on disk (`versions.run_code`, uncommitted changes included): {len(prov['run_code'])} distinct "
                     f"value(s) ({', '.join(prov['run_code'])}){older}.")
    return "\n\n".join(parts)


def progress_text(dataset: str, results_dir: os.PathLike | None = None) -> str | None:
    """A banner when the dataset's book preset is not complete (how many runs are missing, the command that
    runs them); None when it is complete or the dataset has no book preset."""
    progress = book_progress(dataset, results_dir)
    if not progress["missing"]:
        return None
    estimate = (f" {progress['estimated']} of the missing runs have a recorded other seed; at those records' speed "
                f"they take about {progress['estimated_hours']:.1f} hours of run time." if progress["estimated"] else "")
    return (f"**The `{progress['preset']}` preset is not complete:** {progress['completed']} of its "
            f"{progress['planned']} runs are recorded, {progress['missing']} are not yet, so some points and seed "
            f"bands below are missing. `{progress['command']}` runs the missing ones (it skips the recorded).{estimate}")


def same_network_table(records: Iterable[Mapping]) -> tuple[pd.DataFrame, str]:
    """The runs that trained the same network (:func:`~kr_lib.runs.records.same_networks`), one row per group
    with its runs, thread counts, accuracies and their difference, and a sentence: how many groups with
    equal thread counts have identical accuracy, and how far apart the others are."""
    twins = same_networks(records)
    if twins.empty:
        return twins, "No two runs trained the same network."
    twins = twins.assign(
        runs=twins["modes"].map(" & ".join),
        threads=twins["torch_threads"].map(lambda t: " & ".join(map(str, t))),
        accuracies=twins["test_accuracies"].map(lambda a: " & ".join(f"{x:.4f}" for x in a)),
        difference=twins["test_accuracies"].map(lambda a: max(a) - min(a)),
    )
    equal = twins["torch_threads"].map(lambda t: len(set(t)) == 1)
    same, mixed = twins[equal], twins[~equal]
    sentence = (f"{len(twins)} group(s): {int(same['identical_accuracy'].sum())} of the {len(same)} run on equal "
                "thread counts have identical accuracy; "
                + (f"the {len(mixed)} run on different thread counts differ by {mixed['difference'].min():.4f} to "
                   f"{mixed['difference'].max():.4f}." if len(mixed) else "none ran on different thread counts."))
    columns = ["design", "kr_fraction", "R", "K", "seed", "parameters", "runs", "threads", "accuracies", "difference"]
    return twins[columns], sentence


#: A test accuracy within this many chance levels' worth of chance (1/classes) counts as "near chance".
NEAR_CHANCE = 1.5


def chance_level_text(record: Mapping) -> str | None:
    """For the page of one run: a sentence when the run's test accuracy is near chance level (below
    :data:`NEAR_CHANCE` x 1/classes, the classes from ``record["data"]``): what it means and which
    parameters would let it learn (more ``train_limit`` samples, more ``epochs``); None when it learned, or
    when the record has no accuracy or class count."""
    accuracy = (record.get("metrics") or {}).get("test_accuracy")
    classes = (record.get("data") or {}).get("num_classes")
    if accuracy is None or not classes:
        return None
    chance = 1 / classes
    if accuracy >= NEAR_CHANCE * chance:
        return None
    p = record.get("parameters") or {}
    samples = p.get("train_limit") or (record.get("data") or {}).get("train_size") or 0
    epochs = p.get("epochs") or 1
    steps = -(-samples // (p.get("batch_size") or 1)) * epochs
    train = (record.get("metrics") or {}).get("train_accuracy")
    train_part = f" (training accuracy {train:.4f})" if train is not None else ""
    return (f"**This run ends near chance level:** test accuracy {accuracy:.4f}{train_part} against "
            f"1/{classes} = {chance:.4f} for guessing. That is what a run this short gives, not a defect: it saw "
            f"{samples * epochs:,} training images ({samples:,} samples x {epochs} epoch(s)), {steps} optimizer "
            "steps, too few for the weights and the batch-norm statistics to settle. The page shows what one run "
            "does and writes; to see it learn, raise `train_limit` (e.g. 6000, or None for the whole split) and "
            "`epochs` (e.g. 3), or read the results pages, whose runs train on the whole split.")
