"""Ablation runs, records, sweeps and the commands over them (kr_lib.runs, kr ablate/sweep/results/reproduce)."""
from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from runs_helpers import fake_notebook, synthetic_record  # noqa: E402

from kr_lib.cli import main as kr_main
from kr_lib.execute import notebook_parameters
from kr_lib.runs import (
    DEFAULTS, aggregate, check_parameters, parameters_from_namespace, read_records, records_table, run_id,
    write_json_atomic, write_record,
)
from kr_lib.runs.ablation import scientific
from kr_lib.runs.records import provenance_summary, run_time_s, same_networks
from kr_lib.runs.cli_values import parse_assignments
from kr_lib.runs.reproduce import compare_metrics
from kr_lib.runs.notebook_run import execute_run
from kr_lib.runs.presets import BOOK_PRESETS, book_progress, fill_commands
from kr_lib.runs.runner import run_sweep
from kr_lib.runs.sweepfile import load_sweep

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


# ----------------------------------------------------------------------------- identity and records

def test_run_id_depends_on_the_science_only():
    p = check_parameters({"design": "bottleneck", "kr_ratio": "1/4", "R": 8})
    same_elsewhere = check_parameters({"design": "bottleneck", "kr_ratio": 0.25, "R": 8, "device": "cpu",
                                       "output_dir": "/elsewhere", "data_dir": "/data", "sweep": {"preset": "x"}})
    assert run_id(scientific(p)) == run_id(scientific(same_elsewhere))
    for change in ({"seed": 1}, {"kr_ratio": 4}, {"R": 16}, {"epochs": 2}, {"train_limit": 100}, {"lr": 0.05}):
        other = check_parameters({"design": "bottleneck", "kr_ratio": "1/4", "R": 8, **change})
        assert run_id(scientific(other)) != run_id(scientific(p)), change
    assert run_id(scientific(p)).startswith("bottleneck-kr1over4-R8-seed0-")


def _committed_records(dataset: str, n: int) -> list[Path]:
    """The first ``n`` of a dataset's records that git tracks (what is committed, not a sweep's new ones)."""
    listed = subprocess.run(["git", "ls-files", f"results/{dataset}/*.json"], cwd=ROOT, capture_output=True,
                            text=True).stdout.split()
    return [ROOT / p for p in sorted(listed)][:n] or sorted((ROOT / "results" / dataset).glob("*.json"))[:n]


@pytest.mark.parametrize("dataset", ["fashion_mnist", "moving_fashion_mnist"])
def test_committed_records_keep_their_run_ids(dataset):
    """The id recomputed from a committed record's parameters, checked as a run's are, is its file name:
    the parameter checks and the id's hash have not moved under the records."""
    paths = _committed_records(dataset, 6)
    assert len(paths) >= 3, f"expected committed records in results/{dataset}"
    for path in paths:
        record = json.loads(path.read_text())
        checked = check_parameters({k: v for k, v in record["parameters"].items() if k in DEFAULTS})
        assert checked.run_id == run_id(scientific(record["parameters"])) == path.stem
        assert checked.mode == record["mode"]


def test_checked_parameters_are_a_frozen_mapping_with_their_id():
    import dataclasses

    from kr_lib.runs import AblationParams

    p = check_parameters({"design": "bottleneck", "kr_ratio": "1/4", "R": 8})
    assert isinstance(p, AblationParams) and check_parameters(p) is p
    assert p.run_id == run_id(p.scientific) and p["mode"] == p.mode == "fixed_r"
    assert list(p) == [*DEFAULTS, "mode"] and dict(p)["kr_ratio"] == "1/4"
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.seed = 1
    moved = p.replace(device="cpu", output_dir="/elsewhere")
    assert moved.run_id == p.run_id and moved.output_dir == "/elsewhere" and p.output_dir is None
    assert p.replace(seed=1).run_id != p.run_id
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        p.replace(epochs=0)
    assert p.record_path() == p.results_root / "fashion_mnist" / f"{p.run_id}.json"


