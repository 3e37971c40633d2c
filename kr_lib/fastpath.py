"""The fastest exact way to evaluate a linear compressed block, chosen by timing it where it runs.

A decomposed kernel can be applied in several ways that give the same output (up to rounding):

* ``block``: the chain of convs as built, with the FLOPs of the decomposition;
* ``one depthwise conv``: for a CP (``separable``) block, its per-mode depthwise 1D convs merged into a
  single depthwise conv whose kernel is their outer product (``merged_depthwise``): one pass over the
  R-channel activations instead of N, at the price of ``l_1 l_2`` multiply-adds per output instead of
  ``l_1 + l_2``;
* ``reconstructed conv``: one conv with the composite kernel (``kr_lib.decompose.reconstructed_conv``),
  at exactly the dense conv's cost -- it wins only where the block is slower than the dense conv
  (ranks near the full rank, or launch-bound small inputs on a GPU);

each in the default (contiguous) and the channels-last memory layout, for which oneDNN and cuDNN choose
other kernels. Small ranks make a block memory-bound: its thin 1x1 convs move nearly as many bytes as
the dense conv for a fraction of its multiply-adds, and the layout decides how well they stream.

``fastest_layer(block, x)`` checks that every candidate equals the block on ``x``, times them
interleaved (``kr_lib.perf.compare``) and returns the fastest as a ``FastPath`` module. With
``backward=True`` (training) only the block itself is a candidate, in both layouts on a GPU and in the
contiguous one on the CPU: a merged or reconstructed kernel is a different parametrization, with more
free parameters than the decomposition, and on the CPU oneDNN's backward pass of a 1x1 stride-2 conv on
a channels-last input with few channels corrupts memory on AVX2 machines (the process aborts, or hangs
on two threads; ``scripts/repro_onednn_channels_last.py``). Measured with oneDNN capped at AVX2, on one
thread, every design in 2D and 3D and Tucker-2, CP and Tucker decompositions, with 1 to 8 input channels,
strides 1 and 2, kernels 1 and 3: forward+backward of the channels-last block aborted the process for
each 2D block whose chain has a 1x1 stride-2 conv with 1 to 4 input channels (dense and bottleneck
blocks, Tucker-2 of a 1x1 stride-2 conv); the forward pass of every candidate, in both layouts, gave the
contiguous layout's output in every case, 20 times over. So on the CPU channels-last candidates stay for
inference and go for training (in 3D too, where none crashed: the same kernels are a risk). A
``FastPath`` chosen for the forward pass is for inference: train through the one ``backward=True`` chooses.
"""
from __future__ import annotations

import copy
import torch
from torch import nn

from . import perf
from .decompose import reconstructed_conv

