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


# ----------------------------------------------------------------------------- titles and one run's page

def test_each_results_page_has_its_own_title():
    from kr_lib.runs.pages import TITLES, results_title

    titles = {results_title(d) for d in TITLES}
    assert len(titles) == len(TITLES) and results_title("cifar10") == "Results: CIFAR-10"
    with pytest.raises(ValueError, match="unknown dataset"):
        results_title("mnist")


def test_a_run_near_chance_says_so_and_names_the_parameters_that_fix_it():
    from kr_lib.runs.pages import chance_level_text

    short = synthetic_record(0.1015, train_limit=256, epochs=1, batch_size=128)
    short["data"] = {"num_classes": 10, "train_size": 60000}
    text = chance_level_text(short)
    assert "near chance level" in text and "0.1015" in text and "1/10 = 0.1000" in text
    assert "2 optimizer steps" in text and "`train_limit`" in text and "`epochs`" in text
    learned = synthetic_record(0.776, train_limit=6000, epochs=3)
    learned["data"] = {"num_classes": 10}
    assert chance_level_text(learned) is None
    assert chance_level_text(synthetic_record(None, status="failed")) is None  # no accuracy, no sentence


# ----------------------------------------------------------------------------- figures

def _table(records):
    from kr_lib.runs.records import records_table

    return records_table(records)


def _budget_runs(budget=5000, dense_params=5000):
    records = []
    for s in (0, 1):
        dense = synthetic_record(0.9 + 0.001 * s, design="dense", kr_ratio="1", R=8, seed=s)
        dense["network"]["total_parameters"] = dense_params
        records.append(dense)
        for kr, acc in (("1", 0.85), ("4", 0.80)):
            r = synthetic_record(acc + (0.002 if kr == "1" else 0.006) * s, design="bottleneck", kr_ratio=kr,
                                 R=None, param_budget=budget, seed=s)
            r["network"]["total_parameters"] = budget
            records.append(r)
    return records


def test_the_dense_baseline_is_drawn_only_in_a_panel_of_its_setting():
    import matplotlib

    matplotlib.use("Agg")
    from kr_lib.runs.figures import _completed, dense_baseline, plot_accuracy_vs_kr

    same = _completed(_table(_budget_runs(dense_params=5050)))  # within 2 % of the budget
    runs = same[(same["mode"] == "budget") & (same["design"] != "dense")]
    assert len(dense_baseline(same, runs, "budget")) == 2
    other = _completed(_table(_budget_runs(dense_params=20418)))  # another size: no baseline
    runs = other[(other["mode"] == "budget") & (other["design"] != "dense")]
    assert dense_baseline(other, runs, "budget").empty
    fig = plot_accuracy_vs_kr(_table(_budget_runs(dense_params=20418)))
    (ax,) = fig.axes
    drawn = [y for line in ax.lines for y in line.get_ydata()]
    drawn += [y for c in ax.collections for _, y in c.get_offsets()]
    assert drawn and max(drawn) < 0.89  # the dense runs (0.9) of another size are not drawn
    assert any("no dense baseline of this setting" in t.get_text() and "20,418" in t.get_text() for t in ax.texts)


def test_size_scatter_has_a_panel_per_design_and_few_tick_labels():
    import matplotlib

    matplotlib.use("Agg")
    from kr_lib.runs.figures import plot_accuracy_vs_size

    records = [synthetic_record(0.8, design=d, kr_ratio=kr, R=8, seed=0)
               for d in ("bottleneck", "separable", "resnext", "inverted_residual") for kr in ("1/4", "1", "4")]
    for i, r in enumerate(records):
        r["network"]["df"] = 18_000 + 1_000 * i  # a span under a decade: the default labels every minor tick
    fig = plot_accuracy_vs_size(_table(records), "df")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert sorted(ax.get_title() for ax in panels) == ["bottleneck", "inverted_residual", "resnext", "separable"]
    fig.canvas.draw()
    labels = [t.get_text() for t in panels[-1].get_xticklabels(minor=False) if t.get_text()]
    assert 1 <= len(labels) <= 5 and all(t.endswith("k") for t in labels), labels
    assert not [t.get_text() for t in panels[-1].get_xticklabels(minor=True) if t.get_text()]
    with pytest.raises(ValueError, match="size must be one of"):
        plot_accuracy_vs_size(_table(records), "width")