def test_runs_modules_import_without_a_circle_and_pages_without_the_runner():
    code = ("import sys; import kr_lib.runs.records, kr_lib.runs.pages; "
            "print(sorted(m for m in ('kr_lib.runs.runner', 'kr_lib.runs.ray_runner', 'papermill', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    # no import circle among the modules of kr_lib.runs (function-local imports counted too)
    import ast

    graph = {}
    for path in (ROOT / "kr_lib" / "runs").glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported.add(node.module or "")
        graph[path.stem] = {m.split(".")[0] for m in imported} - {""}
    assert "ablation" not in graph["records"]

    def reaches(start, target, seen=()):
        return any(m == target or (m not in seen and reaches(m, target, (*seen, m))) for m in graph.get(start, ()))

    assert not [m for m in graph if m != "__init__" and reaches(m, m)]


def test_write_json_atomic_leaves_only_the_file(tmp_path):
    path = write_json_atomic({"a": float("nan"), "b": [1.5, float("inf")]}, tmp_path / "x" / "r.json")
    assert json.loads(path.read_text()) == {"a": None, "b": [1.5, None]}
    assert [f.name for f in path.parent.iterdir()] == ["r.json"]


def test_write_record_rejects_a_completed_record_without_accuracy(tmp_path):
    rec = synthetic_record(None)
    with pytest.raises(ValueError, match="test_accuracy"):
        write_record(rec, tmp_path)


def test_read_records_reports_every_corrupt_file(tmp_path):
    good = synthetic_record(0.8)
    write_record(good, tmp_path)
    folder = tmp_path / "fashion_mnist"
    (folder / "truncated.json").write_text(json.dumps(good)[:50])
    (folder / "nofields.json").write_text("{}")
    renamed = dict(good)
    (folder / "renamed.json").write_text(json.dumps(renamed))
    records, corrupt = read_records(folder)
    assert [r["run_id"] for r in records] == [good["run_id"]]
    reasons = {c.path.name: c.reason for c in corrupt}
    assert set(reasons) == {"truncated.json", "nofields.json", "renamed.json"}
    assert "not valid JSON" in reasons["truncated.json"]
    assert "missing field" in reasons["nofields.json"]
    assert "does not match its run_id" in reasons["renamed.json"]


def test_aggregate_is_mean_and_spread_over_seeds(tmp_path):
    import random

    rng = random.Random(0)
    accs = {kr: [rng.uniform(0.5, 0.9) for _ in range(3)] for kr in ("1/4", "4")}
    records = [synthetic_record(a, design="bottleneck", kr_ratio=kr, R=8, seed=s)
               for kr, values in accs.items() for s, a in enumerate(values)]
    records.append(synthetic_record(None, status="failed", design="bottleneck", kr_ratio="4", R=8, seed=9))
    table = records_table(records)
    assert len(table) == 7
    summary = aggregate(table)
    assert list(summary["kr_fraction"]) == ["1/4", "4"]  # sorted by K/R
    for _, row in summary.iterrows():
        values = accs[row["kr_fraction"]]
        assert row["seeds"] == 3
        assert math.isclose(row["accuracy_mean"], statistics.mean(values))
        assert math.isclose(row["accuracy_std"], statistics.stdev(values))
    assert dict(zip(summary["kr_fraction"], summary["failed"])) == {"1/4": 0, "4": 1}


def test_failed_and_diverged_runs_are_counted_apart(tmp_path, capsys):
    """A diverged run trained and its loss blew up; a failed one raised: aggregate and kr results (the real
    command) give each its own column and count."""
    cfg = {"design": "bottleneck", "kr_ratio": "4", "R": 8}
    records = [synthetic_record(0.7, seed=0, **cfg), synthetic_record(None, status="failed", seed=1, **cfg),
               synthetic_record(None, status="diverged", seed=2, **cfg), synthetic_record(None, status="diverged", seed=3, **cfg),
               synthetic_record(0.6, design="bottleneck", kr_ratio="1/4", R=8, seed=0)]
    summary = aggregate(records_table(records)).set_index("kr_fraction")
    assert (summary.loc["4", "failed"], summary.loc["4", "diverged"], summary.loc["4", "seeds"]) == (1, 2, 1)
    assert (summary.loc["1/4", "failed"], summary.loc["1/4", "diverged"]) == (0, 0)
    assert {"failed", "diverged"} <= set(aggregate(records_table([])).columns)
    for rec in records:
        write_record(rec, tmp_path)
    assert kr_main(["results", "fashion_mnist", "--results-dir", str(tmp_path), "--csv", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "accuracy_mean" in line).split()
    assert header[-2:] == ["failed", "diverged"]
    row = next(line for line in out.splitlines() if line.split()[:2] == ["bottleneck", "fixed_r"] and " 4 " in line)
    assert row.split()[-2:] == ["1", "2"]
    assert "5 records in" in out and "2 completed" in out and "2 diverged" in out and "1 failed" in out
    import pandas as pd

    csv = pd.read_csv(tmp_path / "t.csv")
    assert sorted(zip(csv["failed"], csv["diverged"])) == [(0, 0), (1, 2)]


def test_run_time_counts_the_epochs_before_a_resume():
    whole = synthetic_record(0.8, design="bottleneck", kr_ratio="1", R=8, seed=0)
    whole["timing"] = {"wall_time_s": 100.0, "resumed_from_epoch": 0}
    whole["history"] = [{"epoch": e, "train_time_s": 30.0} for e in (1, 2, 3)]
    resumed = synthetic_record(0.8, design="bottleneck", kr_ratio="1", R=8, seed=1)
    # cut off after epoch 2; the last process trained epoch 3 only
    resumed["timing"] = {"wall_time_s": 35.0, "resumed_from_epoch": 2}
    resumed["history"] = [{"epoch": e, "train_time_s": 30.0} for e in (1, 2, 3)]
    assert run_time_s(whole) == 100.0
    assert run_time_s(resumed) == 35.0 + 60.0
    assert run_time_s({"timing": {}}) is None
    table = records_table([whole, resumed])
    assert list(table["run_time_s"]) == [100.0, 95.0] and list(table["wall_time_s"]) == [100.0, 35.0]
    prov = provenance_summary([whole, resumed])
    assert math.isclose(prov["run_time_hours"], 195 / 3600) and prov["resumed"] == 1


def test_records_carry_the_run_code_hash_and_the_summary_counts_dirty_checkouts():
    from kr_lib.runs.ablation import run_code_hash

    a = synthetic_record(0.8, design="bottleneck", kr_ratio="1", R=8, seed=0)
    b = synthetic_record(0.8, design="bottleneck", kr_ratio="1", R=8, seed=1)
    assert a["versions"]["run_code"] == run_code_hash()
    a["git_commit"], b["git_commit"] = "abc123-dirty", "abc123"
    del b["versions"]["run_code"]  # a record older than the hash
    prov = provenance_summary([a, b])
    assert prov["dirty"] == 1 and prov["run_code"] == [run_code_hash()] and prov["without_run_code"] == 1


def test_same_networks_pairs_a_budget_run_with_the_fixed_r_run_it_equals():
    fixed = synthetic_record(0.8, design="bottleneck", kr_ratio="1", R=8, seed=0)
    budget = synthetic_record(0.8, design="bottleneck", kr_ratio="1", R=None, param_budget=1200, seed=0)
    budget["model"].update(param_budget=1200, budget_error=-0.17)  # the solver landed on R = 8
    other_seed = synthetic_record(0.7, design="bottleneck", kr_ratio="1", R=None, param_budget=1200, seed=1)
    wider = synthetic_record(0.9, design="bottleneck", kr_ratio="1", R=16, seed=0)
    wider["model"].update(R=16, K=16)
    for r, threads in ((fixed, 1), (budget, 2), (other_seed, 1), (wider, 1)):
        r["timing"]["torch_threads"] = threads
    pairs = same_networks([wider, budget, other_seed, fixed])
    assert len(pairs) == 1
    row = pairs.iloc[0]
    assert row["run_ids"] == [budget["run_id"], fixed["run_id"]]  # budget before fixed_r
    assert row["modes"] == ["budget", "fixed_r"] and row["torch_threads"] == [2, 1]
    assert row["identical_accuracy"]
    fixed["metrics"]["test_accuracy"] = 0.81
    assert not same_networks([budget, fixed]).iloc[0]["identical_accuracy"]
    fixed["parameters"]["lr"] = 0.5  # different training: not the same run
    assert same_networks([budget, fixed]).empty


# ----------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("bad, message", [
    ({"colour": 1}, r"unknown parameter\(s\) colour; accepted: dataset"),
    ({"design": "dense", "kr_ratio": 4}, "only K/R = 1"),
    ({"design": "r2plus1d"}, "3D"),
    ({"design": "nope"}, "accepted: dense, bottleneck"),
    ({"dataset": "mnist"}, "accepted: fashion_mnist"),
    ({"R": None}, "exactly one of R"),
    ({"param_budget": 10_000}, "exactly one of R"),
    ({"epochs": 0}, "epochs must be a positive int"),
    ({"optimizer": "adam"}, "sgd, adamw"),
    ({"lr": -1}, "lr must be a positive number"),
    ({"kr_ratio": "a/b"}, "kr_ratio must be"),
    ({"dataset_options": {"frames": 8}}, "does not take option"),
    ({"augment": "yes"}, "augment must be true or false"),
])
def test_bad_parameters_are_named_before_training(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        check_parameters(bad)


def test_parameters_resolve_defaults_and_mode():
    p = check_parameters({"design": "inverted_residual", "kr_ratio": 0.5, "R": None, "param_budget": 20_000,
                          "optimizer": "adamw"})
    assert p["mode"] == "budget" and p["kr_ratio"] == "1/2" and p["lr"] == 1e-3 and p["weight_decay"] == 0.05


def test_namespace_with_an_unknown_name_stops():
    ns = {**DEFAULTS, "epoch": 3, "json": json, "Path": Path, "_private": 1}
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) epoch; accepted"):
        parameters_from_namespace(ns)
    ns.pop("epoch")
    assert parameters_from_namespace(ns)["design"] == DEFAULTS["design"]


