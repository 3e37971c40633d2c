"""environment.yml (what Binder builds) and pyproject.toml declare the same dependencies."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch-cpu": "torch", "pytorch": "torch", "opt_einsum": "opt-einsum"}


def _split(spec: str) -> tuple[str, str]:
    name = re.match(r"[A-Za-z0-9_.\-]+", spec).group(0)
    return name.lower().replace("_", "-"), spec[len(name):].replace(" ", "")


def test_environment_yml_matches_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = dict(_split(s) for s in pyproject["project"]["dependencies"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for item in env["dependencies"]:
        if isinstance(item, str) and not item.startswith(("python", "pip")):
            name, version = _split(item)
            conda[CONDA_TO_PYPI.get(name, name)] = version
    assert set(conda) == set(declared), (
        f"only in environment.yml: {sorted(set(conda) - set(declared))}; "
        f"only in pyproject.toml: {sorted(set(declared) - set(conda))}"
    )
    for name, version in declared.items():
        assert conda[name] == version, f"{name}: pyproject says {version!r}, environment.yml {conda[name]!r}"


def test_environment_installs_the_package_itself():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    # after repo2docker's copy of the repository, by postBuild (tests/test_binder.py checks the order)
    assert "pip install" in (ROOT / "postBuild").read_text() and "-e ." in (ROOT / "postBuild").read_text()
    assert "conda-forge" in env["channels"]


def test_jupyter_book_is_the_sphinx_one():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    spec = next(s for s in pyproject["project"]["dependencies"] if s.startswith("jupyter-book"))
    assert "<2" in spec
