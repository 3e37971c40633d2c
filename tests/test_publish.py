"""The GitHub Pages workflow (.github/workflows/book.yml) builds with the README's command and deploys
the HTML that command writes, in the upload-artifact / deploy-pages pattern Jupyter Book documents."""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def _steps(job: dict) -> list[dict]:
    return job.get("steps") or []


def test_the_workflow_builds_with_the_readme_command_and_deploys_the_html():
    flow = yaml.safe_load(WORKFLOW.read_text())
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads the key `on` as True
    assert "main" in triggers["push"]["branches"]
    assert flow["permissions"]["pages"] == "write" and flow["permissions"]["id-token"] == "write"
    build, deploy = flow["jobs"]["build"], flow["jobs"]["deploy"]
    runs = [s.get("run", "") for s in _steps(build)]
    assert "make book" in runs, "the book is built by the README's command 1"
    assert "make book" in (ROOT / "README.md").read_text()
    upload = [s for s in _steps(build) if str(s.get("uses", "")).startswith("actions/upload-pages-artifact")]
    assert upload and upload[0]["with"]["path"] == "_build/html"
    cache = [s for s in _steps(build) if str(s.get("uses", "")).startswith("actions/cache")]
    assert cache and "_build/src" in cache[0]["with"]["path"], "executed pages are cached between runs"
    steps = [s.get("uses", "") for s in _steps(build)]
    assert steps.index(cache[0]["uses"]) < runs.index("make book"), "the cache is restored before the build"
    assert deploy["needs"] == "build"
    assert any(str(s.get("uses", "")).startswith("actions/deploy-pages") for s in _steps(deploy))