def test_notebook_declares_exactly_the_library_parameters():
    import ast

    declared = notebook_parameters(ROOT / "notebooks" / "ablation.ipynb")
    assert set(declared) == set(DEFAULTS)
    # and with the same defaults: the parameters cell is DEFAULTS, value for value, in the same order
    assert list(declared) == list(DEFAULTS)
    assert {name: ast.literal_eval(text) for name, text in declared.items()} == DEFAULTS


def test_command_line_values_are_data_never_code():
    parsed = parse_assignments(["kr_ratio=1/4", "seed=3", "lr=None", "R=null", "augment=false",
                                "dataset_options={frames: 8}", "design=__import__('os').system('false')"])
    assert parsed == {"kr_ratio": "1/4", "seed": 3, "lr": None, "R": None, "augment": False,
                      "dataset_options": {"frames": 8}, "design": "__import__('os').system('false')"}
    with pytest.raises(ValueError, match="name=value"):
        parse_assignments(["epochs"])
    with pytest.raises(ValueError, match="twice"):
        parse_assignments(["seed=1", "seed=2"])


# ----------------------------------------------------------------------------- sweep files

def write_sweep(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


SMALL = """
dataset: fashion_mnist
parameters: {epochs: 1, train_limit: 256, test_limit: 256, stages: 2, stem_stride: 2}
grids:
  dense: {design: [dense], kr_ratio: [1], R: [4], seed: [0, 1]}
  fixed_r: {design: [bottleneck, separable], kr_ratio: ["1/2", 2], R: [4], seed: [0, 1]}
  budget: {design: [bottleneck], kr_ratio: ["1/2", 2], param_budget: [3000], seed: [0, 1]}
presets:
  one: {parameters: {epochs: 2}, axes: {seed: [0]}, grids: {fixed_r: {design: [separable]}, budget: null}}
"""


def test_sweep_grid_is_the_product_of_its_lists(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "s.yaml", SMALL))
    assert len(sweep.runs) == 2 + 2 * 2 * 2 + 2 * 2
    assert [p["seed"] for p in sweep.runs] == sorted(p["seed"] for p in sweep.runs)  # seed 0 first
    budget = [p for p in sweep.runs if p["mode"] == "budget"]
    assert budget and all(p["R"] is None and p["param_budget"] == 3000 for p in budget)
    one = load_sweep(tmp_path / "s.yaml", "one")
    assert len(one.runs) == 1 + 2 and all(p["epochs"] == 2 and p["seed"] == 0 for p in one.runs)
    assert {p["design"] for p in one.runs} == {"dense", "separable"}


