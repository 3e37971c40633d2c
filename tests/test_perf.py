"""kr_lib.perf: interleaved timing, peak memory, benchmark records; the committed results and the scripts."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kr_lib import perf

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


# ----------------------------------------------------------------------------- timing
def test_compare_interleaves_and_rotates_the_order():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = perf.compare(fns, repeats=3, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert calls[:3] == ["a", "b", "c"]  # the warm-up round
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # each round starts one later
    assert all(t >= 0 for v in times.values() for t in v)


def test_time_call_averages_number_calls():
    calls = []
    perf.time_call(lambda: calls.append(1), number=4)
    assert len(calls) == 4


def test_cpu_clock_counts_work_not_waiting():
    import time

    nap = lambda: time.sleep(0.05)
    wall = perf.compare({"nap": nap}, repeats=2, warmup=0, clock="wall")["nap"]
    cpu = perf.compare({"nap": nap}, repeats=2, warmup=0, clock="cpu")["nap"]
    assert min(wall) >= 0.05  # a sleep takes its time on the wall clock...
    assert max(cpu) < 0.025  # ...and almost no CPU time, whatever else the machine runs


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="at least one candidate"):
        perf.compare({})
    with pytest.raises(ValueError, match="repeats"):
        perf.compare({"a": lambda: None}, repeats=0)
    with pytest.raises(ValueError, match="clock must be one of"):
        perf.compare({"a": lambda: None}, clock="sundial")
    with pytest.raises(ValueError, match="meaningless on cuda"):
        perf.time_call(lambda: None, device="cuda", clock="cpu")
    with pytest.raises(ValueError, match="empty"):
        perf.median([])
    with pytest.raises(KeyError, match="no timings for 'z'"):
        perf.ratio({"a": [1.0]}, "a", "z")


def test_median_and_ratio():
    assert perf.median([3, 1, 2]) == 2.0
    assert perf.ratio({"base": [2.0, 4.0, 6.0], "fast": [1.0, 2.0, 3.0]}, "base", "fast") == 2.0


def test_peak_memory_sees_a_large_allocation_and_returns_the_result():
    mib = 2**20

    def allocate():
        block = torch.ones(64 * mib // 4)  # 64 MiB, touched
        return float(block[-1])

    result, peak = perf.peak_memory(allocate)
    assert result == 1.0
    assert peak >= 32 * mib  # sampled RSS: at least half of it is seen


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_memory_on_cuda_counts_the_allocator():
    _, peak = perf.peak_memory(lambda: torch.ones(2**20, device="cuda").sum().item(), device="cuda")
    assert peak >= 4 * 2**20


# ----------------------------------------------------------------------------- records
def test_record_round_trip(tmp_path):
    rows = [{"layer": "a", "seconds": 0.5, "ratio": float("nan")}, {"layer": "b", "seconds": torch.tensor(0.25)}]
    record = perf.make_record("demo", "cpu", rows, quick=True, command="python x.py", summary={"n": 2})
    for key in perf.RECORD_KEYS:
        assert key in record
    assert record["machine"]["cpu_count"] >= 1
    perf.write_record(record, tmp_path / "demo_cpu.json")
    (tmp_path / "legacy.json").write_text(json.dumps({"benchmark": "old", "value": {"x": 1, "y": [1, 2]}}))
    loaded = perf.load_results(tmp_path)
    assert list(loaded) == ["demo_cpu"]
    assert loaded["demo_cpu"]["rows"][0]["ratio"] is None  # NaN written as null: strict JSON
    frame = perf.rows_frame(loaded["demo_cpu"])
    assert list(frame["layer"]) == ["a", "b"] and frame["seconds"].iloc[1] == 0.25
    assert perf.other_results(tmp_path) == {"legacy": {"benchmark": "old", "value": {"x": 1, "y": [1, 2]}}}
    assert perf.flat_scalars(perf.other_results(tmp_path)["legacy"]) == {"benchmark": "old", "value.x": 1}
    assert perf.runs_table(loaded).loc[0, "command"] == "python x.py"
    with pytest.raises(ValueError, match="legacy.json is not a benchmark record"):
        perf.load_results(tmp_path, strict=True)


def test_bad_records_are_refused(tmp_path):
    with pytest.raises(TypeError, match="rows must be a list of dicts"):
        perf.make_record("demo", "cpu", [1, 2], quick=False, command="x")
    with pytest.raises(ValueError, match="missing"):
        perf.write_record({"benchmark": "demo"}, tmp_path / "x.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        perf.load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="run_all"):
        perf.load_results(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- committed results, scripts
def test_committed_results_are_records_with_their_machine():
    records = perf.load_results(RESULTS)
    assert records, "no benchmark records committed in benchmarks/results"
    for stem, record in records.items():
        assert stem.endswith("_" + record["device"].split(":")[0]), f"{stem}: file name and device disagree"
        assert record["machine"]["cpu_count"] and record["command"].startswith("python ")
        assert record["rows"], f"{stem} has no rows"
        for row in record["rows"]:
            assert isinstance(row, dict)


def test_committed_blocks_record_is_consistent():
    record = perf.load_results(RESULTS).get("blocks_cpu")
    if record is None:
        pytest.skip("no blocks_cpu.json committed")
    _check_blocks_rows(record["rows"])


def _check_blocks_rows(rows):
    libraries = {row["library"] for row in rows}
    assert {"kr_lib", "kr_lib fast path", "per conv"} <= libraries
    for row in rows:
        if row["library"] == "per conv":  # one conv of a block, timed alone
            assert row["relative_flop_rate"] == pytest.approx(row["flops"] / row["seconds"] / row["dense_flops_per_s"])
            continue
        assert row["speedup"] == pytest.approx(row["dense_seconds"] / row["seconds"])
        assert row["efficiency"] == pytest.approx(row["speedup"] / row["flop_reduction"])
        assert row["flop_reduction"] == pytest.approx(row["dense_flops"] / row["flops"])
        assert row["best_dense_seconds"] <= row["dense_seconds"]
        assert row["efficiency_vs_best_dense"] <= row["efficiency"] * (1 + 1e-12)
        if row["library"] == "kr_lib fast path":
            assert row["choice"].split(",")[0] in {"block", "one depthwise conv", "reconstructed conv"}
            if row["pass"] == "forward+backward":  # training keeps the decomposition's own parameters
                assert row["choice"].startswith("block")


def test_bench_blocks_group_on_a_tiny_configuration(one_thread):
    pytest.importorskip("tltorch")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_blocks
    finally:
        sys.path.pop(0)
    cfg = dict(config="2d 8ch 6x6", dim=2, channels=8, size=(6, 6), batch=1)
    rows = bench_blocks.run_group(cfg, 0.25, torch.device("cpu"), repeats=1, clock="cpu")
    _check_blocks_rows(rows)
    per_conv = [r for r in rows if r["library"] == "per conv"]
    # bottleneck 3 convs, separable 4, inverted residual 3
    assert sorted(r["conv_kind"] for r in per_conv if r["layer"] == "kr separable") == \
        ["1x1 2->8", "1x1 8->2", "depthwise 1x3 (2 ch)", "depthwise 3x1 (2 ch)"]
    assert len(per_conv) == 10
    summary = bench_blocks.summarize(rows)
    assert summary["forward: kr blocks as built, rows with efficiency >= 0.5"].endswith("/3")


def test_run_all_finds_every_benchmark_and_runs_the_book_last():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    names = list(run_all.scripts())
    assert {"blocks", "counting", "decompose_peers"} <= set(names)
    if "book" in names:
        assert names[-1] == "book"


def test_run_all_takes_the_options_from_the_common_parser_and_runs_report_as_a_counting_option():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import _common
        import bench_counting
        import run_all
    finally:
        sys.path.pop(0)
    # every script builds its command line with _common.parser, whose options run_all passes on
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    assert scripts and all("_common.parser(" in path.read_text() for path in scripts)
    assert {"--device", "--quick", "--repeats", "--out"} <= run_all.accepted_options() == _common.options()
    assert run_all.scripts()["report"] == ROOT / "benchmarks" / "bench_counting.py"
    assert run_all.command_for("report", run_all.scripts()["report"], "cpu", True)[1:] == [
        "benchmarks/bench_counting.py", "--model", "resnet50", "--device", "cpu", "--quick"]
    assert run_all.command_for("counting", run_all.scripts()["counting"], "cuda", False)[1:] == [
        "benchmarks/bench_counting.py", "--device", "cuda"]
    with pytest.raises(SystemExit) as stop:  # --input-size belongs to the one-model run
        bench_counting.main(["--input-size", "64"])
    assert stop.value.code == 2


def test_bench_counting_one_model_writes_the_report_record(tmp_path, one_thread):
    pytest.importorskip("fvcore")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_counting
    finally:
        sys.path.pop(0)
    out = tmp_path / "report.json"
    assert bench_counting.main(["--model", "squeezenet1_0", "--input-size", "64", "--quick", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["benchmark"] == "report" and record["parameters"]["repeats"] == 2
    assert {r["tool"] for r in record["rows"]} == {"kr report", "fvcore", "kr report (meta device)"}
    assert record["summary"]["kr FLOPs = 2 x fvcore conv+linear MACs, whole network"] is True
    assert record["summary"]["meta-device report identical"] is True


def test_run_all_refuses_an_unknown_benchmark():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks/run_all.py"), "--only", "no_such_bench"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown benchmark(s) ['no_such_bench']" in result.stderr


def test_results_dir_finds_the_repository_folder_or_says_where_it_looked(tmp_path, monkeypatch):
    assert perf.results_dir(tmp_path) == tmp_path
    monkeypatch.chdir(ROOT / "notebooks")
    assert perf.results_dir().resolve() == RESULTS.resolve()


def test_the_performance_appendix_states_its_findings_from_the_records(tmp_path):
    """The page (an appendix) shows chosen columns, not raw frames: no NaN cell, the CP iteration counts
    stated, and a sentence on why efficiency can exceed 1 wherever a record has such rows."""
    import papermill as pm

    out = tmp_path / "performance.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks/performance.ipynb"), str(out), cwd=str(ROOT / "notebooks"),
                        progress_bar=False)
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    text = "\n".join("".join(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    tables = "\n".join("".join(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert tables and ">nan<" not in tables.lower() and "NaN" not in tables
    assert "iterations each" in text and "ALS iterations" in text
    blocks = json.loads((RESULTS / "blocks_cpu.json").read_text())
    if any((r.get("efficiency") or 0) > 1 for r in blocks["rows"]):
        assert "exceed 1" in text
    assert "lent" not in text and "other agents" not in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    # issue 18's three measurements, each stated with its target wherever its record has them
    rows = {name: json.loads(p.read_text())["rows"] for name in ("train", "sweep", "book")
            if (p := RESULTS / f"{name}_cpu.json").exists()}
    if any(r.get("part") == "peak fraction" for r in rows.get("train", [])):
        assert "How far from the hardware limit" in text and "GFLOP/s" in tables
    if "sweep" in rows:
        assert "times the throughput (the target: at least 1.3)" in text
    if "book" in rows:
        assert "of the sequential time (the target: at most 0.6)" in text
        if any(r.get("page_seconds") for r in rows["book"]):
            assert "Where the parallel build's time goes" in text


@pytest.mark.parametrize("n_runs", [2, 4, 8])
def test_bench_sweep_grid_has_the_asked_runs_in_one_grid(tmp_path, n_runs):
    """bench_sweep compares two modes on the same runs: its sweep file must expand to exactly ``n_runs``
    distinct, checked runs of the sweep file format."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_sweep
    finally:
        sys.path.pop(0)
    from kr_lib.runs.sweepfile import load_sweep

    sweep = load_sweep(bench_sweep.sweep_file(tmp_path, n_runs, train_limit=256))
    assert len(sweep.runs) == n_runs
    assert len({r.run_id for r in sweep.runs}) == n_runs
    assert {r.epochs for r in sweep.runs} == {1}
