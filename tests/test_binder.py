"""What Binder builds: repo2docker's choice of build pack for this repository and the Dockerfile it renders
(no Docker needed: the build pack's ``detect()`` and ``render()``), the package installed after the copy of
the repository (``postBuild``), the pins of environment.yml against pyproject.toml and bootstrap.sh, and every
module the notebooks import installed by environment.yml."""
from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

repo2docker = pytest.importorskip("repo2docker", reason="jupyter-repo2docker (pyproject's [test] extra)")
from repo2docker.app import Repo2Docker  # noqa: E402
from repo2docker.buildpacks import CondaBuildPack  # noqa: E402
from test_environment import CONDA_TO_PYPI  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUILD_ARGS = {"NB_USER": "jovyan", "NB_UID": "1000"}  # what BinderHub passes
ENV_UPDATE = re.compile(r"env update -p \S+ --file \"?environment\.yml")


def _picked_buildpack(folder: Path, monkeypatch):
    """The build pack repo2docker picks for ``folder``: the first of its ordered list whose detect() is true
    (as ``Repo2Docker.build`` does, in the repository's folder)."""
    monkeypatch.chdir(folder)
    app = Repo2Docker()
    for cls in app.buildpacks:
        bp = cls(base_image=app.base_image)
        if bp.detect():
            bp.platform = "linux/amd64"  # mybinder.org's
            return bp
    return None


def _dockerfile(folder: Path, monkeypatch) -> list[str]:
    bp = _picked_buildpack(folder, monkeypatch)
    assert isinstance(bp, CondaBuildPack)
    return bp.render(BUILD_ARGS).splitlines()


def _index(lines: list[str], pattern: str | re.Pattern) -> int:
    found = [i for i, line in enumerate(lines) if (re.search(pattern, line) if isinstance(pattern, re.Pattern)
                                                   else pattern in line)]
    assert found, f"no line with {pattern!r} in the rendered Dockerfile"
    return found[0]


def test_repo2docker_picks_the_conda_build_pack_and_accepts_environment_yml(monkeypatch):
    assert not (ROOT / "binder").exists() and not (ROOT / ".binder").exists(), (
        "a binder/ folder makes repo2docker ignore the top-level environment.yml and postBuild")
    bp = _picked_buildpack(ROOT, monkeypatch)
    assert type(bp) is CondaBuildPack, f"repo2docker would build with {type(bp).__name__}"
    assert bp.environment_yaml_path == "environment.yml"
    env = bp.environment_yaml  # parsed by repo2docker's own reader (a mapping, or TypeError)
    assert "conda-forge" in env["channels"]
    # the Python version it reads must have one of its frozen base environments (else it refuses to build)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert Version(bp.python_version) in SpecifierSet(pyproject["project"]["requires-python"])
    assert bp.python_version == "3.11" and not bp.separate_kernel_env
    files = bp.get_build_script_files()
    assert any(dst == "/tmp/env/environment.lock" for dst in files.values())
    assert not bp.uses_r
    lines = bp.render(BUILD_ARGS).splitlines()
    assert next(line for line in lines if line.strip()).startswith("FROM ")