@pytest.mark.parametrize("text, preset, message", [
    (SMALL, "nope", "no preset 'nope'; it has: one"),
    (SMALL.replace("grids:", "gridz:"), None, "unknown key"),
    (SMALL.replace("R: [4], seed", "R: [4], colour: [1], seed"), None, "unknown key.*colour"),
    (SMALL.replace('kr_ratio: ["1/2", 2], R: [4]', 'kr_ratio: ["1/3", 2], R: [4]'), None,
     r"grid 'fixed_r', run .*must be a multiple"),
    (SMALL.replace("parameters: {epochs: 1,", "parameters: {device: cuda, epochs: 1,"), None, "unknown key.*device"),
])
def test_bad_sweep_files_fail_before_any_run(tmp_path, text, preset, message):
    with pytest.raises(ValueError, match=message):
        load_sweep(write_sweep(tmp_path / "s.yaml", text), preset)


def _check_sweep_file(path: Path, presets) -> None:
    import yaml

    spec = yaml.safe_load(path.read_text())
    assert spec["dataset"] in BOOK_PRESETS and BOOK_PRESETS[spec["dataset"]] in spec["presets"]
    for preset in presets(spec):
        sweep = load_sweep(path, preset)  # every run checked, its network built on the meta device
        assert sweep.runs
        if preset:
            assert sweep.cost, f"preset {preset} must say what it costs"


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_committed_sweep_files_expand_quick_preset(path):
    _check_sweep_file(path, lambda spec: ["quick"])


