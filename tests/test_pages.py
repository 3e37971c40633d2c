"""kr_lib.runs.pages: the sentences of a results page come from the records and say what they hold."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from runs_helpers import synthetic_record  # noqa: E402

from kr_lib.runs.pages import (  # noqa: E402
    dataset_title, no_records_text, progress_text, provenance_text, run_code_text, same_network_table,
)


def _records():
    a = synthetic_record(0.8, design="bottleneck", kr_ratio="1", R=8, seed=0)
    b = synthetic_record(0.6, design="bottleneck", kr_ratio="4", R=8, seed=0)
    c = synthetic_record(None, status="failed", design="separable", kr_ratio="4", R=8, seed=0)
    for r, seconds in ((a, 1800.0), (b, 1800.0), (c, 0.0)):
        r["timing"]["wall_time_s"] = seconds
    return [a, b, c]


def test_unknown_dataset_names_the_accepted_ones():
    assert dataset_title("moving_fashion_mnist") == "Moving Fashion-MNIST"
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; accepted: fashion_mnist, moving_fashion_mnist"):
        dataset_title("mnist")


def test_an_empty_page_gives_the_commands_that_fill_it():
    text = no_records_text("cifar10")
    assert "No result records have been committed for CIFAR-10" in text
    assert "kr sweep sweeps/cifar10.yaml --preset paper --device cuda --download" in text


def test_provenance_text_counts_records_time_and_statuses():
    text = provenance_text(_records())
    assert text.startswith("3 records")
    assert "1.0 hours (60 minutes) of run time" in text
    assert "2 completed, 1 failed" in text
    assert "resumed" not in text


def test_run_code_text_says_when_it_cannot_check(tmp_path):
    records = _records()
    for r, commit in zip(records, ("0" * 40 + "-dirty", "0" * 40, "1" * 40)):
        r["git_commit"] = commit
    text = run_code_text(records, root=tmp_path)  # no git history here
    assert "cannot be checked here" in text
    assert "1 record(s) ran on a checkout with uncommitted changes" in text
    assert "3 record(s) carry a hash of the run code" in text and "1 distinct value(s)" in text


def test_progress_banner_counts_the_missing_runs(tmp_path):
    text = progress_text("moving_fashion_mnist", tmp_path)  # an empty results folder
    assert text.startswith("**The `book` preset is not complete:** 0 of its 62 runs are recorded, 62 are not yet")


def test_same_network_sentence_separates_equal_and_different_thread_counts():
    fixed = synthetic_record(0.8, design="bottleneck", kr_ratio="1", R=8, seed=0)
    budget = synthetic_record(0.8, design="bottleneck", kr_ratio="1", R=None, param_budget=1200, seed=0)
    fixed1 = synthetic_record(0.7, design="bottleneck", kr_ratio="1", R=8, seed=1)
    budget1 = synthetic_record(0.7025, design="bottleneck", kr_ratio="1", R=None, param_budget=1200, seed=1)
    for r, threads in ((fixed, 1), (budget, 1), (fixed1, 1), (budget1, 2)):
        r["timing"]["torch_threads"] = threads
    table, sentence = same_network_table([fixed, budget, fixed1, budget1])
    assert len(table) == 2 and list(table["threads"]) == ["1 & 1", "2 & 1"]
    assert sentence == ("2 group(s): 1 of the 1 run on equal thread counts have identical accuracy; "
                        "the 1 run on different thread counts differ by 0.0025 to 0.0025.")
    assert same_network_table([fixed])[1] == "No two runs trained the same network."
