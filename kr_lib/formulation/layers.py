"""Read a linear CNN made of torch modules into the steps of section 1 of the theory.

Accepted models are ``nn.Sequential`` (nested Sequentials allowed) of

* the *trunk*: ``Conv1d/2d/3d``, ``AvgPool1d/2d/3d``, ``AdaptiveAvgPool1d/2d/3d``, ``BatchNorm1d/2d/3d``
  (eval mode, running statistics), ``Identity``, ``Dropout`` (eval mode);
* the *head*: ``Flatten`` then one or more ``Linear`` (``Identity`` / eval ``Dropout`` allowed).

Every trunk module is written as one zero-padded convolution, a :class:`ConvStep`: a convolution is
itself (groups and dilation expanded into a dense kernel), average pooling is a convolution with a
constant kernel ``1/prod(q)`` on the diagonal of the channels, BatchNorm in eval mode is the 1x1
convolution ``diag(gamma / sqrt(var + eps))`` with bias ``beta - mean * gamma / sqrt(var + eps)``.
The last average pooling of the trunk (only BatchNorm may follow it) is not a step: its windows are
the theory's pooling windows ``q``. A BatchNorm after it commutes with it (an average of a per-channel
affine map is that map of the average) and is moved before it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.modules.pooling import _AdaptiveAvgPoolNd, _AvgPoolNd

from ..complexity import conv_output_size
from ..composite import dense_kernel

ACCEPTED = ("Conv1d/2d/3d (zero padding), AvgPool1d/2d/3d and AdaptiveAvgPool1d/2d/3d (whole, non-overlapping "
            "windows), BatchNorm1d/2d/3d in eval mode, Identity, Dropout in eval mode, then Flatten and Linear, "
            "inside nn.Sequential (nesting allowed)")

_BN_MODES = {nn.BatchNorm1d: 1, nn.BatchNorm2d: 2, nn.BatchNorm3d: 3}


@dataclass(frozen=True, eq=False)
class ConvStep:
    """One trunk module as a zero-padded convolution.

    ``weight`` (K_out, K_in, l_1..l_N), dense; ``bias`` (K_out,); ``stride`` s; ``pad_left``/``pad_right``
    the zeros added before / after each spatial mode. ``path`` and ``kind`` name the module it came from.
    """

    path: str
    kind: str
    weight: torch.Tensor
    bias: torch.Tensor
    stride: tuple[int, ...]
    pad_left: tuple[int, ...]
    pad_right: tuple[int, ...]

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return tuple(self.weight.shape[2:])

    @property
    def is_padded(self) -> bool:
        return any(self.pad_left) or any(self.pad_right)


@dataclass(frozen=True, eq=False)
class LinearCNN:
    """A linear CNN as the theory writes it.

    ``steps``: the trunk, convolutions applied in order to the input (P, d_1..d_N);
    ``conv_size``: m, the trunk's output size per mode; ``window``: q, the final pooling windows
    (all 1 when there is no final pooling); ``pooled_size``: p = floor(m / q);
    ``fc_weight`` (O, K, p_1..p_N) and ``fc_bias`` (O,): the fully connected layer(s), composed.
    """

    input_shape: tuple[int, ...]
    steps: tuple[ConvStep, ...]
    conv_size: tuple[int, ...]
    window: tuple[int, ...]
    pooled_size: tuple[int, ...]
    fc_weight: torch.Tensor
    fc_bias: torch.Tensor


def _leaves(module: nn.Module, prefix: str = ""):
    """(path, module) of the leaves of nested ``nn.Sequential``; any other container is refused."""
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.Sequential):
            yield from _leaves(child, path)
        elif any(True for _ in child.children()):
            raise TypeError(
                f"module {path!r} ({type(child).__name__}) has its own forward(), which from_cnn cannot read; "
                f"write the model as nn.Sequential of: {ACCEPTED}")
        else:
            yield path, child


def _tuple(value, n: int, what: str, path: str) -> tuple[int, ...]:
    out = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(out) != n:
        raise ValueError(f"module {path!r}: {what} {value!r} has {len(out)} entries for a {n}-mode input")
    return tuple(int(v) for v in out)


def _modes_of(module: nn.Module) -> int | None:
    """The number of spatial modes a module is written for (None when it works for any)."""
    if isinstance(module, _ConvNd):
        return len(module.kernel_size)
    for cls, n in _BN_MODES.items():
        if type(module) is cls:
            return n
    if isinstance(module, (_AvgPoolNd, _AdaptiveAvgPoolNd)):
        return int(type(module).__name__[-2])  # AvgPool2d -> 2, AdaptiveAvgPool3d -> 3
    return None


def _refuse_nonlinear(path: str, module: nn.Module) -> None:
    """TypeError for modules that are not linear maps of the input (or not readable as such)."""
    name = type(module).__name__
    if isinstance(module, _BatchNorm):
        if module.training:
            raise TypeError(f"module {path!r} ({name}) is in training mode, where it normalizes with batch "
                            "statistics and is not a fixed linear map; call model.eval() first")
        if module.running_mean is None:
            raise TypeError(f"module {path!r} ({name}) has track_running_stats=False and always uses batch "
                            "statistics, so it is not a fixed linear map; accepted: BatchNorm with running stats")
        return
    if isinstance(module, _DropoutNd):
        if module.training and module.p > 0:
            raise TypeError(f"module {path!r} ({name}) is in training mode, where it drops inputs at random and "
                            "is not linear; call model.eval() first")
        return
    if isinstance(module, _ConvNd) and module.transposed:
        raise TypeError(f"module {path!r} ({name}) is a transposed convolution; accepted: {ACCEPTED}")
    if not isinstance(module, (_ConvNd, _AvgPoolNd, _AdaptiveAvgPoolNd, nn.Identity, nn.Flatten, nn.Linear)):
        raise TypeError(f"module {path!r} ({name}) is not one of the linear layers from_cnn reads "
                        f"(activations, max pooling and the like are not linear); accepted: {ACCEPTED}")


def _conv_step(path: str, conv: _ConvNd, channels: int, n: int) -> ConvStep:
    """A Conv module as a dense, undilated kernel with explicit left/right zero padding."""
    if conv.in_channels != channels:
        raise ValueError(f"module {path!r} ({type(conv).__name__}) expects in_channels={conv.in_channels} "
                         f"but receives {channels} channels; accepted: input_shape / previous layers with "
                         f"{conv.in_channels} channels")
    if conv.padding_mode != "zeros":
        raise ValueError(f"module {path!r} ({type(conv).__name__}) pads with padding_mode={conv.padding_mode!r}; "
                         "accepted: padding_mode='zeros'")
    # a dilated kernel is a larger kernel with zeros between the taps; a grouped one is block diagonal
    weight = dense_kernel(conv.weight.detach(), conv.groups, conv.dilation)
    if isinstance(conv.padding, str):  # 'valid' or 'same' (torch puts the odd zero on the right)
        total = [0] * n if conv.padding == "valid" else [k - 1 for k in weight.shape[2:]]
        left = tuple(t // 2 for t in total)
        right = tuple(t - t // 2 for t in total)
    else:
        left = right = tuple(conv.padding)
    bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(conv.out_channels)
    return ConvStep(path, type(conv).__name__, weight, bias, tuple(conv.stride), left, right)


def _pool_step(path: str, pool: nn.Module, channels: int, size: tuple[int, ...], like: torch.Tensor) -> ConvStep:
    """An average pooling with whole, non-overlapping windows as a conv with a constant diagonal kernel."""
    n, name = len(size), type(pool).__name__
    if isinstance(pool, _AdaptiveAvgPoolNd):
        out = _tuple(pool.output_size, n, "output_size", path)
        out = tuple(d if o is None else o for o, d in zip(out, size))
        if any(d % o for d, o in zip(size, out)):
            raise ValueError(f"module {path!r} ({name}) maps size {size} to {out}, which does not divide it, so "
                             "its windows overlap or differ in size; accepted: output sizes that divide the "
                             "input size (whole windows), e.g. 1 (global average pooling)")
        q, pad, divisor = tuple(d // o for d, o in zip(size, out)), (0,) * n, None
    else:
        q = _tuple(pool.kernel_size, n, "kernel_size", path)
        stride = _tuple(pool.stride if pool.stride is not None else pool.kernel_size, n, "stride", path)
        pad = _tuple(pool.padding, n, "padding", path)
        if stride != q:
            raise ValueError(f"module {path!r} ({name}) has kernel_size={q} and stride={stride}: its windows "
                             "overlap or leave gaps; accepted: stride == kernel_size (non-overlapping pooling "
                             "windows q); write an overlapping average as a Conv with a constant kernel")
        if pool.ceil_mode:
            raise ValueError(f"module {path!r} ({name}) has ceil_mode=True, which makes partial windows; "
                             "accepted: ceil_mode=False")
        if any(pad) and not getattr(pool, "count_include_pad", True):
            raise ValueError(f"module {path!r} ({name}) pads with count_include_pad=False, so its windows are not "
                             "all averaged alike; accepted: padding=0 or count_include_pad=True")
        divisor = getattr(pool, "divisor_override", None)
    value = 1.0 / (divisor or math.prod(q))
    eye = torch.eye(channels, dtype=like.dtype, device=like.device).reshape(channels, channels, *(1,) * n)
    weight = eye * torch.full(q, value, dtype=like.dtype, device=like.device)
    return ConvStep(path, name, weight, like.new_zeros(channels), q, pad, pad)


def _batchnorm_step(path: str, bn: _BatchNorm, channels: int, n: int) -> ConvStep:
    """BatchNorm in eval mode as the 1x1 convolution diag(gamma / sqrt(var + eps)) with its shift as bias."""
    if bn.num_features != channels:
        raise ValueError(f"module {path!r} ({type(bn).__name__}) has num_features={bn.num_features} but receives "
                         f"{channels} channels; accepted: num_features == {channels}")
    scale = torch.rsqrt(bn.running_var.detach() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean.detach() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    weight = torch.diag(scale).reshape(channels, channels, *(1,) * n)
    return ConvStep(path, type(bn).__name__, weight, shift, (1,) * n, (0,) * n, (0,) * n)


def check_input_shape(input_shape) -> tuple[int, ...]:
    """``input_shape`` as a tuple (P, d_1..d_N) of positive ints with N in 1..3, else ValueError."""
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be a sequence of ints (P, d_1..d_N), got {input_shape!r}") from None
    if not 2 <= len(shape) <= 4 or min(shape) < 1 or any(v != w for v, w in zip(shape, input_shape)):
        raise ValueError(f"input_shape must be (P, d_1..d_N) without the batch, N = 1, 2 or 3 positive sizes, "
                         f"got {input_shape!r}")
    return shape


def read_linear_cnn(model: nn.Module, input_shape) -> LinearCNN:
    """Check ``model`` and write it as :class:`LinearCNN` for inputs of shape ``input_shape`` = (P, d_1..d_N).

    Raises TypeError naming the module (path and class) for a module that is not linear, ValueError naming
    the culprit for settings and shapes that the theory's form does not cover.
    """
    shape = check_input_shape(input_shape)
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential, got {type(model).__name__}; accepted: {ACCEPTED}")
    params = list(model.parameters())
    if not params:
        raise ValueError("model has no parameters; it needs at least a Linear layer after Flatten")
    like = params[0].detach()
    channels, size, n = shape[0], shape[1:], len(shape) - 1

    steps: list[tuple[ConvStep, tuple[int, ...]]] = []  # each step with the size it receives
    flatten_path, linears = None, []
    for path, module in _leaves(model):
        _refuse_nonlinear(path, module)
        if isinstance(module, (nn.Identity, _DropoutNd)):
            continue
        modes = _modes_of(module)
        if modes is not None and modes != n:
            raise ValueError(f"module {path!r} ({type(module).__name__}) is written for {modes} spatial mode(s) "
                             f"but input_shape {shape} has {n}; accepted: input_shape (P, d_1..d_{modes})")
        if flatten_path is not None:
            if not isinstance(module, nn.Linear):
                raise ValueError(f"module {path!r} ({type(module).__name__}) comes after Flatten "
                                 f"({flatten_path!r}); accepted there: Linear, Identity, Dropout (eval)")
            in_features = linears[-1].out_features if linears else channels * math.prod(size)
            if module.in_features != in_features:
                raise ValueError(f"module {path!r} (Linear) expects in_features={module.in_features} but receives "
                                 f"{in_features} features; accepted: in_features == {in_features}, or an input_shape "
                                 f"that gives {module.in_features} features")
            linears.append(module)
            continue
        if isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise ValueError(f"module {path!r} (Flatten) has start_dim={module.start_dim}, "
                                 f"end_dim={module.end_dim}; accepted: Flatten() (start_dim=1, end_dim=-1)")
            flatten_path = path
            continue
        if isinstance(module, nn.Linear):
            raise ValueError(f"module {path!r} (Linear) comes before Flatten and would act on the last mode only; "
                             "accepted: Flatten, then Linear")
        if isinstance(module, _ConvNd):
            step = _conv_step(path, module, channels, n)
        elif isinstance(module, _BatchNorm):
            step = _batchnorm_step(path, module, channels, n)
        else:
            step = _pool_step(path, module, channels, size, like)
        steps.append((step, size))
        padded = [d + a + b for d, a, b in zip(size, step.pad_left, step.pad_right)]
        if any(d < k for d, k in zip(padded, step.kernel_size)):
            raise ValueError(f"module {path!r} ({step.kind}) receives spatial size {size} (padded: {tuple(padded)}), "
                             f"smaller than its kernel {step.kernel_size}; accepted: a larger input_shape")
        size = conv_output_size(padded, step.kernel_size, step.stride)
        channels = step.weight.shape[0]
    if flatten_path is None or not linears:
        raise ValueError("model must end with Flatten and Linear (the fully connected layer of the theory); "
                         f"found {'no Flatten' if flatten_path is None else 'no Linear after Flatten'}")

    # the final pooling: the last pooling step, with only BatchNorm after it (moved before it: they commute)
    final = len(steps)
    while final > 0 and steps[final - 1][0].kind.startswith("BatchNorm"):
        final -= 1
    window, conv_size = (1,) * n, size
    trunk = [s for s, _ in steps]
    if final > 0 and "Pool" in steps[final - 1][0].kind:
        pool, conv_size = steps[final - 1]
        if pool.is_padded:
            raise ValueError(f"module {pool.path!r} ({pool.kind}) is the final pooling and pads its input, so its "
                             "border windows are not whole; accepted: padding=0 for the pooling before Flatten")
        value = pool.weight[(0, 0) + (0,) * n].item()
        if not math.isclose(value * math.prod(pool.kernel_size), 1.0, rel_tol=1e-6):
            raise ValueError(f"module {pool.path!r} ({pool.kind}) is the final pooling and has divisor_override; "
                             "accepted: the plain average (divisor_override=None)")
        window = pool.stride
        trunk = trunk[:final - 1] + trunk[final:]
    pooled = tuple(m // q for m, q in zip(conv_size, window))

    fc_weight, fc_bias = linears[0].weight.detach(), linears[0].bias
    fc_bias = fc_bias.detach() if fc_bias is not None else fc_weight.new_zeros(fc_weight.shape[0])
    for lin in linears[1:]:  # Linear after Linear is one Linear
        fc_bias = lin.weight.detach() @ fc_bias + (lin.bias.detach() if lin.bias is not None else 0)
        fc_weight = lin.weight.detach() @ fc_weight
    fc_weight = fc_weight.reshape(fc_weight.shape[0], channels, *pooled)
    return LinearCNN(shape, tuple(trunk), conv_size, window, pooled, fc_weight, fc_bias)
