"""Using the whole machine: worker processes for the book's pages (kr book) and a sweep's runs
(kr sweep --workers N), pinned to their share of the cores (kr_lib.parallel)."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from runs_helpers import ctrl_c_ready, fake_notebook  # noqa: E402

from kr_lib import parallel
from kr_lib.book import PageFailed, execute_pages
from kr_lib.runs import read_records
from kr_lib.runs.runner import run_sweep

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- shares of the machine

def test_cpu_shares_are_disjoint_blocks_or_none_when_they_do_not_fit(monkeypatch):
    monkeypatch.setattr(parallel, "available_cpus", lambda: [0, 1, 2, 3, 4, 5])
    assert parallel.cpu_shares(3, 2) == [[0, 1], [2, 3], [4, 5]]
    assert parallel.cpu_shares(2, 1) == [[0], [1]]
    assert parallel.cpu_shares(4, 2) == [None] * 4  # 8 threads on 6 CPUs: not pinned, they share


def test_default_workers_fit_tasks_cores_and_memory(monkeypatch):
    monkeypatch.setattr(parallel, "available_cpus", lambda: list(range(8)))
    monkeypatch.setattr(parallel, "memory_available_bytes", lambda: 5 * 2**30)
    assert parallel.default_workers(tasks=20, memory_per_task=2**30) == 5   # memory bounds
    assert parallel.default_workers(tasks=3, memory_per_task=2**30) == 3    # tasks bound
    assert parallel.default_workers(tasks=20, memory_per_task=2**28) == 8   # cores bound
    assert parallel.default_workers(tasks=20, memory_per_task=2**40) == 1   # at least one


def test_a_worker_is_pinned_and_its_kernels_get_its_thread_count():
    with parallel.worker_pool(1, 1) as pool:
        affinity, threads = pool.submit(_affinity_and_threads).result()
    assert threads == "1"
    if hasattr(os, "sched_getaffinity"):
        assert len(affinity) == 1 and affinity[0] in parallel.available_cpus()


def _affinity_and_threads():
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [], os.environ["OMP_NUM_THREADS"]


@pytest.mark.parametrize("kwargs, message", [({"workers": 0}, "workers must be a positive int"),
                                             ({"workers": 2, "backend": "ray"}, "workers is for backend 'local'"),
                                             ({"workers": 2, "threads": 0}, "threads must be a positive int")])
def test_bad_worker_settings_stop_before_any_run(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_sweep(tmp_path / "missing.yaml", output_dir=tmp_path, progress=False, **kwargs)


# ----------------------------------------------------------------------------- the book's pages side by side

def _page(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("value = 1", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell(body)],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nbformat.write(nb, str(path))


@pytest.mark.slow
def test_pages_run_side_by_side_a_failed_page_is_named_and_the_cache_rules_hold(tmp_path, monkeypatch):
    import kr_lib.book

    monkeypatch.setattr(kr_lib.book, "source_hash", lambda: "fixed")  # the library is edited beside this test
    root, src = tmp_path / "project", tmp_path / "src"
    (root / "notebooks").mkdir(parents=True)
    _page(root / "notebooks/a.ipynb", "import os, time; time.sleep(1); print('a', os.environ['OMP_NUM_THREADS'])")
    _page(root / "notebooks/b.ipynb", "print('b', value)")
    _page(root / "notebooks/bad.ipynb", "raise ValueError('a stand-in failure')")
    how = lambda name, **params: {"source": f"notebooks/{name}.ipynb", "parameters": params, "inputs": []}  # noqa: E731
    pages = {"notebooks/a.ipynb": how("a"), "notebooks/b.ipynb": how("b", value=2)}

    assert sorted(execute_pages(root, src, pages, workers=2)) == sorted(pages)
    b = json.loads((src / "notebooks/b.ipynb").read_text())
    assert b["metadata"]["kr_book"]["source"] == "notebooks/b.ipynb" and b["metadata"]["kr_book"]["seconds"] > 0
    cells = nbformat.read(src / "notebooks/b.ipynb", 4).cells
    printed = "".join(o.get("text", "") for c in cells for o in c.get("outputs", []))
    assert "b 2" in printed
    assert execute_pages(root, src, pages, workers=2) == []  # stamps unchanged: nothing runs again

    pages["notebooks/bad.ipynb"] = how("bad")
    pages["notebooks/b.ipynb"] = how("b", value=3)  # new parameters: b runs again
    with pytest.raises(PageFailed, match=r"page notebooks/bad.ipynb failed: ValueError: a stand-in failure"):
        execute_pages(root, src, pages, workers=2)
    assert (src / "notebooks/bad.failed.ipynb").is_file() and not (src / "notebooks/bad.ipynb").exists()
    # one worker: the same failure, named the same way
    with pytest.raises(PageFailed, match=r"page notebooks/bad.ipynb failed"):
        execute_pages(root, src, {"notebooks/bad.ipynb": how("bad")}, workers=1)


def test_a_first_build_starts_with_the_page_the_binder_record_measured_longest(tmp_path, monkeypatch):
    # no page executed here yet: the longest page by benchmarks/results/binder_cpu.json starts first (else a
    # long page listed late would start last and the parallel build would wait for it alone)
    import kr_lib.book

    monkeypatch.setattr(kr_lib.book, "source_hash", lambda: "fixed")
    order = []
    monkeypatch.setattr(kr_lib.book, "execute_page", lambda page, *args: order.append(page))
    root, src = tmp_path / "project", tmp_path / "src"
    (root / "notebooks").mkdir(parents=True)
    (root / "benchmarks/results").mkdir(parents=True)
    for name in "abc":
        _page(root / f"notebooks/{name}.ipynb", "pass")
    pages = {f"notebooks/{n}.ipynb": {"source": f"notebooks/{n}.ipynb", "parameters": {}, "inputs": []} for n in "abc"}
    execute_pages(root, src, pages, workers=1)
    assert order == list(pages)  # no record: the order of executed_pages.yml
    rows = [{"page": "notebooks/a.ipynb", "wall_seconds": 20.0}, {"page": "notebooks/c.ipynb", "wall_seconds": 700.0}]
    (root / kr_lib.book.MEASURED_PAGE_TIMES).write_text(json.dumps({"rows": rows}))
    assert kr_lib.book.measured_page_seconds(root) == {"notebooks/a.ipynb": 20.0, "notebooks/c.ipynb": 700.0}
    order.clear()
    execute_pages(root, src, pages, workers=1)
    assert order == ["notebooks/c.ipynb", "notebooks/a.ipynb", "notebooks/b.ipynb"]


# ----------------------------------------------------------------------------- sweeps with N workers

SMALL = """
dataset: fashion_mnist
parameters: {epochs: 1, train_limit: 64, test_limit: 64, stages: 2}
grids:
  dense: {design: [dense], kr_ratio: [1], R: [4], seed: [0, 1, 2, 3]}
