"""kr_lib.fastpath: every candidate is the same function as the block; the chosen one is the fastest timed."""
import pytest
import torch
from torch import nn

from kr_lib.blocks import make_block
from kr_lib.decompose import decompose_conv
from kr_lib.fastpath import equivalent_layers, fastest_layer, merged_depthwise

pytestmark = pytest.mark.usefixtures("one_thread")


def _close(a, b):
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("dim,size,stride", [(2, (9, 11), 1), (2, (9, 11), 2), (3, (5, 7, 6), (1, 2, 2)), (1, (13,), 2)])
def test_merged_depthwise_equals_the_separable_block(dim, size, stride):
    torch.manual_seed(0)
    block = make_block("separable", 6, 10, 4, dim=dim, kernel_size=3, stride=stride, linear=True, bias=True).double()
    x = torch.randn(2, 6, *size, dtype=torch.double)
    if dim == 1:  # one spatial mode: a single depthwise conv, nothing to merge
        with pytest.raises(ValueError, match="nothing to merge"):
            merged_depthwise(block)
        return
    merged = merged_depthwise(block)
    depthwise = [m for m in merged if m.groups > 1]
    assert len(depthwise) == 1 and tuple(depthwise[0].kernel_size) == (3,) * dim
    assert len(merged) == 3  # 1x1, one depthwise conv, 1x1
    _close(merged(x), block(x))


def test_merged_depthwise_on_a_cp_decomposed_conv():
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 12, (3, 5), stride=(2, 1), padding=(1, 2)).double()
    cp = decompose_conv(conv, "cp", 5)
    x = torch.randn(2, 8, 10, 9, dtype=torch.double)
    _close(merged_depthwise(cp)(x), cp(x))


def test_merged_depthwise_refuses_blocks_without_per_mode_depthwise_convs():
    for design in ("bottleneck", "inverted_residual", "dense"):
        block = make_block(design, 4, 8, 8 if design == "dense" else 4, linear=True)
        with pytest.raises(ValueError, match="nothing to merge"):
            merged_depthwise(block)


@pytest.mark.parametrize("design", ["bottleneck", "separable", "inverted_residual", "resnext"])
def test_equivalent_layers_give_the_block_output(design):
    torch.manual_seed(2)
    block = make_block(design, 8, 16, 8, linear=True, groups=2 if design == "resnext" else None).double()
    layers = equivalent_layers(block)
    expected = {"block", "reconstructed conv"} | ({"one depthwise conv"} if design == "separable" else set())
    assert set(layers) == expected
    x = torch.randn(3, 8, 7, 7, dtype=torch.double)
    for layer in layers.values():
        _close(layer(x), block(x))


@pytest.mark.parametrize("dim", [2, 3])
def test_fastest_layer_returns_an_exact_equivalent_and_the_fastest_timing(dim):
    torch.manual_seed(3)
    block = make_block("separable", 8, 16, 4, dim=dim, linear=True)
    x = torch.randn(2, 8, *(6,) * dim)
    before = [p.clone() for p in block.parameters()]
    fast = fastest_layer(block, x, repeats=2)
    names = {"block", "one depthwise conv", "reconstructed conv"}
    assert set(fast.seconds) == names | {f"{n}, channels last" for n in names}
    assert fast.seconds[fast.choice] == min(fast.seconds.values())
    assert fast.speedup_over("block") >= 1.0
    with torch.no_grad():
        torch.testing.assert_close(fast(x), block(x), atol=1e-5, rtol=1e-4)
    # the block is left as it was: same parameters, same (contiguous) layout
    assert all(torch.equal(a, b) and b.is_contiguous() for a, b in zip(before, block.parameters()))


def test_fastest_layer_for_training_keeps_the_decomposition():
    block = make_block("separable", 8, 16, 4, linear=True)
    fast = fastest_layer(block, torch.randn(2, 8, 6, 6), backward=True, repeats=1)
    # on the CPU the block in its contiguous layout only: oneDNN's channels-last backward is unsafe on AVX2
    assert set(fast.seconds) == {"block"}
    assert fast.backward and fast.choice == "block" and fast.memory_format == torch.contiguous_format
    # training the fast path trains the block's own CP factors
    assert {id(p) for p in fast.parameters()} == {id(p) for p in block.parameters()}


def test_fastest_layer_without_channels_last_in_1d():
    fast = fastest_layer(make_block("bottleneck", 4, 8, 2, dim=1, linear=True), torch.randn(2, 4, 9), repeats=1)
    assert set(fast.seconds) == {"block", "reconstructed conv"}


def test_fastest_layer_refuses_a_residual_block():
    with pytest.raises(ValueError, match="linear=True"):
        fastest_layer(make_block("bottleneck", 4, 8, 2), torch.randn(1, 4, 5, 5))


FASTPATH_CHILD = """
import sys, torch
from torch import nn
from kr_lib.blocks import make_block
from kr_lib.decompose import decompose_conv
from kr_lib.fastpath import fastest_layer

torch.set_num_threads(1)
torch.manual_seed(0)
# the convs of the oneDNN defect: 1x1, stride 2, few input channels (and neighbours of them)
cases = [("2D dense 3->8 1x1 s2", make_block("dense", 3, 8, None, kernel_size=1, stride=2, linear=True), (3, 12, 12)),
         ("2D bottleneck 4->8 1x1 s2", make_block("bottleneck", 4, 8, 4, kernel_size=1, stride=2, linear=True), (4, 12, 12)),
         ("2D tucker2 of a 1x1 s2 conv", decompose_conv(nn.Conv2d(4, 16, 1, stride=2), "tucker2", (4, 4)), (4, 12, 12)),
         ("2D separable 1->8 s2", make_block("separable", 1, 8, 4, stride=2, linear=True), (1, 12, 12)),
         ("3D bottleneck 3->8 1x1 s2", make_block("bottleneck", 3, 8, 4, dim=3, kernel_size=1, stride=2, linear=True),
          (3, 4, 12, 12)),
         ("3D r2plus1d 3->8 s2", make_block("r2plus1d", 3, 8, 4, dim=3, stride=2, linear=True), (3, 4, 12, 12))]
for name, block, shape in cases:
    x = torch.randn(8, *shape)
    print(name, "forward", flush=True)
    fastest_layer(block, x, repeats=3)  # checks every candidate, channels last too, against the block
    print(name, "backward", flush=True)
    fast = fastest_layer(block, x, backward=True, repeats=3)
    assert all(not name.endswith("channels last") for name in fast.seconds), fast.seconds
    for step in range(5):
        fast(torch.randn(8, *shape)).sum().backward()
print("all clean", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("isa", ["native", "AVX2"])
def test_fastest_layer_candidates_run_clean_on_one_thread(isa):
    """The layouts fastest_layer offers on the CPU, run where oneDNN's channels-last backward corrupts memory
    (capped at AVX2, one thread), in a subprocess so that a native crash is one failed test."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    if isa != "native":
        env["ONEDNN_MAX_CPU_ISA"] = isa
    try:
        done = subprocess.run([sys.executable, "-c", FASTPATH_CHILD], cwd=root, env=env, capture_output=True,
                              text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung for 300 s with oneDNN ISA {isa}")
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines[-1:] == ["all clean"], (
        f"exit {done.returncode} with oneDNN ISA {isa}; last case started: {lines[-1] if lines else None}; "
        f"stderr: {done.stderr[-1500:]}")