def test_a_local_pip_entry_would_install_the_environment_after_the_copy(tmp_path, monkeypatch):
    """With ``-e .`` in environment.yml's pip section repo2docker does not fail: it moves the whole
    environment's install after ``COPY src/`` (so that ``.`` exists), where every new commit invalidates it."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(item for item in env["dependencies"] if isinstance(item, dict))
    pip["pip"] = ["-e .", *pip["pip"]]
    (tmp_path / "environment.yml").write_text(yaml.safe_dump(env))
    lines = _dockerfile(tmp_path, monkeypatch)
    assert _index(lines, ENV_UPDATE) > _index(lines, "COPY --chown=1000:1000 src/ ${REPO_DIR}/")


def test_the_environment_is_installed_before_the_copy_and_the_package_by_postbuild_after_it(monkeypatch):
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    from repo2docker.utils import is_local_pip_requirement

    assert not [line for line in pip if is_local_pip_requirement(line)], (
        "a local pip entry in environment.yml: install the package in postBuild instead")
    lines = _dockerfile(ROOT, monkeypatch)
    copy = _index(lines, "COPY --chown=1000:1000 src/ ${REPO_DIR}/")
    assert _index(lines, "COPY --chown=1000:1000 src/environment.yml") < _index(lines, ENV_UPDATE) < copy, (
        "the environment's layer comes before the repository's copy (reused by every commit's build)")
    run = _index(lines, "RUN ./postBuild")
    assert run > copy and lines[run - 1] == "RUN chmod +x postBuild"
    assert "USER ${NB_USER}" in lines[copy:run], "postBuild runs as the notebook's user, not root"
    # what postBuild runs: the package itself, with the notebook environment's pip, nothing else fetched
    script = (ROOT / "postBuild").read_text()
    commands = [line for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert script.startswith("#!/usr/bin/env bash\n") and commands[0].startswith("set -e")
    assert any(re.fullmatch(r"python -m pip install .*--no-deps.* -e \.", c) for c in commands), commands


def test_postbuild_runs_here(tmp_path):
    """postBuild is a working bash script: run against a stub ``python`` it installs ``-e .`` and stops on
    the first failing command."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    import subprocess

    stub = tmp_path / "bin"
    stub.mkdir()
    log = tmp_path / "calls"
    (stub / "python").write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit ${{STUB_EXIT:-0}}\n')
    (stub / "python").chmod(0o755)
    env = {"PATH": f"{stub}:/usr/bin:/bin"}
    done = subprocess.run([bash, str(ROOT / "postBuild")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert log.read_text().split() == ["-m", "pip", "install", "--no-cache-dir", "--no-deps", "-e", "."]
    failed = subprocess.run([bash, str(ROOT / "postBuild")], cwd=ROOT, env={**env, "STUB_EXIT": "3"})
    assert failed.returncode == 3


def _pins(text: str) -> dict[str, str]:
    """``name==version`` pins of the pip install lines of a shell script."""
    return {canonicalize_name(n): v for n, v in re.findall(r"\b([A-Za-z][\w.\-]*)==([\w.]+)", text)}


def test_torch_pins_agree_across_environment_yml_pyproject_and_bootstrap():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = {canonicalize_name(Requirement(s).name): Requirement(s).specifier
                for s in pyproject["project"]["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for item in env["dependencies"]:
        if isinstance(item, str):
            req = Requirement(item.replace("=", "==", 1) if re.match(r"^[\w\-]+=[^=]", item) else item)
            conda[canonicalize_name(CONDA_TO_PYPI.get(req.name, req.name))] = req.specifier
    pins = _pins((ROOT / "scripts" / "bootstrap.sh").read_text())
    for name in ("torch", "torchvision"):
        assert conda[name] == declared[name], f"{name}: environment.yml {conda[name]}, pyproject {declared[name]}"
        assert name in pins, f"scripts/bootstrap.sh pins no {name}"
        assert Version(pins[name]) in declared[name], f"bootstrap pins {name}=={pins[name]}, pyproject {declared[name]}"
    assert Version(env_python := next(i for i in env["dependencies"] if str(i).startswith("python=")).split("=")[1]) \
        in SpecifierSet(pyproject["project"]["requires-python"]), env_python
    # the pinned torchvision is the one built for the pinned torch (torchvision 0.N+15 pairs with torch 2.N)
    assert Version(pins["torchvision"]).minor == Version(pins["torch"]).minor + 15


def _notebook_imports() -> dict[str, set[str]]:
    """Top-level module -> the notebooks importing it (code cells; IPython magics and shell lines dropped)."""
    found: dict[str, set[str]] = {}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(source)):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(nb.name)
    return found


def _requirements_closure(names: set[str]) -> set[str]:
    """``names`` and every distribution they require (markers evaluated here, extras left out), read from the
    installed distributions' metadata."""
    seen, todo = set(), [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def test_every_module_the_notebooks_import_is_installed_by_environment_yml():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    declared = set()
    for item in env["dependencies"]:
        for spec in (item["pip"] if isinstance(item, dict) else [item]):
            name = re.match(r"[A-Za-z0-9_.\-]+", spec).group(0)
            if name not in ("python", "pip"):
                declared.add(canonicalize_name(CONDA_TO_PYPI.get(name, name)))
    installed = _requirements_closure(declared)
    providers = md.packages_distributions()
    imports = _notebook_imports()
    assert {"torch", "kr_lib", "matplotlib"} <= set(imports)
    missing = {}
    for module, notebooks in sorted(imports.items()):
        if module in sys.stdlib_module_names:
            continue
        if module == "kr_lib":  # the package itself: postBuild installs it
            assert "-e ." in (ROOT / "postBuild").read_text()
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported by {sorted(notebooks)}) is not installed in this environment"
        if not dists & installed:
            missing[module] = (sorted(dists), sorted(notebooks))
    assert not missing, f"imported by the notebooks but not installed by environment.yml: {missing}"


# ----------------------------------------------------------------------------- the repository's URL
def test_repository_url_is_a_github_repository_or_the_documented_placeholder():
    from kr_lib.book import PLACEHOLDER_REPOSITORY, repository_url

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"]
    assert url == PLACEHOLDER_REPOSITORY or re.fullmatch(r"https://github\.com/[A-Za-z0-9-]+/[A-Za-z0-9_.-]+", url), url
    readme = (ROOT / "README.md").read_text()
    assert "set this to your fork" in readme.lower() and PLACEHOLDER_REPOSITORY in readme
    # the README's Binder badge is the one other mention, and it names the same repository
    slug = url.removeprefix("https://github.com/")
    badges = re.findall(r"mybinder\.org/v2/gh/([^/]+/[^/]+)/", readme)
    assert badges and set(badges) == {slug}, (badges, slug)
    assert repository_url(ROOT, environ={}) == url


def test_the_build_can_take_the_repository_url_from_the_environment(tmp_path):
    from kr_lib.book import repository_url

    assert repository_url(ROOT, environ={"KR_REPOSITORY_URL": "https://github.com/someone/kr-book"}) == \
        "https://github.com/someone/kr-book"
    with pytest.raises(ValueError, match="KR_REPOSITORY_URL"):
        repository_url(ROOT, environ={"KR_REPOSITORY_URL": "git@github.com:someone/kr-book.git"})
    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    build = [s for s in flow["jobs"]["build"]["steps"] if s.get("run") == "make book"][0]
    assert build["env"]["KR_REPOSITORY_URL"] == "https://github.com/${{ github.repository }}"


# ----------------------------------------------------------------------------- the memory benchmark
def _bench_binder():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_binder
    finally:
        sys.path.pop(0)
    return bench_binder


def _notebook(path: Path, code: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("mib = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.slow
def test_bench_binder_measures_the_kernels_peak_and_stops_a_page_that_runs_too_long(tmp_path):
    bench = _bench_binder()
    root = tmp_path / "src"
    root.mkdir()
    # 300 MiB held by the kernel (written to, so resident), released before the notebook ends: a peak
    _notebook(root / "big.ipynb", "import numpy as np\na = np.ones(mib * 2**20 // 8)\ndel a")
    _notebook(root / "slow.ipynb", "import time\ntime.sleep(120)")
    row = bench.measure_page("big.ipynb", {"source": "big.ipynb", "parameters": {"mib": 300}}, root,
                             tmp_path / "out", timeout=300, interval=0.05)
    assert row["status"] == "ok", row
    assert 300 < row["kernel_peak_mib"] < 300 + 250, row  # the array plus an IPython kernel's own
    assert row["papermill_peak_mib"] < 200 and row["under_binder_limit"] is True
    assert row["tree_peak_mib"] <= row["kernel_peak_mib"] + row["papermill_peak_mib"] + 50
    stopped = bench.measure_page("slow.ipynb", {"source": "slow.ipynb", "parameters": {}}, root, tmp_path / "out",
                                 timeout=8, interval=0.2)
    assert stopped["status"].startswith("not measured: stopped after 8 s") and stopped["under_binder_limit"] is None
    assert stopped["wall_seconds"] < 60
    summary = bench.summarize([row, stopped])
    assert summary["pages not measured"] == "slow.ipynb" and summary["pages measured"] == 1


def _binder_table(text: str) -> dict[str, tuple[str, str]]:
    """The Rerun page's Binder table: page -> (peak memory cell, wall time cell)."""
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+?) \| ([^|]+?) \|$", text, re.M)
    return {page: (peak, wall) for page, peak, wall in rows}


def test_the_rerun_page_states_the_binder_record():
    """Every page of the committed record is on the Rerun page with its peak memory (kernel + papermill, MiB)
    and wall time as measured, or as not measured; every executed page of the book is in the record."""
    from kr_lib import perf
    from kr_lib.book import executed_pages

    record = perf.load_results(ROOT / "benchmarks" / "results").get("binder_cpu")
    assert record is not None, "no benchmarks/results/binder_cpu.json (python benchmarks/bench_binder.py)"
    assert not record["quick"] and record["parameters"]["preset"] == "default"
    assert {r["page"] for r in record["rows"]} == set(executed_pages(ROOT)), "the record misses executed pages"
    text = (ROOT / "book" / "rerun.md").read_text()
    table = _binder_table(text)
    assert set(table) == {r["page"].removesuffix(".ipynb") for r in record["rows"]}
    bench = _bench_binder()
    for row in record["rows"]:
        assert table[row["page"].removesuffix(".ipynb")] == bench.table_cells(row), row["page"]
        if row["status"] == "ok":
            assert row["under_binder_limit"] == (row["kernel_peak_mib"] + row["papermill_peak_mib"] < 1907.35)
    limit = f"{record['summary']['binder limit MiB']:,.0f} MiB"
    assert limit in text
    most = max(r["kernel_peak_mib"] + r["papermill_peak_mib"] for r in record["rows"] if r["status"] == "ok")
    assert f"{most:,.0f} MiB" in text
    assert bench.markdown_table(record) in text, "python benchmarks/bench_binder.py --print-table prints the table"
