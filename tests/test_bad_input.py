"""Bad input to the ``kr`` commands (issue 16): each case runs the real command (``kr_lib.cli.main`` or a
subprocess) and asserts the exit code, a one-line message naming the problem and the fix, no traceback, and
that no record, folder or file was written. Nothing here trains, except the Ctrl-C case (a tiny run cut off)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from runs_helpers import ctrl_c_ready, synthetic_record  # noqa: E402

from kr_lib.cli import main as kr_main
from kr_lib.data import get_dataset
from kr_lib.data.fashion_mnist import DEBIAN_FOLDER
from kr_lib.runs import check_parameters, write_record
from kr_lib.runs.ablation import failed_record
from kr_lib.runs.cli_values import parse_assignments, parse_value
from kr_lib.runs.sweepfile import load_sweep

ROOT = Path(__file__).resolve().parent.parent
#: Tiny runs: what a case that gets as far as a run's parameters uses (nothing here trains them).
TINY = {"epochs": 1, "train_limit": 64, "test_limit": 64, "stages": 2, "stem_stride": 2, "design": "bottleneck",
        "kr_ratio": 1, "R": 4}


def p_args(params: dict) -> list[str]:
    """``{"epochs": 1}`` -> ``["-p", "epochs=1"]``."""
    return [a for k, v in params.items() for a in ("-p", f"{k}={'null' if v is None else v}")]


TINY_ARGS = p_args(TINY)
SWEEP = """
dataset: fashion_mnist
parameters: {epochs: 1, train_limit: 64, test_limit: 64, stages: 2, stem_stride: 2, lr: 1e-3, weight_decay: 5e-4}
grids:
  runs: {design: [bottleneck], kr_ratio: [1], R: [4], seed: [0]}
