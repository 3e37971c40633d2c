"""The measurement cache (kr_lib.measured.cache), the evidence row of claim 5 and the intro's verdict paragraph
(kr_lib.measured.findings), on a tiny trained network and on synthetic measurement tables."""
from __future__ import annotations

import ast
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from kr_lib.cli import main
from kr_lib.measured import cache
from kr_lib.measured.cache import (DEFAULTS, cache_path, cache_status, cached_table, measured_table,
                                   measurement_parameters, read_cached)

TINY = {"fit_limit": 256, "test_limit": 256}


@pytest.fixture
def results(tiny_run, tmp_path):
    """A results folder holding a copy of the tiny run's record and weights (the cache is written beside them)."""
    folder = tmp_path / "results" / "fashion_mnist"
    folder.mkdir(parents=True)
    for suffix in (".json", ".pt"):
        shutil.copy(tiny_run.path.with_suffix(suffix), folder)
    return folder / tiny_run.path.name


def _assert_same_table(a: pd.DataFrame, b: pd.DataFrame):
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    lists = ["eigenvalues", "projection eigenvalues", "kernel singular values", "ranks", "pruned accuracy"]
    pd.testing.assert_frame_equal(a.drop(columns=lists), b.drop(columns=lists), check_dtype=False)
    for col in ("eigenvalues", "projection eigenvalues", "kernel singular values"):
        for x, y in zip(a[col], b[col]):
            np.testing.assert_array_equal(x, y)
    assert list(a["ranks"]) == list(b["ranks"]) and list(a["pruned accuracy"]) == list(b["pruned accuracy"])


def test_measured_rows_are_cached_read_back_unchanged_and_never_reused_stale(results, monkeypatch):
    params = measurement_parameters(**TINY)
    first = measured_table([results], progress=False, **TINY)
    assert first.attrs["measured_now"] == 1 and first.attrs["cached"] == 0
    entry = json.loads(cache_path(results).read_text())
    assert entry["key"]["parameters"] == params and entry["key"]["code"] == cache.code_hash()
    assert entry["measured"]["cpu_s"] > 0 and "/" not in json.dumps(entry["attrs"])  # no machine path
    second = measured_table([results], progress=False, **TINY)
    assert second.attrs["cached"] == 1 and second.attrs["measured_now"] == 0
    _assert_same_table(first, second)
    # other parameters: the entry is stale for them, measured again (and replaces the entry)
    assert cache_status([results], measurement_parameters(fit_limit=300, test_limit=256))[results] == "stale"
    assert read_cached(results, measurement_parameters(fit_limit=300, test_limit=256)) is None
    # the measuring code changed: stale, whatever the parameters
    monkeypatch.setattr(cache, "code_hash", lambda: "0" * 12)
    assert cache_status([results], params)[results] == "stale"
    assert cached_table([results], params).attrs["stale"] == 1 and cached_table([results], params).empty
    third = measured_table([results], progress=False, **TINY)
    assert third.attrs["measured_now"] == 1 and third.attrs["stale"] == 1
    monkeypatch.undo()
    # other weights: stale too
    assert cache_status([results], params)[results] == "stale"  # the entry now holds the fake code hash
    measured_table([results], progress=False, **TINY)
    assert cache_status([results], params)[results] == "cached"
    results.with_suffix(".pt").write_bytes(results.with_suffix(".pt").read_bytes() + b"\0")
    assert cache_status([results], params)[results] == "stale"


def test_a_damaged_entry_is_measured_again_and_the_cache_is_no_record(results):
    cache_path(results).parent.mkdir()
    cache_path(results).write_text("{not json")
    assert cache_status([results], measurement_parameters(**TINY))[results] == "missing"
    from kr_lib.measured import records_with_weights

    measured_table([results], progress=False, **TINY)
    assert records_with_weights(results.parent) == ([results], [])  # measured/ is not read as records