@pytest.mark.slow
@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_committed_sweep_files_expand_for_every_preset(path):
    _check_sweep_file(path, lambda spec: [None, *spec["presets"]])


def test_fashion_mnist_book_preset_covers_what_the_book_needs():
    from kr_lib.complexity import DESIGNS

    runs = load_sweep(ROOT / "sweeps" / "fashion_mnist.yaml", "book").runs
    designs_2d = {d for d in DESIGNS if d != "r2plus1d"}
    assert {p["design"] for p in runs} == designs_2d
    for mode in ("fixed_r", "budget"):
        for design in designs_2d - {"dense"}:
            sub = [p for p in runs if p["mode"] == mode and p["design"] == design]
            assert len({p["kr_ratio"] for p in sub}) >= 5 and len({p["seed"] for p in sub}) >= 2
    assert all(p["train_limit"] is None for p in runs)  # the whole training set


def test_fill_commands_name_the_sweep_file():
    for dataset in BOOK_PRESETS:
        assert (ROOT / "sweeps" / f"{dataset}.yaml").is_file()
        assert fill_commands(dataset)[0].startswith(f"kr sweep sweeps/{dataset}.yaml --preset ")


def test_book_progress_counts_the_book_preset_records(tmp_path):
    from kr_lib.runs.records import write_record

    sweep = load_sweep(ROOT / "sweeps" / "fashion_mnist.yaml", "book")
    empty = book_progress("fashion_mnist", tmp_path)
    assert empty["planned"] == len(sweep.runs) and empty["missing"] == len(sweep.runs) and empty["completed"] == 0
    assert empty["command"] == "kr sweep sweeps/fashion_mnist.yaml --preset book"
    first, second = sweep.runs[:2]
    strip = lambda p: {k: v for k, v in p.items() if k != "mode"}
    # a record carries the run's own parameters, so it lands at that run's id
    from kr_lib.runs.ablation import check_parameters, failed_record

    write_record(synthetic_record(0.9, **strip(first)), tmp_path)
    write_record(failed_record(check_parameters(strip(second)), "stand-in failure"), tmp_path)
    progress = book_progress("fashion_mnist", tmp_path)
    assert (progress["completed"], progress["failed"], progress["missing"]) == (1, 1, len(sweep.runs) - 2)
    with pytest.raises(ValueError, match="sweeps exist for"):
        book_progress("mnist")