"""


@pytest.fixture(autouse=True)
def _project(monkeypatch):
    """Commands find this checkout wherever a case runs them from; no data folder comes from outside."""
    monkeypatch.setenv("KR_PROJECT", str(ROOT))
    monkeypatch.delenv("KR_DATA_DIR", raising=False)
    monkeypatch.delenv("KR_RESULTS_DIR", raising=False)


def one_line_error(capsys, argv, *needles, rc=2) -> str:
    """Run ``kr argv``; assert the exit code ``rc`` and one stderr line (no traceback) holding every needle."""
    code = kr_main(argv)
    err = capsys.readouterr().err.strip()
    assert code == rc, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def sweep_file(tmp_path: Path, text: str = SWEEP, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- 1. numbers in scientific notation are numbers -------------------------------------------------------

def test_scientific_notation_is_a_number_in_values_and_sweep_files(tmp_path, capsys):
    assert [parse_value(t) for t in ("1e-3", "5e-4", "1.0e6", "1e6", "-2E+3")] == [1e-3, 5e-4, 1e6, 1e6, -2000.0]
    assert parse_value("1/4") == "1/4" and parse_value("e5") == "e5"  # fractions and words stay strings
    # -p values: the same run id as the plain spelling; the command finds the record made with 0.001 / 60000
    plain = check_parameters({**TINY, "R": None, "param_budget": 60000, "lr": 0.001, "weight_decay": 0.0005})
    out = tmp_path / "out"
    write_record(synthetic_record(0.5, **{**TINY, "R": None, "param_budget": 60000, "lr": 0.001,
                                          "weight_decay": 0.0005}), out)
    args = p_args({**TINY, "R": None, "param_budget": "6e4", "lr": "1e-3", "weight_decay": "5e-4"})
    assert kr_main(["ablate", "fashion_mnist", *args, "--output-dir", str(out)]) == 0
    assert f"{plain.run_id}.json exists (completed); nothing to do" in capsys.readouterr().out
    # sweep files
    sweep = load_sweep(sweep_file(tmp_path))
    assert sweep.runs[0].lr == 1e-3 and sweep.runs[0].weight_decay == 5e-4
    assert kr_main(["sweep", str(tmp_path / "s.yaml"), "--dry-run", "--output-dir", str(tmp_path / "none")]) == 0
    assert "1 runs, 0 recorded" in capsys.readouterr().out


# -- 2. everything checkable is checked before a kernel starts; a failed record is not "nothing to do" ----

@pytest.mark.parametrize("argv, needle", [
    (["ablate", "fashion_mnist", "-p", "device=tpu"], "unknown device 'tpu'; use auto, cpu"),
    (["ablate", "fashion_mnist", "-p", "device=cuda:7"], "device 'cuda:7' was asked for"),
    (["ablate", "fashion_mnist", "-p", "device=meta"], "device 'meta' holds shapes only"),
    (["ablate", "cifar10"], "To fetch it (online): -p download=true"),
    (["ablate", "svhn"], "To fetch it (online): -p download=true"),
])
def test_a_run_that_cannot_start_is_one_line_and_no_record(tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    data = tmp_path / "data"
    data.mkdir()
    one_line_error(capsys, [*argv, *TINY_ARGS, "-p", f"data_dir={data}", "--output-dir", str(out)], needle)
    assert not out.exists() and files_under(data) == []


def test_a_data_dir_that_is_a_file_is_refused_before_any_run(tmp_path, capsys):
    not_a_folder = tmp_path / "data.txt"
    not_a_folder.write_text("x")
    out = tmp_path / "out"
    one_line_error(capsys, ["ablate", "fashion_mnist", *TINY_ARGS, "-p", f"data_dir={not_a_folder}",
                            "--output-dir", str(out)], f"the data folder {not_a_folder} (data_dir) is a file")
    one_line_error(capsys, ["sweep", str(sweep_file(tmp_path)), "--data-dir", str(not_a_folder),
                            "--output-dir", str(out)], "is a file, not a folder")
    assert not out.exists()


@pytest.mark.parametrize("argv, needle", [
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--device", "cuda"], "CUDA is not available here"),
])
def test_sweep_checks_the_device_before_any_run(tmp_path, capsys, argv, needle):
    if "cuda" in argv:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    out = tmp_path / "out"
    one_line_error(capsys, ["sweep", str(sweep_file(tmp_path)), *argv, "--output-dir", str(out)], needle)
    assert not out.exists()


def test_sweep_of_cifar10_without_download_names_the_flag(tmp_path, capsys):
    out, data = tmp_path / "out", tmp_path / "data"
    data.mkdir()
    one_line_error(capsys, ["sweep", str(ROOT / "sweeps" / "cifar10.yaml"), "--preset", "quick", "--data-dir",
                            str(data), "--output-dir", str(out)], "CIFAR-10 is missing", "--download")
    assert not out.exists() and files_under(data) == []


def test_an_existing_failed_record_is_not_success_and_says_how_to_retry(tmp_path, capsys):
    out = tmp_path / "out"
    p = check_parameters(TINY)
    write_record(failed_record(p, "RuntimeError: stand-in failure"), out)
    before = files_under(out)
    err = one_line_error(capsys, ["ablate", "fashion_mnist", *TINY_ARGS, "--output-dir", str(out)],
                         "records this run as failed (RuntimeError: stand-in failure)", "--force", rc=1)
    assert "nothing run" in err
    # kr sweep: the grid's one run is recorded failed -> nothing run, exit 1, the fix named
    sweep = sweep_file(tmp_path, SWEEP.replace(", lr: 1e-3, weight_decay: 5e-4", ""))
    assert kr_main(["sweep", str(sweep), "--output-dir", str(out), "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert "1 skipped" in captured.out and "Traceback" not in captured.err
    assert "recorded as failed and were not run again" in captured.err and "--retry-failed" in captured.err
    assert set(files_under(out)) - set(before) <= {".gitignore"}  # no record, no notebook, no lock


# -- 3. a missing data folder is an error; data is never copied into one ----------------------------------

def test_a_missing_data_folder_is_an_error_and_is_not_created(tmp_path, capsys):
    missing, out = tmp_path / "no" / "such" / "dir", tmp_path / "out"
    one_line_error(capsys, ["ablate", "fashion_mnist", *TINY_ARGS, "-p", f"data_dir={missing}", "--output-dir",
                            str(out)], f"the data folder {missing} (data_dir) does not exist")
    one_line_error(capsys, ["sweep", str(sweep_file(tmp_path)), "--data-dir", str(missing), "--output-dir", str(out)],
                   f"the data folder {missing} (data_dir) does not exist")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_dataset("fashion_mnist", "test", data_dir=missing)
    assert not (tmp_path / "no").exists() and not out.exists()


@pytest.mark.skipif(not DEBIAN_FOLDER.is_dir(), reason="needs the Debian dataset-fashion-mnist package")
def test_fashion_mnist_is_read_where_it_lies_and_nothing_is_copied(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    test = get_dataset("fashion_mnist", "test", data_dir=empty, limit=10)  # falls back to the Debian files
    assert test.x.shape == (10, 1, 28, 28)
    assert files_under(empty) == []  # nothing copied or unpacked into the user's folder


def test_a_missing_kr_data_dir_is_named_too(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("KR_DATA_DIR", str(missing))
    one_line_error(capsys, ["ablate", "fashion_mnist", *TINY_ARGS, "--output-dir", str(tmp_path / "out")],
                   f"the data folder {missing} ($KR_DATA_DIR) does not exist")
    assert not missing.exists()


# -- 4. a relative data_dir is the working directory's --------------------------------------------------

def test_a_relative_data_dir_resolves_against_the_working_directory(tmp_path, monkeypatch, capsys):
    sub = tmp_path / "work" / "sub"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    expected = tmp_path / "work" / "mydata"  # ../mydata from sub, not from the repository root
    for argv in (["ablate", "fashion_mnist", *TINY_ARGS, "-p", "data_dir=../mydata", "--output-dir", "out"],
                 ["sweep", str(sweep_file(tmp_path)), "--data-dir", "../mydata", "--output-dir", "out"]):
        one_line_error(capsys, argv, f"the data folder {expected} (data_dir) does not exist")
    assert not expected.exists() and not (sub / "out").exists() and not (ROOT.parent / "mydata").exists()


# -- 5. counts -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["--limit", "-1"], "--limit must be a positive int"),
    (["--limit", "0"], "--limit must be a positive int"),
    (["--threads", "0"], "--threads must be a positive int"),
])
def test_sweep_counts_must_be_positive(tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    one_line_error(capsys, ["sweep", str(sweep_file(tmp_path)), *argv, "--output-dir", str(out)], needle)
    assert not out.exists()


# -- 6. one line instead of a traceback --------------------------------------------------------------------

def test_a_yaml_syntax_error_in_a_sweep_file_is_one_line(tmp_path, capsys):
    path = sweep_file(tmp_path, "dataset: fashion_mnist\ngrids: {runs: {seed: [0, 1}\n")
    one_line_error(capsys, ["sweep", str(path), "--output-dir", str(tmp_path / "out")],
                   f"{path} is not valid YAML", "line 2")
    assert not (tmp_path / "out").exists()


def test_a_python_object_tag_is_refused_in_one_line_and_never_run(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = sweep_file(tmp_path, f'dataset: !!python/object/apply:os.system ["touch {marker}"]\ngrids: {{}}\n')
    one_line_error(capsys, ["sweep", str(path), "--dry-run"], "is not valid YAML", "python/object")
    one_line_error(capsys, ["ablate", "fashion_mnist", "-p", f'design=!!python/object/apply:os.system ["touch {marker}"]',
                            "--output-dir", str(tmp_path / "out")], "cannot read the value")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_reproduce_given_a_folder_or_nothing(tmp_path, capsys):
    one_line_error(capsys, ["reproduce", str(tmp_path)], f"{tmp_path} is a folder; kr reproduce takes one record file")
    one_line_error(capsys, ["reproduce", str(tmp_path / "nope.json")], "not found")


def test_report_with_an_unknown_device(capsys):
    one_line_error(capsys, ["report", "resnet18", "--device", "tpu"], "unknown device 'tpu'")


FACTORY = """
import torch

