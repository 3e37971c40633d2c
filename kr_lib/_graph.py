"""Tracing a forward pass into its autograd graph: the part of ``kr_lib.redundancy`` that reads PyTorch internals.

Everything the K/R report learns about a network's data flow comes from one forward pass traced here, and
this module is the only one that depends on how PyTorch exposes it, so that an upgrade that changes any
of it breaks here and nowhere else:

* forward pre- and post-hooks on every module (``register_forward_pre_hook`` / ``register_forward_hook``)
  give each module's first call, its input and output tensors, and the execution order of the convs;
* the autograd graph of the pass: a tensor's ``grad_fn`` node, its ``next_functions`` (the nodes it was
  computed from; parameters enter as ``AccumulateGrad`` leaves) and the class names of the nodes of
  global poolings (``POOL_NODES``), which mark the input of a squeeze-excitation gate;
* ``torch.autograd.graph.saved_tensors_hooks``, which drops every tensor autograd would save for a
  backward pass (only the graph's structure is read, so the trace holds no activations);
* ``torch.utils.flop_counter.FlopCounterMode``'s per-module counts, keyed ``"<root class>.<module path>"``;
* ``nn.Module._modules`` (a module with children, registered ``None`` children included).

:func:`trace_forward` runs the pass and returns a :class:`Trace`; :func:`longest_chain` and
:func:`has_bypass` walk its graph. What the walks mean (chains, shortcuts, blocks) is defined in
``kr_lib.redundancy``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

#: autograd node names of the global poolings that feed a squeeze-excitation gate
POOL_NODES = ("AdaptiveAvgPool", "AdaptiveMaxPool", "AvgPool", "MeanBackward", "AmaxBackward")


def is_conv(module: nn.Module) -> bool:
    """True for ``nn.Conv1d/2d/3d`` (and other ``_ConvNd`` subclasses), not for transposed convolutions."""
    return isinstance(module, nn.modules.conv._ConvNd) and not module.transposed


@dataclass
class ConvCall:
    """One call of a convolution in the traced forward pass.

    ``in_shape``/``out_shape`` are the (batch, channels, d_1..d_N) shapes of that call; ``gate`` marks
    a squeeze-excitation conv (see ``kr_lib.redundancy``).
    """

    path: str
    module: nn.Module
    index: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    gate: bool = False

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(self.module.kernel_size)

    @property
    def pointwise(self) -> bool:
        return all(k == 1 for k in self.kernel)

    @property
    def support(self) -> frozenset[int]:
        """The spatial modes along which the kernel extends (size > 1)."""
        return frozenset(j for j, k in enumerate(self.kernel) if k > 1)

    @property
    def depthwise(self) -> bool:
        return self.module.groups > 1 and self.module.groups == self.module.in_channels

    @property
    def grouped(self) -> bool:
        return 1 < self.module.groups < self.module.in_channels


@dataclass
class ModuleCall:
    """The first call of a module in the traced pass: the autograd nodes of its inputs and of its output."""

    module: nn.Module
    in_nodes: list
    out_node: object = None
    done: bool = False
    in_shape: tuple = ()
    gate: bool = False


@dataclass
class Trace:
    """What one traced forward pass leaves: its convolution calls, the modules' first calls, FLOPs per module."""

    convs: list[ConvCall]
    node_conv: dict  # id(autograd node of a conv output) -> ConvCall
    calls: dict      # module path -> ModuleCall (first call only)
    flops: dict      # module path -> FLOPs
    total_flops: int
    keep: list       # autograd nodes kept alive so that node ids stay unique (no tensors: no memory held)


def tensors(obj) -> list[torch.Tensor]:
    """The tensors in ``obj`` (a tensor, or lists, tuples and dicts of them), in order."""
    if torch.is_tensor(obj):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in tensors(o)]
    return []


def data_inputs(node) -> list:
    """The autograd nodes feeding ``node``, without parameter leaves (AccumulateGrad)."""
    return [n for n, _ in node.next_functions if n is not None and type(n).__name__ != "AccumulateGrad"]


def is_gate(x: torch.Tensor, node_conv: dict, max_steps: int = 8) -> bool:
    """True when ``x`` (a conv input) is a 1 x 1 map that single-input ops derive from a global pooling or a gate."""
    if math.prod(x.shape[2:]) != 1:
        return False
    node = x.grad_fn
    for _ in range(max_steps):
        if node is None:
            return False
        if id(node) in node_conv:
            return node_conv[id(node)].gate
        if any(p in type(node).__name__ for p in POOL_NODES):
            return True
        inputs = data_inputs(node)
        if len(inputs) != 1:
            return False
        node = inputs[0]
    return False


def _drop(tensor):
    return None


def _never(_):
    raise RuntimeError("kr_lib.redundancy traces a forward pass only; its autograd graph cannot be back-propagated")


