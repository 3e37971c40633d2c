"""Helpers for the tests of kr_lib.runs: synthetic records and a stand-in ablation notebook."""
from __future__ import annotations

import nbformat

from kr_lib.runs.ablation import DEFAULTS, base_record, check_parameters


#: A tiny real ablation run: seconds on a CPU (the ``tiny_run`` fixture of conftest.py trains it once).
TINY_RUN = {"dataset": "fashion_mnist", "design": "bottleneck", "kr_ratio": 2, "R": 4, "stages": 2, "stem_stride": 2,
            "epochs": 1, "batch_size": 64, "train_limit": 256, "test_limit": 256, "device": "cpu", "threads": 1}


def synthetic_record(accuracy: float | None, status: str = "completed", **params) -> dict:
    """A record as run_ablation writes it, with made-up metrics (no training)."""
    p = check_parameters({"train_limit": 64, "test_limit": 64, **params})
    rec = base_record(p, status)
    rec.update(metrics={"test_accuracy": accuracy, "test_loss": 1.0, "train_accuracy": accuracy, "train_loss": 1.0,
                        "best_test_accuracy": accuracy, "epochs_completed": p["epochs"]},
               history=[], model={"design": p["design"], "kr_ratio": float(eval_fraction(p["kr_ratio"])),
                                  "kr_fraction": p["kr_ratio"], "K": 8, "R": 8, "parameters": 1000},
               network={"total_parameters": 1000, "df": 500, "naive_count": 1000, "flops_per_sample": 10_000,
                        "weighted_kr": 1.0},
               timing={"wall_time_s": 1.0}, device="cpu")
    return rec


def eval_fraction(text: str) -> float:
    from fractions import Fraction

    return float(Fraction(text))


def fake_notebook(path) -> None:
    """A notebook with the ablation parameters that trains nothing: odd seeds raise, even seeds write a
    completed record with accuracy 0.5 -- to test the sweep machinery in seconds."""
    params = "\n".join(f"{k} = {v!r}" for k, v in DEFAULTS.items())
    body = (
        "p = {k: v for k, v in globals().items() if k in %r}\n"
        "import sys; sys.path.insert(0, %r)\n"
        "from kr_lib.runs import ablation as _ablation\n"
        "from kr_lib.runs.records import write_record\n"
        "from runs_helpers import synthetic_record\n"
        "if seed %% 2:\n"
        "    raise RuntimeError('stand-in failure for an odd seed')\n"
        "rec = synthetic_record(0.5, **p)\n"
        "write_record(rec, _ablation.output_dir(_ablation.check_parameters(p)), staged=p['staged_record'])\n"
    ) % (sorted(DEFAULTS), str(__import__("pathlib").Path(__file__).parent))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell(body)],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nbformat.write(nb, str(path))


def ctrl_c_ready() -> None:
    """``preexec_fn`` of a command a test interrupts with SIGINT: the default Ctrl-C disposition in the child.
    A shell that starts the suite as a background job (``cmd &`` without job control) leaves SIGINT ignored in
    everything it starts, Python keeps an inherited "ignored", and the test's SIGINT would then do nothing."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