def boom():
    raise RuntimeError("no weights for this size")

def mismatched():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(7, 2))
"""


def test_a_model_factory_that_raises_is_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    (tmp_path / "usermodels.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    one_line_error(capsys, ["report", "usermodels:boom", "--device", "cpu"],
                   "the model factory usermodels:boom raised RuntimeError: no weights for this size",
                   "kr --debug shows the traceback")
    one_line_error(capsys, ["report", "usermodels:mismatched", "--device", "cpu", "--input-shape", "3x8x8"],
                   "usermodels:mismatched on an input 1x3x8x8 raised RuntimeError", "--input-shape")
    (tmp_path / "broken.py").write_text("import nothing_of_that_name_here\n")
    one_line_error(capsys, ["report", "broken:f"], "cannot import 'broken'")
    done = subprocess.run([sys.executable, "-m", "kr_lib.cli", "--debug", "report", "usermodels:boom", "--device",
                           "cpu"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])})
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "RuntimeError: no weights for this size" in done.stderr


# -- 7. a read-only output folder: "cannot write to ..." before any work -----------------------------------

@pytest.fixture
def read_only(tmp_path):
    """A read-only folder: a read-only tmpfs (EROFS, as a read-only disk; needs root), else chmod 555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                                                   capture_output=True).returncode == 0
    if not mounted:
        folder.chmod(0o555)
        try:
            (folder / "probe").touch()
        except OSError:
            pass
        else:
            pytest.skip("cannot make a read-only folder here")
    yield folder
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o755)


