"""The library installed from a wheel, outside any checkout: what needs no project works, and the commands
that need one say so in one line (kr_lib.project)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout(tmp_path):
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    source = tmp_path / "source"  # built from a copy: setuptools leaves build/ where it builds
    shutil.copytree(ROOT / "kr_lib", source / "kr_lib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("kr_lib-*.whl")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("KR_PROJECT", "KR_RESULTS_DIR")}
    env["PYTHONPATH"] = str(target)

    def kr(*args):
        return subprocess.run([sys.executable, "-m", "kr_lib.cli", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=600)

    where = subprocess.run([sys.executable, "-c", "import kr_lib; print(kr_lib.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True)
    assert Path(where.stdout.strip()).is_relative_to(target)  # the installed copy, not the checkout

    report = kr("report", "resnet18")
    assert report.returncode == 0, report.stderr[-2000:]
    assert "resnet18: input 1x3x224x224" in report.stdout and "parameters: 11,689,512 total" in report.stdout

    results = kr("results", "fashion_mnist")
    assert results.returncode == 2
    assert results.stderr.startswith("kr results: error: no kr-book project in ")
    assert "--project DIR" in results.stderr and len(results.stderr.strip().splitlines()) == 1
    # named explicitly, the checkout is found from anywhere
    named = kr("results", "fashion_mnist", "--project", str(ROOT))
    assert named.returncode == 0, named.stderr[-2000:]
    assert "records in" in named.stdout
