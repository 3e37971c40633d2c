"""The K/R ratio of a block and the K/R report of a network (book section 4, :ref:`sec-kr`).

A block whose K output channels come from a pointwise projection of R channels (the K x R output
factor of the block's composite kernel) has the K/R ratio K / R. With linear activations its K
outputs span at most R directions, so K/R > 1 measures output-side redundancy; K/R <= 1 means the
output channels are themselves the bottleneck.

Blocks are found by **structure**, not by class name, from one forward pass of the network on an
example input (forward hooks give the execution order and the shapes; the autograd graph of that
pass gives the data flow):

1. **Convolutions.** Every ``nn.Conv1d/2d/3d`` call is recorded. A convolution is a *gate* (the
   1x1 convs of a squeeze-excitation) when its input has spatial size 1 and comes, through
   single-input ops, from a global pooling op (adaptive / average pooling or a mean) or from another
   gate. Gates are never counted on a chain: they act on a pooled 1 x 1 map and only rescale channels.
2. **Chain of a module.** For every module called in the forward pass, its *chain* is the longest
   path of (non-gate) convolutions in the autograd graph from the module's input to its output.
   The shortcut of a residual block (identity or a 1x1 ``downsample``) is the shorter path (at equal
   length, the one with smaller kernels) and is not on the chain. Consecutive convolutions with
   kernels that extend over disjoint spatial modes (the (1, 3, 3) then (3, 1, 1) of a (2+1)D conv,
   the per-mode depthwise convs of a CP block) form one *factored unit*: one factored convolution.
3. **Blocks and stages.** A module is a *block* when its chain has at least two units, or one unit
   and a shortcut (a path from its input to its output that avoids the chain: a residual single
   conv), and the units sit in children that are not blocks themselves (single convs,
   conv-norm-activation wrappers, factored convs). It is a *stage* when its chain passes through a
   stage, through two or more blocks, or through a block and other convolutions. A module whose
   whole chain lies in a single block child is a *wrapper*: it takes that block's place when it adds
   to the child's output (a residual sum, a channel shuffle) or when the child is a bare
   ``nn.Sequential``; otherwise (a ``Sequential`` holding one block) the child keeps its place.
   Blocks are the outermost such modules; everything inside a block belongs to it (its shortcut, its
   squeeze-excitation, a second branch), and modules outside any block (stem, head, classifier) are
   the *rest of the network*. A network without residual structure (VGG) shows its whole
   convolutional trunk as one ``dense`` block.
4. **K and R.** The *closing* convolution is the last one on the chain, P is the input channels of
   the first one. K is the closing convolution's output channels. If it is pointwise (kernel 1 in
   every mode) it is a K x R output factor with R = its input channels (a grouped 1 x 1 is a
   block-diagonal K x R factor, still R = its input channels); otherwise (or when the block is that
   one pointwise conv) the block has no output factor and R = K (a plain dense block such as
   ResNet's basic block: K/R = 1).
5. **Design**, from the chain's kinds of convolution (names as in ``kr_lib.complexity.DESIGNS``):
   a (1, l, l) + (l, 1, 1) factored unit -> ``r2plus1d``; per-mode depthwise units or a depthwise
   conv without an opening pointwise conv -> ``separable``; pointwise + depthwise (+ pointwise) ->
   ``inverted_residual``; a grouped conv (1 < groups < channels) -> ``resnext``; pointwise + dense +
   pointwise -> ``bottleneck``; dense spatial convs only -> ``dense``; otherwise ``other``.

Degrees of freedom of a block (the ``df`` column). With identity activations and BatchNorm folded
(book section 1, :ref:`sec-regression`), the chain is one convolution with a *composite kernel* of shape
``(K, P, l_1..l_N)`` (``l_j = l_1 + s_1 (l_2 - 1) + ...``, the chain's receptive field). Its Tucker
ranks are at most ``(min(R, K), min(R_in, P), l_1..l_N)`` where R_in is the output channels of an
opening pointwise conv (P when the chain does not open with one), so

    df = min( tucker_dof((K, P, l..), (min(R, K), min(R_in, P), l..)),  weights of the chain convs )

-- the dimension of the set of composite kernels the block can reach is at most both (the second
bound: the image of a polynomial map has dimension at most its number of parameters). The shortcut
is not part of it. The ``naive count`` is the block's parameter count (all of its parameters: chain,
shortcut, BatchNorm, squeeze-excitation). In this block-level df the output factor still costs
``R (K - R)``; it disappears only when what follows the block is linear (book section 3, :ref:`sec-df`).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` in the same forward pass, with
PyTorch's convention: 2 FLOPs per multiply-accumulate of convolutions and matrix products (fvcore
counts 1 per multiply-accumulate); BatchNorm, activations and pooling count 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from kr_lib._graph import ConvCall, Trace, has_bypass, has_submodules, is_conv, longest_chain, trace_forward
from kr_lib.complexity import naive_count, tucker_dof
from kr_lib.composite import ConvGeometry, chain_geometry, dilated_size

__all__ = ["ConvCall", "BlockInfo", "find_blocks", "kr_ratio", "kr_report", "kr_summary", "REPORT_COLUMNS", "default_input_shape"]

#: Columns of ``kr_report``, in order.
REPORT_COLUMNS = ["block", "design", "K", "R", "K/R", "parameters", "FLOPs", "df", "naive count",
                  "P", "R_in", "closing conv", "type"]


@dataclass
class BlockInfo:
    """What the report says about one block: see the module docstring for the definitions.

    ``chain``: the convolutions from the block's input to its output, the last one closing the block;
    ``composite_kernel``: (l_1..l_N) of the chain as one convolution; ``parameters``: the block's
    parameter count (the naive count); ``flops``: FLOPs of the block in the traced forward pass.
    """

    path: str
    module: nn.Module
    design: str
    P: int
    R_in: int
    R: int
    K: int
    composite_kernel: tuple[int, ...]
    chain: list[ConvCall] = field(repr=False)
    parameters: int = 0
    flops: int = 0
    df: int = 0

    @property
    def kr_ratio(self) -> float:
        return self.K / self.R


def _units(chain: list[ConvCall]) -> list[list[ConvCall]]:
    """Group consecutive convs whose kernels extend over disjoint spatial modes (one factored conv)."""
    units: list[list[ConvCall]] = []
    support: frozenset[int] = frozenset()
    for conv in chain:
        s = conv.support
        if units and s and support and not (s & support) and not units[-1][-1].pointwise:
            units[-1].append(conv)
            support = support | s
        else:
            units.append([conv])
            support = s
    return units


def _child_of(parent: str, path: str) -> str:
    """The child of module ``parent`` on the way to module ``path`` (a descendant of it)."""
    rest = path[len(parent) + 1:] if parent else path
    head = rest.split(".", 1)[0]
    return f"{parent}.{head}" if parent else head


def _design(chain: list[ConvCall], units: list[list[ConvCall]]) -> str:
    first, last = chain[0], chain[-1]
    for unit in units:
        if len(unit) > 1:
            if any(c.depthwise for c in unit):
                return "separable"
            if len(unit[0].kernel) == 3 and [c.support for c in unit] == [frozenset({1, 2}), frozenset({0})]:
                return "r2plus1d"
            return "other"
    spatial = [c for c in chain if not c.pointwise]
    opens_pointwise = first.pointwise and first.module.groups == 1 and len(chain) > 1
    if any(c.depthwise for c in spatial):
        return "inverted_residual" if opens_pointwise else "separable"
    if any(c.grouped for c in spatial):
        return "resnext"
    if spatial and all(c.module.groups == 1 for c in chain):
        if last.pointwise:
            return "bottleneck"
        if all(not c.pointwise for c in chain):
            return "dense"
    return "other"


def _composite_kernel(chain: list[ConvCall]) -> tuple[int, ...]:
    """Receptive field of the chain: ``l = l_1 + s_1 (l_2 - 1) + s_1 s_2 (l_3 - 1) + ...`` per mode (dilation included)."""
    return chain_geometry(ConvGeometry(dilated_size(c.module.kernel_size, c.module.dilation), tuple(c.module.stride))
                          for c in chain).kernel_size


def _block_info(path: str, module: nn.Module, chain: list[ConvCall], units, trace: Trace) -> BlockInfo:
    first, last = chain[0], chain[-1]
    P = first.module.in_channels
    K = last.module.out_channels
    R = last.module.in_channels if last.pointwise and len(chain) > 1 else K
    R_in = first.module.out_channels if first.pointwise and first.module.groups == 1 and len(chain) > 1 else P
    l = _composite_kernel(chain)
    weights = sum(c.module.weight.numel() for c in {id(c.module): c for c in chain}.values())
    df = min(tucker_dof((K, P, *l), (min(R, K), min(R_in, P), *l)), weights)
    return BlockInfo(path, module, _design(chain, units), P, R_in, R, K, l, chain,
                     parameters=naive_count(module), flops=trace.flops.get(path, 0), df=int(df))


def _classify(trace: Trace):
    """Kind ('none', 'block', 'stage') and representative of every called module, bottom-up."""
    chains = {p: longest_chain(c, trace.node_conv) for p, c in trace.calls.items() if has_submodules(c.module)}
    units = {p: _units(ch) for p, ch in chains.items()}
    kind: dict[str, str] = {}
    rep: dict[str, str] = {}

    def visit(path: str) -> str:
        if path in kind:
            return kind[path]
        n_units = len(units.get(path, ()))
        if n_units < 1 or (n_units == 1 and not has_bypass(trace.calls[path], chains[path], trace.node_conv)):
            kind[path] = "none"
            return "none"
        children = list(dict.fromkeys(_child_of(path, c.path) for c in chains[path]))
        kinds = [visit(c) if c != path else "none" for c in children]
        nblocks = kinds.count("block")
        if "stage" in kinds or nblocks >= 2 or (nblocks == 1 and len(children) > 1):
            kind[path] = "stage"
        elif nblocks == 1:
            child = children[0]
            inner = rep[child]
            adds = trace.calls[path].out_node is not trace.calls[child].out_node
            bare = type(trace.calls[inner].module) is nn.Sequential and type(trace.calls[path].module) is not nn.Sequential
            kind[path] = "block"
            rep[path] = path if adds or bare else inner
        else:
            kind[path] = "block"
            rep[path] = path
        return kind[path]

    # deepest first, so that recursion stays shallow
    for path in sorted(units, key=lambda p: -p.count(".") if p else 1):
        visit(path)
    return kind, rep, chains, units


def find_blocks(model: nn.Module, example_input) -> list[BlockInfo]:
    """Trace ``model`` on ``example_input`` and return its blocks in forward order (see the module docstring).

    ``example_input``: a tensor (batch, channels, d_1..d_N) or a tuple of forward arguments, on the
    model's device (``meta`` tensors work: only shapes and the autograd graph are read). The model is
    run once in eval mode with autograd on; its training flags are restored and nothing is kept.
    """
    return _analyse(model, example_input)[0]


def _analyse(model: nn.Module, example_input) -> tuple[list[BlockInfo], Trace]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    trace = trace_forward(model, example_input)
    kind, rep, chains, units = _classify(trace)
    found: list[str] = []

    def collect(path: str, module: nn.Module):
        k = kind.get(path, "none")
        if k == "block":
            found.append(rep[path])
            return
        for name, child in module.named_children():
            collect(f"{path}.{name}" if path else name, child)

    collect("", model)
    blocks = []
    for path in dict.fromkeys(found):
        chain = chains[path]
        blocks.append(_block_info(path, trace.calls[path].module, chain, units[path], trace))
    blocks.sort(key=lambda b: b.chain[0].index)
    return blocks, trace


def default_input_shape(model: nn.Module) -> tuple[int, ...]:
    """(channels, d_1..d_N) for a model, from its first convolution: channels x 224 x 224 for 2D,
    channels x 16 x 112 x 112 for 3D (video), channels x 224 for 1D."""
    for m in model.modules():
        if is_conv(m):
            spatial = {1: (224,), 2: (224, 224), 3: (16, 112, 112)}[len(m.kernel_size)]
            return (m.in_channels, *spatial)
    raise ValueError(f"{type(model).__name__} has no convolution; give the input shape explicitly")


def kr_ratio(block: nn.Module, example_input=None) -> float:
    """K/R of one block: ``block.kr_ratio`` when it has one (``kr_lib.blocks``), else found by structure.

    ``example_input`` defaults to a batch of one random map (channels of the first conv, 32 per spatial
    mode; 8 x 32 x 32 for 3D) on the block's device. Raises ValueError when ``block`` holds no block
    or several (use ``kr_report`` for a network).
    """
    if not isinstance(block, nn.Module):
        raise TypeError(f"kr_ratio expects an nn.Module, got {type(block).__name__}")
    if hasattr(block, "kr_ratio"):
        return float(block.kr_ratio)
    if example_input is None:
        first = next((m for m in block.modules() if is_conv(m)), None)
        if first is None:
            raise ValueError(f"{type(block).__name__} has no convolution, so it is not a block")
        param = next(block.parameters())
        spatial = {1: (32,), 2: (32, 32), 3: (8, 32, 32)}[len(first.kernel_size)]
        example_input = torch.randn(1, first.in_channels, *spatial, device=param.device, dtype=param.dtype)
    blocks = find_blocks(block, example_input)
    if len(blocks) != 1:
        raise ValueError(f"{type(block).__name__} holds {len(blocks)} blocks ({', '.join(b.path or '<root>' for b in blocks) or 'none'}); "
                         "kr_ratio needs exactly one -- use kr_report(model, example_input) for a network")
    return blocks[0].kr_ratio


def kr_report(model: nn.Module, example_input) -> pd.DataFrame:
    """The K/R report of a network: one row per block (columns ``REPORT_COLUMNS``), aggregates in ``.attrs``.

    ``example_input``: a tensor (batch, channels, d_1..d_N) or tuple of forward arguments on the model's
    device; FLOPs are those of that batch. Row columns: ``block`` (module path), ``design``, ``K``,
    ``R``, ``K/R``, ``parameters`` (= ``naive count``, the block's parameter count), ``FLOPs``, ``df``
    (the block's composite-kernel df, module docstring), ``P``, ``R_in``, ``closing conv`` (its path)
    and ``type`` (the block's class). ``df.attrs`` holds ``kr_summary``'s aggregates.
    """
    blocks, trace = _analyse(model, example_input)
    rows = [{"block": b.path, "design": b.design, "K": b.K, "R": b.R, "K/R": b.kr_ratio,
             "parameters": b.parameters, "FLOPs": b.flops, "df": b.df, "naive count": b.parameters,
             "P": b.P, "R_in": b.R_in, "closing conv": b.chain[-1].path, "type": type(b.module).__name__}
            for b in blocks]
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    report.attrs.update(model=type(model).__name__, total_parameters=naive_count(model),
                        total_flops=trace.total_flops)
    report.attrs.update(kr_summary(report))
    return report


def kr_summary(report: pd.DataFrame, total_parameters: int | None = None) -> dict:
    """Network aggregates of a ``kr_report`` table.

    * ``total_parameters``: all parameters of the network (blocks + the rest: stem, head, classifier);
      from ``report.attrs`` unless given;
    * ``block_parameters``, ``rest_parameters`` (= total - block), ``blocks`` (number of rows);
    * ``weighted_kr``: parameter-weighted mean K/R over the blocks, ``sum_b params_b K_b/R_b / sum_b params_b``;
    * ``max_kr``: the largest K/R; ``share_kr_gt_1``: the fraction of *all* network parameters that
      sit in blocks with K/R > 1;
    * ``total_flops``, ``block_flops``: FLOPs of the forward pass (2 per multiply-accumulate).
    """
    if not isinstance(report, pd.DataFrame) or not {"K/R", "parameters"} <= set(report.columns):
        raise TypeError("kr_summary expects the DataFrame returned by kr_report (columns 'K/R' and 'parameters')")
    total = total_parameters if total_parameters is not None else report.attrs.get("total_parameters")
    if total is None:
        raise ValueError("the report has no attrs['total_parameters'] (lost by a pandas operation?); pass total_parameters=")
    params = report["parameters"].astype("int64")
    block_params = int(params.sum())
    kr = report["K/R"].astype(float)
    return {
        "total_parameters": int(total),
        "block_parameters": block_params,
        "rest_parameters": int(total) - block_params,
        "blocks": int(len(report)),
        "weighted_kr": float((params * kr).sum() / block_params) if block_params else float("nan"),
        "max_kr": float(kr.max()) if len(kr) else float("nan"),
        "share_kr_gt_1": float(params[kr > 1].sum() / total) if total else float("nan"),
        "total_flops": int(report.attrs.get("total_flops", 0)),
        "block_flops": int(report["FLOPs"].sum()) if "FLOPs" in report else 0,
    }