def test_read_only_output_folders_are_refused_before_any_work(tmp_path, read_only, capsys):
    results = tmp_path / "results"
    record = write_record(synthetic_record(0.5, **TINY), results)
    for argv in (["ablate", "fashion_mnist", *TINY_ARGS, "--output-dir", str(read_only / "out")],
                 ["ablate", "fashion_mnist", *TINY_ARGS, "--output-dir", str(read_only)],
                 ["sweep", str(sweep_file(tmp_path)), "--output-dir", str(read_only / "results")],
                 ["reproduce", str(record), "--output-dir", str(read_only / "rerun")],
                 ["results", "fashion_mnist", "--results-dir", str(results), "--csv", str(read_only / "t.csv")],
                 ["report", "resnet18", "--device", "meta", "--csv", str(read_only / "r.csv")],
                 ["report", "resnet18", "--device", "meta", "--json", str(read_only / "r.json")]):
        one_line_error(capsys, argv, f"cannot write to {read_only}")
    assert files_under(read_only) == []


def test_an_output_folder_that_is_a_file(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    one_line_error(capsys, ["ablate", "fashion_mnist", *TINY_ARGS, "--output-dir", str(a_file / "out")],
                   "is a file, not a folder")
    one_line_error(capsys, ["results", "fashion_mnist", "--results-dir", str(tmp_path), "--csv", str(tmp_path)],
                   "it is a folder; give a file name")


# -- 8. a record edited by hand is corrupt ----------------------------------------------------------------

def test_a_record_edited_by_hand_is_reported_as_corrupt(tmp_path, capsys):
    results = tmp_path / "results"
    path = write_record(synthetic_record(0.5, **TINY), results)
    record = json.loads(path.read_text())
    record["parameters"]["lr"] = 0.5
    path.write_text(json.dumps(record))
    assert kr_main(["results", "fashion_mnist", "--results-dir", str(results)]) == 1
    err = capsys.readouterr().err
    assert f"corrupt record {path}" in err and "not its own" in err and "edited" in err
    one_line_error(capsys, ["reproduce", str(path)], "its parameters give the run id", "edited")


# -- 9. kr results: an unknown dataset, a missing results folder ------------------------------------------

def test_results_of_an_unknown_dataset_or_folder(tmp_path, capsys):
    one_line_error(capsys, ["results", "nosuchdataset"], "unknown dataset 'nosuchdataset'; known: fashion_mnist")
    one_line_error(capsys, ["results", "fashion_mnist", "--results-dir", str(tmp_path / "nope")],
                   f"--results-dir {tmp_path / 'nope'} is not a folder")
    assert kr_main(["results", "ucf101", "--results-dir", str(tmp_path)]) == 0  # known, empty: how to fill it
    hint = capsys.readouterr().out.split("fill it with: ")[1].split()
    assert hint[:2] == ["kr", "sweep"] and (ROOT / hint[2]).is_file() or hint[:2] == ["kr", "ablate"]


# -- 10. every suggestion is one the user can follow -------------------------------------------------------

def test_the_unreachable_budget_error_suggests_run_parameters_only(tmp_path, capsys):
    err = one_line_error(capsys, ["ablate", "fashion_mnist", "-p", "R=null", "-p", "param_budget=100", "-p",
                                  "kr_ratio=4", "--output-dir", str(tmp_path / "out")], "raise param_budget")
    assert "budget_tolerance" not in err
    assert not (tmp_path / "out").exists()


# -- 11. Ctrl-C --------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("command", ["ablate", "sweep"])
def test_ctrl_c_prints_one_line_and_records_nothing_as_failed(tmp_path, command):
    """A real SIGINT to the command's process group (what Ctrl-C in a terminal sends) while a run trains:
    exit 130, one line saying how to resume, no traceback; no record, no failed notebook, no lock, no staged
    or partial file -- only the epoch checkpoints the same command resumes from."""
    out = tmp_path / "out"
    params = {**TINY, "epochs": 200, "train_limit": 512}
    if command == "ablate":
        cmd = ["ablate", "fashion_mnist", *p_args(params), "-p", "device=cpu", "-p", "threads=1"]
    else:
        grid = "grids:\n  runs: {design: [bottleneck], kr_ratio: [1], R: [4], seed: [0]}\n"
        shared = {k: v for k, v in params.items() if k not in ("design", "kr_ratio", "R")}
        sweep = sweep_file(tmp_path, f"dataset: fashion_mnist\nparameters: {json.dumps(shared)}\n{grid}")
        cmd = ["sweep", str(sweep), "--device", "cpu", "--threads", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "kr_lib.cli", *cmd, "--output-dir", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=ctrl_c_ready)
    rid = check_parameters(params).run_id
    checkpoints = out / "fashion_mnist" / ".checkpoints" / rid
    deadline = time.time() + 240
    while time.time() < deadline and not (checkpoints.is_dir() and any(checkpoints.iterdir())):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    assert checkpoints.is_dir(), "training did not start in time"
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == f"kr {command}: interrupted; run the same command to resume"
    left = sorted(p.name for p in (out / "fashion_mnist").iterdir() if p.name != ".checkpoints")
    assert left == [], left  # no failed record, no failed notebook, no lock, no staged or partial file
    assert files_under(checkpoints)  # what a resume starts from


def test_a_run_cut_off_after_it_finished_keeps_its_record(tmp_path, capsys):
    """The state a Ctrl-C (or SIGKILL) leaves just after a run finished: its staged record and the notebook
    papermill saved so far. The same command keeps that record (no kernel starts) and leaves nothing else."""
    out = tmp_path / "out"
    rec = synthetic_record(0.61, **TINY)
    staged = write_record(rec, out, staged=True)
    partial = staged.parent / f"{rec['run_id']}.partial.ipynb"
    partial.write_text("{}")
    assert kr_main(["ablate", "fashion_mnist", *TINY_ARGS, "--output-dir", str(out)]) == 0
    assert '"status": "completed"' in capsys.readouterr().out
    assert files_under(out / "fashion_mnist") == [f"{rec['run_id']}.ipynb", f"{rec['run_id']}.json"]
    assert json.loads((out / "fashion_mnist" / f"{rec['run_id']}.json").read_text())["metrics"]["test_accuracy"] == 0.61


# -- 12. smaller -----------------------------------------------------------------------------------------

def test_sweep_file_problems_name_the_file(tmp_path, capsys):
    one_line_error(capsys, ["sweep", str(tmp_path), "--dry-run"], f"{tmp_path} is a folder, not a sweep file")
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    one_line_error(capsys, ["sweep", str(binary), "--dry-run"], f"cannot read the sweep file {binary}")
    one_line_error(capsys, ["sweep", str(tmp_path / "none.yaml"), "--dry-run"], f"sweep file {tmp_path / 'none.yaml'} not found")


@pytest.mark.parametrize("text, needle", [
    ("dataset: fashion_mnist\nparameters: 3\ngrids: {a: {seed: [0]}}\n", "parameters must be a mapping"),
    ("dataset: fashion_mnist\ngrids: {a: {seed: [0]}}\npresets: [quick]\n", "presets must be a mapping"),
    ("dataset: fashion_mnist\ngrids: {a: {seed: [0]}}\npresets: {quick: 3}\n", "preset quick must be a mapping"),
    ("dataset: fashion_mnist\ngrids: {a: {seed: [0]}}\npresets: {quick: {axes: 3}}\n", "preset quick: axes must be"),
    ("- 1\n- 2\n", "a sweep file is a YAML mapping"),
    ("", "a sweep file is a YAML mapping"),
    ("dataset: fashion_mnist\ngrids: {a: {seed: 0}}\n", "give a non-empty list of values"),
])
def test_malformed_sweep_sections_are_one_line(tmp_path, capsys, text, needle):
    path = sweep_file(tmp_path, text)
    one_line_error(capsys, ["sweep", str(path), "--dry-run", *(["--preset", "quick"] if "quick" in text else [])],
                   str(path), needle)


def test_reproduce_tolerances_and_device_are_checked_first(tmp_path, capsys):
    path = write_record(synthetic_record(0.5, **TINY), tmp_path)
    one_line_error(capsys, ["reproduce", str(path), "--accuracy-tol", "-0.1"], "--accuracy-tol must be a non-negative")
    one_line_error(capsys, ["reproduce", str(path), "--device", "tpu"], "unknown device 'tpu'")


def test_an_existing_diverged_record_says_why(tmp_path, capsys):
    out = tmp_path / "out"
    rec = synthetic_record(None, status="diverged", **TINY)
    rec["message"] = "loss is nan at epoch 1"
    write_record(rec, out)
    assert kr_main(["ablate", "fashion_mnist", *TINY_ARGS, "--output-dir", str(out)]) == 1
    assert "exists (diverged: loss is nan at epoch 1)" in capsys.readouterr().out


def test_reproduce_table_shows_no_nan(tmp_path, monkeypatch, capsys):
    """The comparison table names a difference for every metric both runs have (best_test_accuracy is not
    one of the compared metrics, and used to print NaN)."""
    from kr_lib.commands import reproduce as command
    from kr_lib.runs.reproduce import Comparison, compare_metrics

    a, b = synthetic_record(0.8, **TINY), synthetic_record(0.8, **TINY)
    path = write_record(a, tmp_path)
    agree, diffs = compare_metrics(a, b, exact=True)
    monkeypatch.setattr(command, "reproduce", lambda *args, **kw: Comparison(a["metrics"], b["metrics"], "exact",
                                                                             diffs, agree, None))
    assert kr_main(["reproduce", str(path)]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and "nan" not in out
    assert [line.split()[-1] for line in out.splitlines() if line.startswith("best_test_accuracy")] == ["0.0"]


@pytest.mark.parametrize("assignment", ["sweep={file: s.yaml}", "mode=budget", "staged_record=true",
                                        "save_record=false"])
def test_record_only_names_are_refused_by_ablate(tmp_path, capsys, assignment):
    """Names a record holds that no user sets (kr sweep writes ``sweep``, ``mode`` follows from R, kr ablate
    always writes a staged record): one line naming the allowed keys, nothing written."""
    name = assignment.split("=")[0]
    err = one_line_error(capsys, ["ablate", "fashion_mnist", *TINY_ARGS, "-p", assignment, "--output-dir",
                                  str(tmp_path / "out")], f"-p {name}: not a run parameter", "-p accepts: design")
    accepted = err.split("-p accepts: ")[1].split(", ")
    assert "seed" in accepted and "threads" in accepted and name not in accepted and "dataset" not in accepted
    assert not (tmp_path / "out").exists()


# -- inputs that were already refused, so they stay so -----------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["ablate", "fashion_mnist", "-p", "epoch=3"], "unknown parameter(s) epoch; accepted"),
    (["ablate", "fashion_mnist", "-p", "kr_ratio=1/3", "-p", "design=bottleneck"], "R must be a multiple of 3"),
    (["ablate", "fashion_mnist", "-p", "epochs=2.5"], "epochs must be a positive int"),
    (["ablate", "fashion_mnist", "-p", "lr=-1e-3"], "lr must be a positive number"),
    (["ablate", "fashion_mnist", "-p", "dataset_options=3"], "dataset_options must be a mapping"),
    (["ablate", "fashion_mnist", "-p", "seed"], "-p takes name=value"),
    (["ablate", "fashion_mnist", "-p", "output_dir=x"], "--output-dir, not -p"),
    (["ablate", "mnist"], "unknown dataset 'mnist'"),
    (["sweep", "sweeps/fashion_mnist.yaml", "--preset", "nope", "--dry-run"], "no preset 'nope'"),
    (["sweep", "sweeps/fashion_mnist.yaml", "--address", "x:1"], "--address is for --backend ray"),
    (["report", "resnet18", "--input-shape", "3xAx4"], "--input-shape must be integers"),
    (["report", "resnet1"], "unknown model 'resnet1'"),
    (["report", "resnet18", "--batch", "0"], "--batch must be a positive integer"),
    (["ablate", "fashion_mnist", "-p", "data_dir=3"], "data_dir must be a path or None"),
    (["ablate", "fashion_mnist", "-p", "epochs=1e400"], "epochs must be a positive int"),
    (["sweep", "sweeps/fashion_mnist.yaml", "--project", "/nonexistent"], "is not a kr-book project"),
])
def test_inputs_refused_before_stay_refused(tmp_path, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(ROOT)
    one_line_error(capsys, [*argv, *(["--output-dir", str(tmp_path / "out")] if argv[0] == "ablate" else [])], needle)
    assert not (tmp_path / "out").exists()


def test_whole_float_counts_are_counts():
    assert check_parameters({**TINY, "epochs": 2.0}).epochs == 2
    assert parse_assignments(["param_budget=1e6"]) == {"param_budget": 1e6}
    assert check_parameters({**TINY, "R": None, "param_budget": 1e6}).param_budget == 1_000_000
