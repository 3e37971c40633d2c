"""kr_lib.provenance: the hash of the code on disk and the commits that touched it between records."""
import shutil
import subprocess

import pytest

from kr_lib.provenance import code_changes, files_hash
from kr_lib.runs.ablation import RUN_CODE, run_code_hash

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(root, *args):
    out = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def _commit(root, message, **files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", message)
    return _git(root, "rev-parse", "HEAD")


def test_files_hash_follows_content_and_ignores_the_rest(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.py").write_text("x = 1\n")
    (tmp_path / "other.py").write_text("y = 1\n")
    first = files_hash(["lib", "nb.ipynb"], root=tmp_path)
    (tmp_path / "other.py").write_text("y = 2\n")  # not among the paths
    (tmp_path / "lib" / "__pycache__").mkdir()
    (tmp_path / "lib" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    assert files_hash(["lib", "nb.ipynb"], root=tmp_path) == first
    (tmp_path / "lib" / "a.py").write_text("x = 2\n")
    assert files_hash(["lib", "nb.ipynb"], root=tmp_path) != first
    (tmp_path / "lib" / "a.py").write_text("x = 1\n")
    (tmp_path / "nb.ipynb").write_text("{}")  # a path that appears counts
    assert files_hash(["lib", "nb.ipynb"], root=tmp_path) != first


def test_run_code_hash_is_the_run_code_of_this_checkout():
    assert run_code_hash() == files_hash(RUN_CODE)
    assert len(run_code_hash()) == 12


def test_code_changes_lists_the_commits_that_touched_the_paths_between_records(tmp_path):
    _git(tmp_path, "init", "-q")
    c1 = _commit(tmp_path, "start", **{"lib/train.py": "a", "README": "r"})
    c2 = _commit(tmp_path, "docs only", README="r2")
    c3 = _commit(tmp_path, "change training", **{"lib/train.py": "b"})
    c4 = _commit(tmp_path, "more docs", README="r3")
    _commit(tmp_path, "after the last record", **{"lib/train.py": "c"})
    paths = ["lib/train.py"]
    assert code_changes([c1, c2], paths, root=tmp_path) == []
    changes = code_changes([c4 + "-dirty", c1, c2], paths, root=tmp_path)  # any order, dirty suffix ignored
    assert changes == [{"commit": c3[:7], "subject": "change training", "files": ["lib/train.py"]}]
    assert code_changes([c3, c4], paths, root=tmp_path) == []  # c3 itself is the oldest record's code
    assert code_changes([c1, "0" * 40], paths, root=tmp_path) is None  # not in this history: cannot tell
    assert code_changes([], paths, root=tmp_path) == []


def test_display_path_names_no_machine():
    from pathlib import Path

    from kr_lib.provenance import PACKAGE_DIR, display_path

    assert display_path(PACKAGE_DIR / "runs") == "kr_lib/runs"
    assert display_path(Path.home() / ".cache" / "x") == "~/.cache/x"
    assert display_path("/usr/share/datasets/fashion-mnist") == "/usr/share/datasets/fashion-mnist"
