"""``kr sweep --backend ray``: each run a Ray task on a local single-node Ray (no cluster needed)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from runs_helpers import fake_notebook  # noqa: E402

from kr_lib.runs import read_records  # noqa: E402
from kr_lib.runs.runner import run_sweep  # noqa: E402

ray = pytest.importorskip("ray")

SWEEP = """
dataset: fashion_mnist
parameters: {epochs: 1, train_limit: 64, test_limit: 64, stages: 2, stem_stride: 2}
grids:
  runs: {design: [bottleneck], kr_ratio: [1], R: [4], seed: [0, 1]}
"""


@pytest.mark.slow
def test_ray_backend_runs_each_run_as_a_task_and_writes_the_records_here(tmp_path):
    nb = tmp_path / "fake.ipynb"
    fake_notebook(nb)  # seed 0 completes, seed 1 raises: both come back as records
    (tmp_path / "s.yaml").write_text(SWEEP)
    out = tmp_path / "results"
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_sweep(tmp_path / "s.yaml", output_dir=out, backend="ray", notebook=nb, progress=False)
    finally:
        ray.shutdown()
    assert sorted(o.status for o in summary.outcomes) == ["completed", "failed"]
    records, corrupt = read_records(out / "fashion_mnist")
    assert not corrupt
    by_seed = {r["parameters"]["seed"]: r for r in records}
    assert by_seed[0]["status"] == "completed" and by_seed[1]["status"] == "failed"
    assert "stand-in failure" in by_seed[1]["message"]
    folder = out / "fashion_mnist"
    assert (folder / f"{by_seed[0]['run_id']}.ipynb").is_file()  # the executed notebook came back too
    assert (folder / f"{by_seed[1]['run_id']}.failed.ipynb").is_file()
    again = run_sweep(tmp_path / "s.yaml", output_dir=out, backend="ray", notebook=nb, progress=False)
    assert again.count("skipped") == 2  # nothing sent to Ray the second time