def test_missing_runs_are_estimated_from_their_other_seeds_records(tmp_path, capsys):
    from kr_lib.runs.records import write_record
    from kr_lib.runs.presets import seed_time_estimates

    sweep = load_sweep(ROOT / "sweeps" / "moving_fashion_mnist.yaml", "book")
    seed0 = [p for p in sweep.runs if p["seed"] == 0]
    strip = lambda p: {k: v for k, v in p.items() if k != "mode"}
    for p, seconds in zip(seed0[:2], (600.0, 1200.0)):
        rec = synthetic_record(0.7, **strip(p))
        rec["timing"]["wall_time_s"] = seconds
        write_record(rec, tmp_path)
    twin = {**seed0[0], "seed": 1}
    estimates = seed_time_estimates([twin, {**seed0[1], "seed": 1}, {**seed0[2], "seed": 1}], tmp_path,
                                    "moving_fashion_mnist")
    assert estimates == [600.0, 1200.0, None]  # the third configuration has no record yet
    progress = book_progress("moving_fashion_mnist", tmp_path)
    assert progress["estimated"] == 2 and math.isclose(progress["estimated_hours"], 0.5)
    assert kr_main(["sweep", str(ROOT / "sweeps" / "moving_fashion_mnist.yaml"), "--preset", "book", "--dry-run",
                    "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(~10 min, as another seed's record took)" in out
    assert "2 of the 60 runs to do have a record with another seed: about 0.5 hours of run time" in out


# ----------------------------------------------------------------------------- commands, comparison, figures

def test_results_command_prints_the_table_and_reports_corrupt_records(tmp_path, capsys):
    for s, a in enumerate((0.7, 0.8)):
        write_record(synthetic_record(a, design="separable", kr_ratio=2, R=8, seed=s), tmp_path)
    assert kr_main(["results", "fashion_mnist", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "separable" in out and "0.75" in out and "2 records" in out
    (tmp_path / "fashion_mnist" / "broken.json").write_text("{not json")
    assert kr_main(["results", "fashion_mnist", "--results-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "corrupt record" in captured.err and "broken.json" in captured.err


def test_results_command_on_an_empty_dataset_says_how_to_fill_it(tmp_path, capsys):
    assert kr_main(["results", "svhn", "--results-dir", str(tmp_path)]) == 0
    assert "kr sweep sweeps/svhn.yaml" in capsys.readouterr().out


def test_ablate_command_stops_on_a_bad_name_before_running(tmp_path, capsys):
    assert kr_main(["ablate", "fashion_mnist", "-p", "epoch=3", "--output-dir", str(tmp_path)]) == 2
    assert "unknown parameter(s) epoch" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_compare_metrics_exact_and_within_tolerance():
    a = synthetic_record(0.80)
    b = synthetic_record(0.805)
    assert compare_metrics(a, a, exact=True)[0]
    assert not compare_metrics(a, b, exact=True)[0]
    assert compare_metrics(a, b, exact=False, accuracy_tol=0.01)[0]
    assert not compare_metrics(a, b, exact=False, accuracy_tol=0.001)[0]
    assert not compare_metrics(a, synthetic_record(None, status="failed"), exact=False)[0]


def _on(machine: dict, threads=1, run_code="abc", accuracy=0.8, device="cpu") -> dict:
    rec = synthetic_record(accuracy)
    rec["machine"], rec["device"] = machine, device
    rec["timing"] = {"wall_time_s": 1.0, "torch_threads": threads}
    rec["versions"] = {**rec["versions"], "run_code": run_code}
    return rec


def test_the_exact_rule_needs_the_same_cpu_threads_and_run_code_all_recorded():
    """kr reproduce holds a rerun to identical metrics only when the CPU model, the CPU capability, the thread
    count, torch and the run code are recorded and equal; otherwise it names every reason."""
    from kr_lib.runs.reproduce import exact_rule

    here = {"cpu_model": "AMD EPYC", "cpu_capability": "AVX512", "cpu_count": 2}
    exact, why = exact_rule(_on(here), _on(here))
    assert exact and "AMD EPYC" in why and "AVX512" in why and "run code abc" in why
    older = _on({"platform": "Linux", "processor": "x86_64", "cpu_count": 2}, run_code=None)
    del older["versions"]["run_code"]
    exact, why = exact_rule(older, _on(here))
    assert not exact and why == ("the record names no CPU model; the record names no CPU capability; "
                                 "it predates run_code")
    exact, why = exact_rule(_on(here), _on({**here, "cpu_capability": "AVX2"}, threads=2, run_code="def"))
    assert not exact and why == ("the CPU capability differs (AVX512 recorded, AVX2 here); the thread count differs "
                                 "(1 recorded, 2 here); the run code differs (abc recorded, def here)")
    exact, why = exact_rule(_on(here), _on(here, device="cuda"))
    assert not exact and "'cuda'" in why


def test_reproduce_prints_the_rule_and_why(tmp_path, monkeypatch, capsys):
    """The real command with the rerun stubbed (training is tested elsewhere): a record that names no CPU is
    held to the CPU tolerance, and the command says so; a difference within it agrees (exit 0), beyond it not."""
    from kr_lib.commands import reproduce as command
    from kr_lib.runs import reproduce as module
    from kr_lib.runs.reproduce import CPU_ACCURACY_TOLERANCE

    here = {"cpu_model": "AMD EPYC", "cpu_capability": "AVX2", "cpu_count": 2}
    original = _on({"platform": "Linux", "cpu_count": 2}, run_code=None, accuracy=0.9078)
    del original["versions"]["run_code"]
    path = write_record(original, tmp_path)
    for accuracy, code, verdict in ((0.9078 - CPU_ACCURACY_TOLERANCE / 2, 0, "AGREE"),
                                    (0.9078 - 2 * CPU_ACCURACY_TOLERANCE, 1, "DIFFER")):
        rerun_path = write_record(_on(here, accuracy=accuracy), tmp_path / "rerun")
        monkeypatch.setattr(module, "execute_run", lambda *a, p=rerun_path, **k: type("O", (), {"path": p})())
        assert kr_main(["reproduce", str(path)]) == code
        line = capsys.readouterr().out.strip().splitlines()[-1]
        assert line == (f"rule: tolerance {CPU_ACCURACY_TOLERANCE:g} in accuracy, 2% relative in loss (the record "
                        f"names no CPU model; the record names no CPU capability; it predates run_code); {verdict}")
    assert command.reproduce is module.reproduce


def test_figures_draw_from_a_records_table():
    import matplotlib

    matplotlib.use("Agg")
    from kr_lib.runs.figures import plot_accuracy_vs_kr, plot_accuracy_vs_size

    records = [synthetic_record(0.9, design="dense", kr_ratio=1, R=8, seed=0)]
    records += [synthetic_record(0.8 + 0.01 * s, design="bottleneck", kr_ratio=kr, R=8, seed=s)
                for kr in ("1/2", 2) for s in (0, 1)]
    records += [synthetic_record(0.7, design="bottleneck", kr_ratio=2, R=None, param_budget=5000, seed=0)]
    table = records_table(records)
    fig = plot_accuracy_vs_kr(table)
    assert len(fig.axes) == 2 and [ax.get_title() for ax in fig.axes] == ["fixed R", "fixed parameter budget"]
    assert [ax.get_title() for ax in plot_accuracy_vs_size(table, "df").axes if ax.get_title()] == ["bottleneck"]
    with pytest.raises(ValueError, match="no completed runs"):
        plot_accuracy_vs_kr(table.assign(status="failed"))


# ----------------------------------------------------------------------------- executing notebooks

@pytest.mark.slow
def test_sweep_records_a_failed_run_and_goes_on(tmp_path):
    nb = tmp_path / "fake.ipynb"
    fake_notebook(nb)  # trains nothing: seed 1 raises, seed 0 writes a completed record
    text = SMALL.split("grids:")[0] + "grids:\n  dense: {design: [dense], kr_ratio: [1], R: [4], seed: [1, 0]}\n"
    sweep = write_sweep(tmp_path / "s.yaml", text)
    out = tmp_path / "results"
    summary = run_sweep(sweep, output_dir=out, notebook=nb, progress=False)
    assert [o.status for o in summary.outcomes] == ["completed", "failed"]  # seed 0 first, then seed 1
    failed = summary.outcomes[1]
    assert "stand-in failure" in failed.message
    record = json.loads(failed.path.read_text())
    assert record["status"] == "failed" and record["parameters"]["seed"] == 1 and "stand-in" in record["message"]
    assert failed.path.with_name(failed.path.stem + ".failed.ipynb").is_file()
    assert (out / ".gitignore").is_file()
    records, corrupt = read_records(out / "fashion_mnist")
    assert not corrupt and sorted(r["status"] for r in records) == ["completed", "failed"]
    again = run_sweep(sweep, output_dir=out, notebook=nb, progress=False)  # nothing to do: no kernel started
    assert again.count("skipped") == 2 and len(again.outcomes) == 2


TINY = """
dataset: fashion_mnist
parameters: {epochs: 1, train_limit: 256, test_limit: 256, stages: 2, stem_stride: 2, batch_size: 64}
grids:
  runs: {design: [bottleneck], kr_ratio: [1, 2], R: [4], seed: [0]}
"""


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume_keeps_finished_runs_and_reproduces(tmp_path):
    """A real sweep (two tiny trainings) killed with SIGKILL after its first record, started again: both
    records, the first untouched, no duplicates, no half-written files; the first reproduces exactly."""
    sweep = write_sweep(tmp_path / "tiny.yaml", TINY)
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "kr_lib.cli", "sweep", str(sweep), "--output-dir", str(out), "--device", "cpu",
           "--threads", "1"]
    env = dict(os.environ)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = out / "fashion_mnist"
    deadline = time.time() + 240
    while time.time() < deadline and not list(folder.glob("*.json")):
        assert proc.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.2)
    first = list(folder.glob("*.json"))
    assert len(first) == 1, "no record appeared in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first_bytes = first[0].read_bytes()

    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 skipped" in done.stdout and "1 completed" in done.stdout
    records, corrupt = read_records(folder)
    assert not corrupt and len(records) == 2 and len({r["run_id"] for r in records}) == 2
    assert first[0].read_bytes() == first_bytes
    assert all(r["status"] == "completed" and r["timing"]["wall_time_s"] > 0 for r in records)
    assert all((folder / f"{r['run_id']}.ipynb").is_file() for r in records)
    # the executed notebooks name the checkout's folders relative to it (papermill stored absolute paths)
    assert not [r["run_id"] for r in records if str(ROOT) in (folder / f"{r['run_id']}.ipynb").read_text()]
    leftovers = [p.name for p in folder.iterdir() if "partial" in p.name]
    assert not leftovers
    # the record holds per-block K/R and the network's sizes, from kr_report
    rec = records[0]
    assert [b["K/R"] for b in rec["blocks"]] == [float(rec["model"]["kr_ratio"])] * len(rec["blocks"])
    assert rec["network"]["total_parameters"] == rec["model"]["parameters"]
    assert rec["network"]["df"] <= rec["network"]["naive_count"]

    from kr_lib.runs.reproduce import reproduce

    cmp = reproduce(first[0], device="cpu")
    assert records[0]["timing"]["torch_threads"] == 1
    assert cmp.rule == "exact" and cmp.agree, cmp.differences


def test_run_lock_is_exclusive_and_a_dead_holder_is_taken_over(tmp_path):
    import socket

    from kr_lib.runs.runner import run_lock

    record = tmp_path / "fashion_mnist" / "r.json"
    with run_lock(record) as first:
        assert first and record.with_suffix(".lock").is_file()
        with run_lock(record) as second:  # held by a live process (this one)
            assert not second
    assert not record.with_suffix(".lock").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record.with_suffix(".lock").write_text(f"{socket.gethostname()} {dead.stdout.strip()}")  # a SIGKILLed sweep's
    with run_lock(record) as taken:
        assert taken


def test_records_fingerprint_changes_with_the_records(tmp_path):
    from kr_lib.runs.records import records_fingerprint

    folder = tmp_path / "fashion_mnist"
    empty = records_fingerprint(folder)
    write_record(synthetic_record(0.8), tmp_path)
    one = records_fingerprint(folder)
    assert one != empty and records_fingerprint(folder) == one
    write_record(synthetic_record(0.7, seed=1), tmp_path)
    assert records_fingerprint(folder) != one


def test_portable_notebook_makes_the_checkout_relative(tmp_path):
    from kr_lib.runs.notebook_run import portable_notebook

    root = tmp_path / "checkout"
    root.mkdir()
    nb = tmp_path / "run.ipynb"
    nb.write_text(json.dumps({"input_path": f"{root}/notebooks/ablation.ipynb", "printed": f"output_dir = '{root}'",
                              "sibling": f"{root}2/results", "outside": "/opt/data"}))
    assert portable_notebook(nb, root)
    assert json.loads(nb.read_text()) == {"input_path": "notebooks/ablation.ipynb", "printed": "output_dir = '.'",
                                          "sibling": f"{root}2/results", "outside": "/opt/data"}
    assert not portable_notebook(nb, root)  # nothing left to rewrite


def test_committed_records_name_no_machine_path():
    """Records and executed notebooks keep folders relative to the checkout (no build machine's paths)."""
    import re

    absolute = re.compile(r'"(?:output_dir|data_dir)": "/|/(?:work|root|home|tmp)/\w')
    found = [p.name for p in sorted((ROOT / "results").glob("*/*")) if p.suffix in (".json", ".ipynb")
             and absolute.search(p.read_text())]
    assert not found, f"{len(found)} committed result files name a machine path, e.g. {found[:3]}"