__all__ = ["merged_depthwise", "equivalent_layers", "fastest_layer", "FastPath", "channels_last_format", "step"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _convs(block: nn.Module) -> list[nn.modules.conv._ConvNd]:
    if getattr(block, "linear", True) is False:
        raise ValueError("a fast path needs a linear block (make_block(..., linear=True) or decompose_conv's "
                         "output): BatchNorm, ReLU and the residual are not part of the decomposed kernel")
    convs = block.convs() if hasattr(block, "convs") else list(block)
    if not convs or not all(isinstance(c, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for c in convs):
        raise TypeError(f"a fast path needs a chain of nn.Conv layers, got {[type(c).__name__ for c in convs]}")
    return convs


def _is_per_mode_depthwise(conv: nn.modules.conv._ConvNd) -> int | None:
    """The one spatial mode a depthwise conv acts along (kernel, stride or padding > 1 there only), else None."""
    channels = conv.in_channels
    if conv.groups != channels or conv.out_channels != channels or conv.bias is not None or isinstance(conv.padding, str):
        return None
    if any(d != 1 for d in conv.dilation) or conv.padding_mode != "zeros":
        return None
    active = [j for j in range(len(conv.kernel_size))
              if conv.kernel_size[j] > 1 or conv.stride[j] > 1 or conv.padding[j] > 0]
    return active[0] if len(active) == 1 else None


def merged_depthwise(block: nn.Module) -> nn.Sequential:
    """The block with each run of per-mode depthwise convs (one per spatial mode, as a CP block has)
    merged into one depthwise conv with their outer-product kernel, stride and padding (exact: the
    modes are independent, so the order of the 1D convs does not matter).

    ``block``: a linear ``separable`` block, a CP ``DecomposedConv`` or an ``nn.Sequential`` of convs,
    (batch, P, d_1..d_N) -> (batch, K, m_1..m_N); the result has the same input and output. The 1x1
    convs are shared with ``block`` (not copied); the merged kernel is a new tensor (R, 1, l_1..l_N).
    Raises ValueError when the block has no two adjacent per-mode depthwise convs.
    """
    layers: list[nn.Module] = []
    run: list[nn.modules.conv._ConvNd] = []
    modes: list[int] = []
    merged_any = False

    def flush():
        nonlocal merged_any
        if len(run) >= 2:
            layers.append(_merge(run))
            merged_any = True
        else:
            layers.extend(run)
        run.clear()
        modes.clear()

    for conv in _convs(block):
        mode = _is_per_mode_depthwise(conv)
        if not (mode is not None and run and conv.in_channels == run[0].in_channels and mode not in modes):
            flush()
        if mode is None:
            layers.append(conv)
        else:
            run.append(conv)
            modes.append(mode)
    flush()
    if not merged_any:
        raise ValueError("merged_depthwise: the block has no adjacent per-mode depthwise convs (a CP / separable "
                         "block has one per spatial mode); nothing to merge")
    return nn.Sequential(*layers)


def _merge(run: list[nn.modules.conv._ConvNd]) -> nn.modules.conv._ConvNd:
    N = run[0].weight.dim() - 2
    kernel = run[0].weight.detach()
    for conv in run[1:]:
        kernel = kernel * conv.weight.detach()  # (R, 1, l_1, 1) * (R, 1, 1, l_2) -> (R, 1, l_1, l_2)
    stride = tuple(max(c.stride[j] for c in run) for j in range(N))
    padding = tuple(max(c.padding[j] for c in run) for j in range(N))
    channels = run[0].in_channels
    depthwise = _CONV[N](channels, channels, tuple(kernel.shape[2:]), stride=stride, padding=padding,
                         groups=channels, bias=False).to(device=kernel.device, dtype=kernel.dtype)
    with torch.no_grad():
        depthwise.weight.copy_(kernel)
    return depthwise


def equivalent_layers(block: nn.Module) -> dict[str, nn.Module]:
    """The exact evaluations of a linear block that apply to it, by name: ``block`` (its convs as built,
    shared), ``one depthwise conv`` (CP blocks) and ``reconstructed conv`` (every block this library builds)."""
    layers: dict[str, nn.Module] = {"block": nn.Sequential(*_convs(block))}
    try:
        layers["one depthwise conv"] = merged_depthwise(block)
    except ValueError:
        pass
    try:
        layers["reconstructed conv"] = reconstructed_conv(block)
    except ValueError:
        pass
    return layers


def channels_last_format(dim: int) -> torch.memory_format | None:
    """``torch.channels_last`` for 2D, ``torch.channels_last_3d`` for 3D, None for 1D (no such layout)."""
    return {2: torch.channels_last, 3: torch.channels_last_3d}.get(dim)


class FastPath(nn.Module):
    """The evaluation ``fastest_layer`` chose: ``layer`` applied to the input in ``memory_format``.

    (batch, P, d_1..d_N) -> (batch, K, m_1..m_N), equal to the block (the output is in
    ``memory_format``; its values do not depend on it). ``choice`` names the winner, ``seconds`` holds
    every candidate's median time, ``backward`` whether forward+backward was timed.
    """

    def __init__(self, layer: nn.Module, choice: str, memory_format: torch.memory_format,
                 seconds: dict[str, float], backward: bool):
        super().__init__()
        self.layer, self.choice, self.memory_format = layer, choice, memory_format
        self.seconds, self.backward = dict(seconds), backward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.contiguous(memory_format=self.memory_format))

    def speedup_over(self, name: str = "block") -> float:
        """How many times faster the choice ran than candidate ``name`` (>= 1 by construction)."""
        return self.seconds[name] / self.seconds[self.choice]

    def extra_repr(self) -> str:
        return f"choice={self.choice!r}, backward={self.backward}"


def step(layer: nn.Module, x: torch.Tensor, backward: bool):
    """One timed call: ``layer(x)`` under ``torch.no_grad``, or with ``backward`` the gradients of its
    parameters of ``layer(x).sum()`` (the previous ones cleared)."""
    if not backward:
        with torch.no_grad():
            return layer(x)
    for p in layer.parameters():
        p.grad = None
    layer(x).sum().backward()


def fastest_layer(block: nn.Module, x: torch.Tensor, *, backward: bool = False, repeats: int = 5,
                  clock: str = "wall", atol: float | None = None) -> FastPath:
    """Time every exact evaluation of the linear ``block`` on the input ``x`` (batch, P, d_1..d_N) and
    return the fastest as a ``FastPath``.

    Candidates: ``equivalent_layers(block)`` (forward only; with ``backward=True`` just ``block``), each
    contiguous and channels-last (2D, 3D; with ``backward=True`` on the CPU contiguous only, see the module
    docstring: oneDNN's channels-last backward corrupts memory on AVX2 CPUs). Every candidate's output is
    first checked against the block's (``atol`` defaults to 1e-4 of the output's largest magnitude); a
    mismatch is a bug and raises. ``repeats`` rounds of ``kr_lib.perf.compare`` with ``clock`` ("wall", or "cpu" on the CPU).
    Channels-last candidates are deep copies, so ``block`` itself is left as it was. Each candidate is
    timed on an input already in its layout, as in a network converted as a whole
    (``model.to(memory_format=torch.channels_last)`` and its input likewise): ``FastPath.forward``
    converts a differently laid out input, and that copy costs time the timing did not count.
    """
    layers = equivalent_layers(block)
    if backward:
        layers = {"block": layers["block"]}
    candidates = {name: FastPath(layer, name, torch.contiguous_format, {}, backward) for name, layer in layers.items()}
    fmt = channels_last_format(x.dim() - 2)
    if backward and x.device.type == "cpu":
        fmt = None  # oneDNN's channels-last backward corrupts memory on AVX2 CPUs (module docstring)
    if fmt is not None:
        for name, layer in layers.items():
            candidates[f"{name}, channels last"] = FastPath(copy.deepcopy(layer).to(memory_format=fmt),
                                                            f"{name}, channels last", fmt, {}, backward)
    with torch.no_grad():
        reference = candidates["block"](x)
        tol = atol if atol is not None else 1e-4 * float(reference.abs().max().clamp_min(1e-12))
        for name, candidate in candidates.items():
            out = candidate(x)
            if out.shape != reference.shape or not torch.allclose(out, reference, atol=tol, rtol=1e-3):
                raise AssertionError(f"fast path candidate {name!r} differs from the block "
                                     f"(max |diff| {float((out - reference).abs().max()):.3g}); please report this")
    # each candidate gets its input already in its layout, as in a network converted to it as a whole
    inputs = {c.memory_format: x.contiguous(memory_format=c.memory_format) for c in candidates.values()}
    times = perf.compare({name: (lambda c=c: step(c, inputs[c.memory_format], backward)) for name, c in candidates.items()},
                         device=x.device, repeats=repeats, warmup=1, clock=clock)
    seconds = {name: perf.median(t) for name, t in times.items()}
    fastest = candidates[min(seconds, key=seconds.get)]
    fastest.seconds = seconds
    return fastest