def trace_forward(model: nn.Module, example_input) -> Trace:
    """One forward pass with hooks on every module, under FlopCounterMode, with autograd on."""
    names: dict[nn.Module, str] = {}
    for name, mod in model.named_modules():
        names.setdefault(mod, name)
    convs: list[ConvCall] = []
    node_conv: dict = {}
    calls: dict[str, ModuleCall] = {}
    keep: list = []

    def pre_hook(mod, args):
        name = names.get(mod)
        if name is None or name in calls:
            return
        ts = tensors(args)
        calls[name] = ModuleCall(mod, [t.grad_fn for t in ts if t.grad_fn is not None])
        keep.extend(calls[name].in_nodes)
        if is_conv(mod) and ts:
            calls[name].gate = is_gate(ts[0], node_conv)  # stash until the output exists
            calls[name].in_shape = tuple(ts[0].shape)

    def post_hook(mod, args, out):
        name = names.get(mod)
        call = calls.get(name)
        if call is None or call.done:
            if is_conv(mod) and torch.is_tensor(out) and out.grad_fn is not None and call is not None:
                # a conv called again (weight sharing): still a conv on the graph
                conv = ConvCall(name, mod, len(convs), tuple(args[0].shape), tuple(out.shape),
                                is_gate(args[0], node_conv))
                convs.append(conv)
                node_conv[id(out.grad_fn)] = conv
                keep.append(out.grad_fn)
            return
        call.done = True
        outs = tensors(out)
        if outs and outs[0].grad_fn is not None:
            call.out_node = outs[0].grad_fn
            keep.append(call.out_node)
        if is_conv(mod) and call.out_node is not None:
            conv = ConvCall(name, mod, len(convs), call.in_shape, tuple(outs[0].shape), call.gate)
            convs.append(conv)
            node_conv[id(call.out_node)] = conv

    args = example_input if isinstance(example_input, tuple) else (example_input,)
    # a non-leaf copy of the input, so that the root module's input is a node of the graph
    args = tuple(a.detach().requires_grad_(True) * 1 if torch.is_tensor(a) and a.is_floating_point() else a
                 for a in args)
    handles = []
    for mod in names:
        handles.append(mod.register_forward_pre_hook(pre_hook))
        handles.append(mod.register_forward_hook(post_hook))
    was_training = {m: m.training for m in model.modules()}
    model.eval()  # BatchNorm must not update its running statistics, dropout off
    counter = FlopCounterMode(display=False)
    try:
        # the graph's structure is all that is read: drop the tensors autograd would save for a backward pass
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_drop, _never), counter:
            out = model(*args)
    finally:
        for h in handles:
            h.remove()
        for m, t in was_training.items():
            m.training = t
    keep.extend(t.grad_fn for t in tensors(out))
    del out
    root = type(model).__name__
    flops = {}
    for key, per_op in counter.get_flop_counts().items():
        if key == "Global":
            continue
        path = "" if key == root else key[len(root) + 1:] if key.startswith(root + ".") else None
        if path is not None:
            flops[path] = int(sum(per_op.values()))
    return Trace(convs, node_conv, calls, flops, int(counter.get_total_flops()), keep)


def longest_chain(call: ModuleCall, node_conv: dict) -> list[ConvCall]:
    """Longest path of non-gate convolutions in the autograd graph from ``call``'s inputs to its output.

    Ties (same number of convs, e.g. a single 3x3 conv next to a 1x1 shortcut conv) go to the path
    with the larger kernels, then to the one that ran last.
    """
    if call.out_node is None:
        return []
    inputs = {id(n) for n in call.in_nodes}
    memo: dict[int, tuple | None] = {}
    stack = [(call.out_node, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if key in memo:
            continue
        if key in inputs:
            memo[key] = (0, 0, -1, ())
            continue
        children = [n for n, _ in node.next_functions if n is not None]
        if not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in memo)
            continue
        best = None
        for c in children:
            r = memo.get(id(c))
            if r is not None and (best is None or r[:3] > best[:3]):
                best = r
        conv = node_conv.get(key)
        if best is not None and conv is not None and not conv.gate:
            best = (best[0] + 1, best[1] + math.prod(conv.kernel), conv.index, best[3] + (conv,))
        memo[key] = best
    result = memo.get(id(call.out_node))
    return list(result[3]) if result else []


def has_bypass(call: ModuleCall, chain: list[ConvCall], node_conv: dict) -> bool:
    """True when some path from ``call``'s inputs to its output avoids every conv of ``chain`` (a shortcut)."""
    if call.out_node is None:
        return False
    inputs = {id(n) for n in call.in_nodes}
    on_chain = {id(c) for c in chain}
    seen, stack = set(), [call.out_node]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if id(node) in inputs:
            return True
        conv = node_conv.get(id(node))
        if conv is not None and id(conv) in on_chain:
            continue
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return False


def has_submodules(module: nn.Module) -> bool:
    """True when ``module`` registered children (``None`` ones included: a slot of the architecture)."""
    return bool(len(module._modules))