def test_forest_plot_draws_each_effect_with_its_interval_and_the_noise_floor():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.patches import Polygon, Rectangle

    from kr_lib.runs.figures import plot_kr_effects
    from kr_lib.runs.findings import paired_kr_effects

    effects = paired_kr_effects(_table(_budget_runs()))
    assert len(effects) == 1 and effects["n"].iloc[0] == 2
    fig = plot_kr_effects({"Fashion-MNIST": (effects, 0.003), "SVHN": (effects.iloc[:0], None)})
    (ax,) = fig.axes  # the dataset without effects is left out
    assert [t.get_text() for t in ax.get_yticklabels()] == ["bottleneck, K/R = 4"]
    assert "noise floor f = 0.0030" in ax.get_title()
    band = [p for p in ax.patches if isinstance(p, (Polygon, Rectangle))]
    assert band  # the +-f band
    interval = [l for l in ax.lines if len(l.get_xdata()) == 2 and l.get_ydata()[0] == l.get_ydata()[1]]
    assert interval and interval[0].get_xdata()[0] < effects["mean"].iloc[0] < interval[0].get_xdata()[1]
    with pytest.raises(ValueError, match="no paired K/R effects"):
        plot_kr_effects({"SVHN": (effects.iloc[:0], None)})


# ----------------------------------------------------------------------------- the book's Sphinx extension

def test_the_book_drops_hidden_cells_that_show_nothing_and_the_injected_parameters_of_a_removed_cell():
    from docutils import nodes
    from docutils.utils import new_document

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "book" / "_ext"))
    try:
        from kr_book_sphinx import drop_empty_hidden_cells
    finally:
        sys.path.pop(0)

    def cell(tags, hide=None, output=True):
        node = nodes.container(nb_element="cell_code", cell_metadata={"tags": tags})
        if hide:
            node["hide_mode"] = hide
        node += nodes.container(nb_element="cell_code_source")
        if output:
            node += nodes.container(nb_element="cell_code_output")
        return node

    doc = new_document("page")
    kept = [cell(["hide-input"], "input"), cell([])]
    doc += [cell(["parameters", "remove-input"], output=False), cell(["injected-parameters"], output=False),
            cell(["hide-input"], "input", output=False), *kept]
    drop_empty_hidden_cells(None, doc)
    left = [n for n in doc.children if n.get("nb_element") == "cell_code"]
    assert left[1:] == kept and len(left) == 3  # the parameters cell itself is kept (it renders nothing)
    doc2 = new_document("page")
    doc2 += [cell(["parameters"]), cell(["injected-parameters"])]
    drop_empty_hidden_cells(None, doc2)
    assert len(doc2.children) == 2  # a shown parameters cell keeps its injected values beside it


def test_run_code_text_lists_changed_files_as_code(monkeypatch):
    """A changed file such as kr_lib/data/__init__.py must not lose its underscores to Markdown's bold."""
    import kr_lib.runs.pages as pages

    change = {"commit": "abc1234", "subject": "Data: read IDX in place", "files": ["kr_lib/data/__init__.py"]}
    monkeypatch.setattr(pages, "code_changes", lambda commits, paths, root=None: [change])
    records = _records()
    for r, commit in zip(records, ("0" * 40, "1" * 40, "1" * 40)):
        r["git_commit"] = commit
    text = pages.run_code_text(records)
    assert "- `abc1234` Data: read IDX in place (`kr_lib/data/__init__.py`)" in text