def test_an_interrupted_measurement_keeps_the_networks_already_finished(results, monkeypatch):
    second = results.parent.parent.parent / "other" / "fashion_mnist" / results.name  # the same run, elsewhere
    second.parent.mkdir(parents=True)
    for suffix in (".json", ".pt"):
        shutil.copy(results.with_suffix(suffix), second.parent)
    real = cache.measure_record
    calls = []

    def measure_then_stop(path, **kwargs):
        if calls:
            raise KeyboardInterrupt  # Ctrl-C during the second network
        calls.append(path)
        return real(path, **kwargs)

    monkeypatch.setattr(cache, "measure_record", measure_then_stop)
    with pytest.raises(KeyboardInterrupt):
        measured_table([second, results], progress=False, **TINY)
    status = cache_status([second, results], measurement_parameters(**TINY))
    assert status == {second: "cached", results: "missing"}
    assert not list(cache_path(results).parent.glob(".*partial"))


def test_measurement_parameters_are_checked():
    assert measurement_parameters()["fit_limit"] == DEFAULTS["fit_limit"]
    assert measurement_parameters(ranks=[2, 8, 8])["ranks"] == [8, 2]
    with pytest.raises(ValueError, match="unknown measurement parameter"):
        measurement_parameters(fit=3)
    with pytest.raises(ValueError, match="fit_limit must be"):
        measurement_parameters(fit_limit=1)
    with pytest.raises(ValueError, match="ranks must be"):
        measurement_parameters(ranks=[0])


def test_the_chapter_and_kr_measure_default_to_the_cache_parameters():
    from kr_lib.book import executed_pages
    from kr_lib.execute import notebook_parameters
    from kr_lib.runs.records import REPO_ROOT

    nb = notebook_parameters(REPO_ROOT / "notebooks" / "measured_redundancy.ipynb")
    book = executed_pages(REPO_ROOT)["notebooks/measured_redundancy.ipynb"]["parameters"]
    for name in ("fit_limit", "test_limit"):
        assert book.get(name, ast.literal_eval(nb[name])) == DEFAULTS[name], name
    import argparse

    from kr_lib.commands.measure import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["fashion_mnist"])
    assert (args.fit_limit, args.test_limit, args.ranks) == (DEFAULTS["fit_limit"], DEFAULTS["test_limit"], None)