"""


@pytest.mark.slow
def test_two_workers_run_every_run_once_and_merge_the_counts(tmp_path):
    nb = tmp_path / "fake.ipynb"
    fake_notebook(nb)  # trains nothing: odd seeds raise, even seeds write a completed record
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SMALL)
    out = tmp_path / "results"
    summary = run_sweep(sweep, output_dir=out, notebook=nb, progress=False, workers=2)
    assert summary.count("completed") == 2 and summary.count("failed") == 2 and len(summary.outcomes) == 4
    records, corrupt = read_records(out / "fashion_mnist")
    assert not corrupt and sorted(r["parameters"]["seed"] for r in records) == [0, 1, 2, 3]
    assert {r["parameters"]["threads"] for r in records} == {max(1, len(parallel.available_cpus()) // 2)}
    assert not list((out / "fashion_mnist").glob("*.lock"))
    again = run_sweep(sweep, output_dir=out, notebook=nb, progress=False, workers=2)
    assert again.count("skipped") == 4


TINY = """
dataset: fashion_mnist
parameters: {epochs: 1, train_limit: 256, test_limit: 256, stages: 2, stem_stride: 2, batch_size: 64}
grids:
  runs: {design: [bottleneck], kr_ratio: [1, 2, 4], R: [4], seed: [0]}
