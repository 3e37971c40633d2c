"""Reproduction across CPUs (kr_lib.runs.reproduction; issue 16 point 13): the comparison records, their
spread, the AVX2 emulation that made them, and the numbers the Rerun page and kr reproduce take from them."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from runs_helpers import synthetic_record  # noqa: E402

from kr_lib.runs.reproduce import CPU_ACCURACY_TOLERANCE, CPU_LOSS_RTOL
from kr_lib.runs.reproduction import (AVX2_EMULATION, FOLDER, beside_noise_floor, comparison_record, cross_cpu_spread,
                                      read_comparisons, spread_text, write_comparison)

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "results" / FOLDER


def _run(accuracy: float, loss: float, capability: str | None, threads: int = 1) -> dict:
    rec = synthetic_record(accuracy, design="dense", kr_ratio="1", R=8, seed=1)
    rec["metrics"]["test_loss"] = loss
    rec["machine"] = {"cpu_count": 2} if capability is None else {"cpu_model": "AMD EPYC", "cpu_capability": capability}
    rec["timing"] = {"wall_time_s": 60.0, "torch_threads": threads}
    return rec


def test_a_comparison_is_written_atomically_read_back_and_gives_the_spread(tmp_path):
    old, avx2 = _run(0.9078, 0.2604, None), _run(0.9043, 0.2610, "AVX2")
    cmp = comparison_record(old, avx2, rule="tolerance", reason="it predates run_code", environment=AVX2_EMULATION)
    assert math.isclose(cmp["difference"]["test_accuracy"], -0.0035) and cmp["emulated"]
    assert (cmp["recorded"]["cpu_capability"], cmp["rerun"]["cpu_capability"]) == (None, "AVX2")
    path = write_comparison(cmp, tmp_path)
    assert path.name == f"{old['run_id']}-avx2.json" and [p.name for p in tmp_path.iterdir()] == [path.name]
    # a same-CPU control (nothing emulated, the record names no CPU) is not a cross-CPU difference
    write_comparison(comparison_record(old, _run(0.9078, 0.2604, "AVX512"), rule="tolerance", reason=""), tmp_path)
    # two recorded CPUs that differ are
    other = comparison_record(_run(0.90, 0.30, "AVX512"), _run(0.9012, 0.2991, "AVX2"), rule="tolerance", reason="")
    write_json = tmp_path / "z.json"
    write_json.write_text(json.dumps(other))
    assert len(read_comparisons(tmp_path)) == 3
    spread = cross_cpu_spread(tmp_path)
    assert spread["count"] == 2 and math.isclose(spread["max_abs_accuracy"], 0.0035)
    assert math.isclose(spread["max_rel_loss"], max(0.0006 / 0.2604, 0.0009 / 0.30))
    assert [round(d["accuracy_difference"], 4) for d in spread["differences"]] == [-0.0035, 0.0012]
    assert spread["datasets"] == ["fashion_mnist"] and (spread["controls"], spread["controls_identical"]) == (1, 1)
    assert "Cross-CPU spread = 0.0035" in spread_text(spread) and "emulated on one machine" in spread_text(spread)
    assert "larger than the thread-count noise floor $f$ = 0.0024" in beside_noise_floor(spread, 0.0024)
    assert "smaller than the thread-count noise floor $f$ = 0.0100" in beside_noise_floor(spread, 0.01)
    assert cross_cpu_spread(tmp_path / "none")["count"] == 0
    assert "not measured" in beside_noise_floor(cross_cpu_spread(tmp_path / "none"), 0.0024)


def test_a_file_that_is_not_a_comparison_is_named(tmp_path):
    (tmp_path / "bad.json").write_text('{"schema": 1}')
    with pytest.raises(ValueError, match="bad.json: not a reproduction record"):
        read_comparisons(tmp_path)


def test_the_avx2_cap_takes_effect_in_torch_and_onednn():
    """The emulation's environment makes ATen report AVX2 and oneDNN run its AVX2 convolution kernel (on an
    AVX-512 machine it would otherwise pick avx512_core): a rerun under it is a rerun on another CPU's kernels."""
    code = ("import torch; torch.set_num_threads(1); print(torch.backends.cpu.get_cpu_capability()); "
            "c = torch.nn.Conv2d(3, 8, 3); x = torch.randn(2, 3, 16, 16, requires_grad=True); c(x).sum().backward()")
    native = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if native.stdout.split()[0] not in ("AVX2", "AVX512"):
        pytest.skip(f"an x86 CPU with AVX2 is needed (this one: {native.stdout.split()[0]})")
    env = {**os.environ, **AVX2_EMULATION, "ONEDNN_VERBOSE": "1"}
    capped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert capped.returncode == 0, capped.stderr[-2000:]
    assert capped.stdout.splitlines()[0] == "AVX2"
    convs = [line for line in capped.stdout.splitlines() if ",exec,cpu,convolution," in line]
    assert convs and all(",jit:avx2," in line or ",gemm:" in line for line in convs), convs


