"""Fixtures shared by the test files."""
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One tiny trained ablation run (record, weights, model), shared by the weights and measurement tests."""
    from kr_lib.runs import run_ablation
    from runs_helpers import TINY_RUN

    out = tmp_path_factory.mktemp("tiny-results")
    return run_ablation({**TINY_RUN, "output_dir": str(out)}, progress=False)


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is fastest, and immune to a busy shared CPU (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_report_header(config):
    """Say which thread count the suite runs with: ``.ci/run`` runs it on torch's default and on one thread
    (``OMP_NUM_THREADS=1``, as the book's sweeps use ``--threads 1``), and some native kernels differ."""
    return f"torch {torch.__version__}: {torch.get_num_threads()} intra-op thread(s)"