"""


@pytest.mark.slow
def test_sigkill_of_a_two_worker_sweep_then_resume_records_every_run_once(tmp_path):
    """Three tiny trainings on two workers, the whole process group SIGKILLed after the first record (or the
    first two, finished together), started again with two workers: three records, each once, the first ones
    untouched, no lock or half-written file."""
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(TINY)
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "kr_lib.cli", "sweep", str(sweep), "--output-dir", str(out), "--device", "cpu",
           "--workers", "2", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: the workers die with it
    folder = out / "fashion_mnist"
    deadline = time.time() + 300
    while time.time() < deadline and not list(folder.glob("*.json")):
        assert proc.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = list(folder.glob("*.json"))  # the two workers may have finished together
    assert 1 <= len(first) <= 2, "no record appeared in time" if not first else "the sweep ended before the kill"
    first_bytes = {p: p.read_bytes() for p in first}
    time.sleep(2)  # an orphaned kernel notices its parent is gone within a second and exits

    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"3 runs: {3 - len(first)} completed, {len(first)} skipped" in done.stdout, done.stdout[-2000:]
    records, corrupt = read_records(folder)
    assert not corrupt and len(records) == 3 and len({r["run_id"] for r in records}) == 3
    assert all(p.read_bytes() == b for p, b in first_bytes.items())
    assert all(r["status"] == "completed" and r["timing"]["torch_threads"] == 1 for r in records)
    assert all((folder / f"{r['run_id']}.ipynb").is_file() for r in records)
    stray = [p.name for p in folder.iterdir()
             if p.suffix in (".lock", ".staged") or "partial" in p.name or p.name.endswith(".failed.ipynb")]
    assert not stray
    checkpoints = folder / ".checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())


# ----------------------------------------------------------------------------- training nearer the CPU's peak

@pytest.mark.slow
def test_compiled_training_trains_checkpoints_the_plain_module_and_resumes(tmp_path, one_thread):
    """train(compiled=True): a real training whose checkpoint holds the plain module's state (no torch.compile
    prefixes), so a run resumes from it -- compiled or not -- and ends with finite metrics."""
    import torch

    from kr_lib.data import load_splits
    from kr_lib.models import build_model
    from kr_lib.train import train

    data = load_splits("fashion_mnist", train_limit=256, test_limit=128)
    torch.manual_seed(0)
    model = build_model(data[0].info, "bottleneck", 1, R=4, stages=2)
    keys = set(model.state_dict())
    class Cut(Exception):
        pass

    def cut(record):
        raise Cut

    with pytest.raises(Cut):  # cut off after epoch 1 of 2
        train(model, data, epochs=2, batch_size=64, seed=0, progress=False, compiled=True, checkpoint_dir=tmp_path,
              on_epoch_end=cut)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(saved["model"]) == keys and saved["epoch"] == 1 and saved["config"]["compiled"]
    assert math.isfinite(saved["history"][0]["train_loss"]) and 0 <= saved["history"][0]["test_accuracy"] <= 1
    torch.manual_seed(1)
    again = train(build_model(data[0].info, "bottleneck", 1, R=4, stages=2), data, epochs=2, batch_size=64,
                  seed=0, progress=False, checkpoint_dir=tmp_path)
    assert again.resumed_from_epoch == 1 and again.epochs_completed == 2 and again.status == "completed"


GRID = """
dataset: fashion_mnist
parameters: {epochs: 1, train_limit: 256, test_limit: 256, stages: 2, stem_stride: 2, batch_size: 64}
grids:
  runs: {design: [bottleneck], kr_ratio: %s, R: [4], seed: %s}
"""


def _stray(folder: Path) -> list[str]:
    """Files a resume would have to clean up: locks, staged or partial files, failed notebooks."""
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".lock", ".staged") or "partial" in p.name
                  or p.name.endswith((".failed.ipynb", ".staged")))


@pytest.mark.slow
@pytest.mark.parametrize("runs, recorded", [(4, 1), (3, 2)], ids=["both-workers-training", "one-worker-idle"])
def test_ctrl_c_of_a_two_worker_sweep_keeps_what_finished_and_resumes_without_duplicates(tmp_path, runs, recorded):
    """Tiny trainings on two workers; a real SIGINT to the whole process group (Ctrl-C in a terminal) once
    ``recorded`` runs are recorded and a worker trains another (with 3 runs and 2 recorded, the other worker
    waits for work: its wait must print no traceback): exit 130, the one-line message and no traceback (from
    the sweep or its workers), the finished records kept and completed, nothing recorded as failed, no lock,
    staged, partial or failed-notebook file; the same command then completes the grid, each run once."""
    sweep = tmp_path / "grid.yaml"
    sweep.write_text(GRID % (("[1, 2]", "[0, 1]") if runs == 4 else ("[1, 2, 4]", "[0]")))
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "kr_lib.cli", "sweep", str(sweep), "--output-dir", str(out), "--device", "cpu",
           "--workers", "2", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # its own process group, as a terminal's foreground job
                            preexec_fn=ctrl_c_ready)
    folder = out / "fashion_mnist"
    deadline = time.time() + 300
    while time.time() < deadline and not (len(list(folder.glob("*.json"))) >= recorded and list(folder.glob("*.lock"))):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    assert list(folder.glob("*.lock")), "no run was training when the first record appeared"
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "kr sweep: interrupted; run the same command to resume", stderr[-3000:]
    time.sleep(2)  # a kernel whose worker is gone notices within a second and exits
    records, corrupt = read_records(folder)
    assert not corrupt and recorded <= len(records) < runs, [r["status"] for r in records]
    assert all(r["status"] == "completed" for r in records)  # the cut-off run is not recorded as failed
    assert all((folder / f"{r['run_id']}.ipynb").is_file() for r in records)
    assert _stray(folder) == []
    kept = {p: p.read_bytes() for p in folder.glob("*.json")}

    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{runs} runs: {runs - len(kept)} completed, {len(kept)} skipped" in done.stdout, done.stdout[-2000:]
    records, corrupt = read_records(folder)
    assert not corrupt and len(records) == runs and len({r["run_id"] for r in records}) == runs
    assert all(r["status"] == "completed" for r in records)
    assert all(p.read_bytes() == b for p, b in kept.items())  # the finished ones were not redone
    assert sorted(p.name for p in folder.glob("*.ipynb")) == sorted(f"{r['run_id']}.ipynb" for r in records)
    assert _stray(folder) == []
    checkpoints = folder / ".checkpoints"  # the cut-off runs' checkpoints were used up by the resume
    assert not checkpoints.exists() or not any(checkpoints.iterdir())