# -- the committed comparisons and the numbers taken from them ---------------------------------------------

def test_committed_comparisons_name_no_machine_path_and_are_cross_cpu_reruns():
    comparisons = read_comparisons(COMMITTED)
    assert comparisons, "results/reproduction holds the measured comparisons"
    for path in COMMITTED.glob("*.json"):
        text = path.read_text()
        assert str(ROOT) not in text and "/home/" not in text and "/tmp/" not in text, path.name
        record = json.loads(text)
        assert (ROOT / "results" / record["dataset"] / f"{record['run_id']}.json").is_file(), path.name
        # a cross-CPU rerun under the AVX2 cap, or a same-CPU control on this machine's own kernels
        assert record["emulated"] == (record["environment"] == AVX2_EMULATION)
        assert record["rerun"]["cpu_capability"] == "AVX2" or not record["emulated"]
        recorded = json.loads((ROOT / "results" / record["dataset"] / f"{record['run_id']}.json").read_text())
        assert record["recorded"]["test_accuracy"] == recorded["metrics"]["test_accuracy"]


def test_the_cpu_tolerance_covers_the_measured_spread():
    """kr reproduce's tolerance on another CPU is chosen from the measurement: above every difference measured,
    with a quarter's margin (as the Rerun page says)."""
    spread = cross_cpu_spread(COMMITTED)
    assert spread["count"] >= 3
    assert 1.25 * spread["max_abs_accuracy"] <= CPU_ACCURACY_TOLERANCE
    assert 1.25 * spread["max_rel_loss"] <= CPU_LOSS_RTOL


def test_the_cross_cpu_spread_is_larger_than_the_thread_count_floor():
    """The Rerun page says so, and the Fashion-MNIST results page prints both."""
    from kr_lib.runs import read_records
    from kr_lib.runs.findings import noise_floor

    records, _ = read_records(ROOT / "results" / "fashion_mnist")
    floor = noise_floor(records)["floor"]
    assert floor is not None and cross_cpu_spread(COMMITTED)["max_abs_accuracy"] > floor


def test_the_rerun_page_prints_the_measured_spread():
    """book/rerun.md types the comparisons' numbers: each must equal what cross_cpu_spread computes."""
    page = (ROOT / "book" / "rerun.md").read_text()
    prose = " ".join(page.split())  # the sentences, whatever their line breaks
    spread = cross_cpu_spread(COMMITTED)
    rows = [line for line in page.splitlines() if re.match(r"\| `[A-Za-z0-9-]+-[0-9a-f]{10}` \|", line)]
    assert len(rows) == spread["count"], rows
    for d in spread["differences"]:
        expected = (f"| `{d['run_id']}` | {d['recorded_accuracy']:.4f} | {d['rerun_accuracy']:.4f} | "
                    f"{d['accuracy_difference']:+.4f} | {d['rerun_wall_time_s'] / 60:.1f} min |")
        assert expected in rows, (expected, rows)
    assert f"cross-CPU spread is **{spread['max_abs_accuracy']:.4f}**" in page
    if spread["controls"]:
        assert (f"{spread['controls_identical']} of {spread['controls']} rerun(s) on the machine's own kernels "
                "reproduced their record exactly") in prose
    assert f"`--accuracy-tol` default {CPU_ACCURACY_TOLERANCE:g}" in page
    assert f"`kr reproduce`'s CPU tolerance, {CPU_ACCURACY_TOLERANCE:g}," in prose
    assert f"likewise {CPU_LOSS_RTOL * 100:g} % for the loss" in prose
    assert f"largest measured relative difference is {spread['max_rel_loss'] * 100:.1f} %" in prose
