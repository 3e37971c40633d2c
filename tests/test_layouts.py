"""Memory layouts on the training path, run in subprocesses so that a native crash is one failed test.

oneDNN corrupts memory in the backward pass of a 1x1 stride-2 convolution on a channels-last input with
few channels, on AVX2 CPUs (``scripts/repro_onednn_channels_last.py``). The library's answer is that no
training or evaluation path hands a network a layout that happened by accident: ``prepare_batch`` returns
the contiguous layout whatever the stored batch's. Here every design, in 2D and 3D, with 1 and 3 input
channels, stored batches in both layouts, runs forward and backward on 1 and 2 threads, with oneDNN as it
is on this machine and capped at AVX2 (the ISA of the machines where the crash was seen).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(int(sys.argv[1]))
    from kr_lib.data import DatasetInfo
    from kr_lib.data.augment import prepare_batch
    from kr_lib.models import build_model
    from kr_lib.train import evaluate

    DESIGNS = {2: ["dense", "bottleneck", "resnext", "inverted_residual", "separable"],
               3: ["dense", "bottleneck", "inverted_residual", "separable", "r2plus1d"]}
    for dim, designs in DESIGNS.items():
        for channels in (1, 3):
            shape = (channels, 16, 16) if dim == 2 else (channels, 4, 16, 16)
            info = DatasetInfo(f"layout{dim}d", 10, shape, (0.5,) * channels, (0.25,) * channels,
                               crop_padding=2, flip=True)
            for design in designs:
                torch.manual_seed(0)
                # R = 4: the stride-2 shortcut sees 4 channels, as in the crash
                model = build_model(info, design, 1 if design == "dense" else 2, R=4, stages=2, group_width=2)
                g = torch.Generator().manual_seed(1)
                for layout in ("contiguous", "channels_last"):
                    print(f"{dim}D {design} C={channels} {layout}", flush=True)
                    stored = torch.randint(0, 256, (8, *shape), dtype=torch.uint8)
                    if layout == "channels_last":  # the stored batch's layout, e.g. frames read as HWC
                        fmt = torch.channels_last if dim == 2 else torch.channels_last_3d
                        stored = stored.contiguous(memory_format=fmt)
                    for step in range(3):
                        x = prepare_batch(stored, info, train=True, generator=g)
                        assert x.is_contiguous(), f"prepare_batch handed the network strides {x.stride()}"
                        model(x).sum().backward()
    print("all clean", flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("isa", ["native", "AVX2"])
def test_every_design_trains_in_both_stored_layouts_without_a_native_crash(threads, isa):
    env = {**os.environ, "PYTHONPATH": ROOT}
    if isa != "native":
        env["ONEDNN_MAX_CPU_ISA"] = isa  # oneDNN's kernels for that ISA, on a machine that has more
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(threads)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
    except subprocess.TimeoutExpired as err:
        last = (err.stdout or b"").decode().strip().splitlines()[-1:] if isinstance(err.stdout, bytes) else []
        pytest.fail(f"hung for 300 s on {threads} thread(s), oneDNN ISA {isa}; last case started: {last}")
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines[-1:] == ["all clean"], (
        f"exit {done.returncode} on {threads} thread(s), oneDNN ISA {isa}; last case started: "
        f"{lines[-1] if lines else None}; stderr: {done.stderr[-1500:]}")