def test_kr_measure_caches_each_network_and_reads_it_the_next_time(results, capsys):
    root = results.parent.parent
    argv = ["measure", "fashion_mnist", "--results-dir", str(root), "--fit-limit", "256", "--test-limit", "256",
            "--threads", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"measured {results.stem}" in out and "CPU-s" in out and "1 network(s) measured, 0 read" in out
    assert cache_path(results).is_file()
    assert main(argv) == 0
    assert "0 network(s) measured, 1 read from the cache" in capsys.readouterr().out
    assert main(argv + ["--force"]) == 0
    assert "1 network(s) measured" in capsys.readouterr().out


# -- the evidence row and the introduction's paragraph -------------------------------------------------------------

def _synthetic(drops_at_R: list[list[float]], design="bottleneck") -> pd.DataFrame:
    """A measured table built by hand: network i has one block with K/R = 2 per entry of drops_at_R[i] (its
    loss pruned to R directions, points) and one block with K/R = 1."""
    rows = []
    for i, drops in enumerate(drops_at_R):
        for j, drop in enumerate(drops):
            rows.append({"run_id": f"{design}-net{i}", "block": f"stages.{j}.0", "design": design, "K": 32, "R": 16,
                         "K/R": 2.0, "drop at R": drop, "drop at K/2": drop, "pruned dimension": 16 if drop < 0.5 else 32,
                         "components 99%": 14 + j})
        rows.append({"run_id": f"{design}-net{i}", "block": "stages.9.0", "design": design, "K": 16, "R": 16,
                     "K/R": 1.0, "drop at R": 0.0, "drop at K/2": 2.0, "pruned dimension": 16, "components 99%": 15})
    table = pd.DataFrame(rows)
    table.attrs.update(fit_split="fashion_mnist train (2000 samples)", test_split="fashion_mnist test (10000 samples)")
    return table


def test_the_dataset_verdict_supports_contradicts_or_cannot_tell():
    from kr_lib.measured.findings import evidence_text
    from kr_lib.measured.verdict import dataset_verdict

    supports = _synthetic([[0.1, 0.2]] * 4)
    v = dataset_verdict(supports)
    assert v["verdict"] == "supports" and v["share"] == 1.0 and v["share low"] == 1.0 and v["networks K/R > 1"] == 4
    cell = evidence_text(supports, 4, "fashion_mnist")
    assert cell["verdict"] == "supports" and "8 of 8 blocks with K/R > 1" in cell["text"] and "**supports**" in cell["text"]
    contradicts = _synthetic([[2.0, 3.0]] * 3 + [[0.1, 4.0]])
    v = dataset_verdict(contradicts)
    assert v["verdict"] == "contradicts" and v["share"] == pytest.approx(1 / 8) and v["share high"] < 0.5
    assert evidence_text(contradicts, 5, "fashion_mnist")["text"].count("4 of the 5 with saved weights measured") == 1
    mixed = _synthetic([[0.1, 0.1], [3.0, 3.0], [0.1, 0.1], [3.0, 3.0], [0.1, 3.0]])
    v = dataset_verdict(mixed)
    assert v["verdict"] == "inconclusive" and v["share low"] < 0.5 < v["share high"] and v["reason"] is None
    few = dataset_verdict(_synthetic([[0.1]] * 2))
    assert few["verdict"] == "inconclusive" and "fewer than 3" in few["reason"] and np.isnan(few["share low"])
    none_above_one = _synthetic([[]] * 4)
    assert evidence_text(none_above_one, 4, "fashion_mnist")["text"].startswith("no measured block has K/R > 1")
    # the correlations beside the verdict: the measured dimension here follows neither R nor K
    assert not np.isnan(dataset_verdict(supports)["rho K"])


def test_the_share_interval_resamples_networks_not_blocks():
    # 10 networks, half of them holding at R in all 10 of their K/R > 1 blocks and half in none: 100 blocks,
    # share 1/2. Resampling blocks would give an interval of about +-0.1; resampling the 10 networks, of about
    # +-0.3 (a binomial share of 10 draws), so that the networks, not the blocks, are the sample size.
    from kr_lib.measured.verdict import dataset_verdict

    table = _synthetic([[0.1] * 10] * 5 + [[3.0] * 10] * 5)
    v = dataset_verdict(table)
    assert v["share"] == 0.5 and v["blocks K/R > 1"] == 100
    assert v["share low"] < 0.3 and v["share high"] > 0.7 and v["verdict"] == "inconclusive"
    assert dataset_verdict(table)["share low"] == v["share low"]  # seeded: the same interval at every build


def test_evidence_of_an_empty_dataset_and_of_networks_not_yet_measured(results, tmp_path):
    from kr_lib.measured.findings import evidence
    from kr_lib.runs.evidence import measured_evidence

    empty = tmp_path / "empty"
    (empty / "fashion_mnist").mkdir(parents=True)
    assert evidence("fashion_mnist", empty) is None
    assert measured_evidence("fashion_mnist", empty) == {"verdict": None, "text": "not measured yet on this dataset"}
    root = results.parent.parent
    cell = evidence("fashion_mnist", root)  # weights, no cache at the chapter's parameters
    assert cell["verdict"] is None and "not measured yet: 1 network with saved weights" in cell["text"]
    assert "`kr measure fashion_mnist`" in cell["text"]


def test_evidence_reads_the_cache_at_the_chapters_parameters(results, monkeypatch):
    from kr_lib.measured import findings
    from kr_lib.runs.evidence import measured_evidence

    root = results.parent.parent
    measured_table([results], progress=False, **TINY)  # cached at tiny parameters: not the chapter's
    assert "1 cached at other parameters or by older code" in findings.evidence("fashion_mnist", root)["text"]
    monkeypatch.setattr(cache, "DEFAULTS", {**DEFAULTS, **TINY})  # the chapter's parameters, made tiny
    cell = measured_evidence("fashion_mnist", root)
    assert cell["verdict"] == "inconclusive" and "1 network;" in cell["text"]  # one network: too few to tell


def test_the_intro_paragraph_comes_from_the_measurements_and_the_intro_renders_it(results, tmp_path, monkeypatch):
    from docutils.core import publish_string
    from myst_parser.parsers.docutils_ import Parser

    from kr_lib.book import GENERATED_SOURCES, stage_sources, write_generated_sources
    from kr_lib.measured.findings import intro_paragraph, intro_text
    from kr_lib.runs.records import REPO_ROOT

    supports = intro_text({"fashion_mnist": (_synthetic([[0.1, 0.2]] * 4), 4)})
    assert "On Fashion-MNIST (4 networks, 1 design, K/R from 1 to 2; spectra from 2,000 training samples, " \
           "accuracies on 10,000 test samples)" in supports
    assert "holds in 8 of the 8 blocks with K/R > 1" in supports and "**supports**" in supports
    assert "it holds in every such block of *bottleneck*" in supports and "Moving Fashion-MNIST" in supports
    table = pd.concat([_synthetic([[0.1, 0.2]] * 4), _synthetic([[2.0, 3.0]] * 4, design="separable")],
                      ignore_index=True)
    changed = intro_text({"fashion_mnist": (table, 8)})
    assert changed != supports and "holds in 8 of the 16 blocks" in changed and "in none for *separable*" in changed
    assert "the largest loss is 3.00 points (separable, K/R = 2)" in changed
    assert "No record of this book has saved weights yet" in intro_text({})
    # the build writes the paragraph of the records into the staged sources, and the introduction includes it
    root = results.parent.parent
    monkeypatch.setattr(cache, "DEFAULTS", {**DEFAULTS, **TINY})
    measured_table([results], progress=False, **TINY)
    src = tmp_path / "src"
    stage_sources(REPO_ROOT, src, skip=set(GENERATED_SOURCES))
    assert write_generated_sources(REPO_ROOT, src, results_dir=root) == list(GENERATED_SOURCES)
    paragraph = intro_paragraph(root)
    assert "On Fashion-MNIST (1 network, 1 design, K/R = 2" in paragraph
    assert (src / GENERATED_SOURCES[0]).read_text() == paragraph + "\n"
    intro = src / "book" / "intro.md"
    html = publish_string(intro.read_text(), source_path=str(intro), parser=Parser(), writer_name="html5",
                          settings_overrides={"report_level": 5, "halt_level": 5}).decode()
    assert "<strong>Measured redundancy.</strong>" in html and "On Fashion-MNIST (1 network, 1 design" in html


def test_the_checkouts_measured_verdict_is_the_records_own():
    # a plain `jupyter-book build .` reads the committed copy; it must say what the committed cache says
    from kr_lib.book import GENERATED_SOURCES
    from kr_lib.measured.findings import intro_paragraph
    from kr_lib.runs.records import REPO_ROOT

    committed = (REPO_ROOT / GENERATED_SOURCES[0]).read_text()
    assert committed == intro_paragraph(REPO_ROOT / "results") + "\n", (
        f"{GENERATED_SOURCES[0]} is not the paragraph of the committed measurements: run `kr book --generated-only`")


def test_the_benchmarks_baseline_measures_the_same_network_alike_and_is_undone(tiny_run):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import bench_measured

    from kr_lib.measured import measure, pruning

    now = measure.measure_record(tiny_run.path, progress=False, **TINY)
    with bench_measured.as_first_built():
        assert pruning.rank_grid(24, 6) == [16, 12, 8, 6, 4, 3, 2, 1]  # the grid as first built
        before = measure.measure_record(tiny_run.path, progress=False, **TINY)
    assert pruning.rank_grid(24, 6) == [12, 6, 3, 1]  # restored
    np.testing.assert_allclose(before["accuracy at R"], now["accuracy at R"], atol=1 / 256)
    for a, b in zip(before["eigenvalues"], now["eigenvalues"]):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10 * a[0])
