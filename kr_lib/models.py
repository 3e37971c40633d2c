"""The ablation network family: one ResNet-style network in 2D (images) and 3D (video clips) whose
blocks are any design of book section 2, :ref:`sec-decomposition`, with the K/R ratio set directly.

    stem (conv 3, BN, ReLU; R_0 channels) -> stages s = 0..S-1 of blocks (K_s = K_0 2^s output
    channels, R_s = R_0 2^s, first block of stage s >= 1 strided by 2) -> global average pooling
    -> linear head (K_{S-1} -> classes)

Every block is ``kr_lib.blocks.make_block(design, P, K_s, R_s, dim)``, so every block has
K_s / R_s = K_0 / R_0 = the asked K/R exactly (K and R are integers: K/R = p/q in lowest terms gives
K_0 = p m, R_0 = q m for a whole number m). The stem has R_0 channels (as ResNet-50: a 64-channel
stem before a bottleneck stage with R = 64, K = 256), so at a fixed R only the block outputs change.

    build_model(info, "bottleneck", kr_ratio=4, R=16)                 # fixed R: K_0 = 64
    build_model(info, "bottleneck", kr_ratio=4, param_budget=200_000) # R solved for the budget
    model.spec["parameters"], model.spec["budget_error"]              # the achieved count

``dense`` (a plain conv block, R = K) exists only at K/R = 1. ``r2plus1d`` is 3D only; the other
designs run in 2D and 3D (``dense`` in 3D is the full 3D conv).
"""
from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import nn

from .blocks import make_block
from .complexity import DESIGNS
from .data.base import DatasetInfo

DESIGN_ALIASES = {"basic": "dense", "full3d": "dense", "3d": "dense", "(2+1)d": "r2plus1d"}
_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_BN = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


def as_fraction(kr_ratio) -> Fraction:
    """K/R as an exact fraction: ``4``, ``0.25``, ``"1/4"`` or a ``Fraction``; at most 64 in the denominator."""
    try:
        value = Fraction(kr_ratio) if isinstance(kr_ratio, (int, str, Fraction)) else Fraction(float(kr_ratio))
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"kr_ratio must be a positive number or a fraction like '1/4', got {kr_ratio!r}") from None
    value = value.limit_denominator(64)
    if value <= 0:
        raise ValueError(f"kr_ratio must be positive, got {kr_ratio!r}")
    return value


def resnext_groups(R: int, group_width: int = 4) -> int:
    """Groups G of a ResNeXt block with rank R: R / group_width (ResNeXt-50 32x4d: 4 channels per group).
    R must be a multiple of ``group_width`` with G >= 2 (G = 1 would be a plain bottleneck)."""
    if R % group_width or R // group_width < 2:
        raise ValueError(f"resnext needs R a multiple of group_width={group_width} with at least 2 groups, got R={R}")
    return R // group_width


class KRNet(nn.Module):
    """stem -> stages of blocks -> global average pooling -> linear head (see the module docstring).

    Input ``(batch, C, H, W)`` (``dim=2``) or ``(batch, C, T, H, W)`` (``dim=3``); output logits
    ``(batch, num_classes)``. ``strides[s]`` is the stride of stage s's first block (a tuple, one per mode).
    """

    def __init__(self, in_channels: int, num_classes: int, dim: int, design: str, K: int, R: int,
                 stages: int = 3, blocks_per_stage: int = 1, kernel_size: int = 3, stem_stride=1,
                 strides: list[tuple[int, ...]] | None = None, group_width: int = 4):
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 (images) or 3 (video clips), got {dim!r}")
        strides = strides or [(1,) * dim] + [(2,) * dim] * (stages - 1)
        self.design, self.dim, self.K, self.R = design, dim, K, R
        self.kr_ratio = K / R
        self.stem = nn.Sequential(
            _CONV[dim](in_channels, R, kernel_size, stride=stem_stride, padding=kernel_size // 2, bias=False),
            _BN[dim](R), nn.ReLU(inplace=True))
        channels = R
        stage_modules = []
        for s in range(stages):
            K_s, R_s = K * 2 ** s, R * 2 ** s
            blocks = []
            for b in range(blocks_per_stage):
                extra = {"groups": resnext_groups(R_s, group_width)} if design == "resnext" else {}
                blocks.append(make_block(design, channels, K_s, R_s if design != "dense" else None, dim=dim,
                                         kernel_size=kernel_size, stride=strides[s] if b == 0 else 1, **extra))
                channels = K_s
            stage_modules.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stage_modules)
        self.pool = _POOL[dim](1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, C, [T,] H, W)`` -> logits ``(batch, num_classes)``."""
        return self.head(self.pool(self.stages(self.stem(x))).flatten(1))


def _stage_strides(input_shape: tuple[int, ...], stages: int, stem_stride: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Stride 2 in every mode at the first block of stages 1.., but never below 1 voxel in a mode."""
    size = [math.ceil(d / s) for d, s in zip(input_shape[1:], stem_stride)]
    strides = [(1,) * len(size)]
    for _ in range(1, stages):
        st = tuple(2 if d >= 2 else 1 for d in size)
        size = [math.ceil(d / s) for d, s in zip(size, st)]
        strides.append(st)
    return strides


def _resolve_design(design: str, dim: int) -> str:
    if not isinstance(design, str):
        raise TypeError(f"design must be a string, one of {DESIGNS}, got {design!r}")
    name = DESIGN_ALIASES.get(design.lower(), design.lower())
    if name not in DESIGNS:
        raise ValueError(f"unknown design {design!r}; accepted: {', '.join(DESIGNS)} (aliases: {', '.join(DESIGN_ALIASES)})")
    if name == "r2plus1d" and dim != 3:
        raise ValueError("design 'r2plus1d' is for video (3D) data; this dataset is 2D")
    return name


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(info: DatasetInfo | str, design: str, kr_ratio=1, R: int | None = None, K: int | None = None,
                param_budget: int | None = None, stages: int = 3, blocks_per_stage: int = 1, kernel_size: int = 3,
                stem_stride: int | None = None, group_width: int = 4, budget_tolerance: float = 0.25) -> KRNet:
    """A :class:`KRNet` for dataset ``info`` (a :class:`DatasetInfo` or a registered name) whose every block
    has K/R = ``kr_ratio`` exactly. Give exactly one of:

    - ``R``: the first stage's R (fixed R; K_0 = kr_ratio R must be a whole number);
    - ``K``: the first stage's K (fixed width; R_0 = K / kr_ratio must be a whole number);
    - ``param_budget``: R_0 (and K_0) are solved so the parameter count is as close to the budget as the
      integers allow.

    ``stages`` (widths double, resolution halves), ``blocks_per_stage``, ``kernel_size`` (per mode),
    ``stem_stride`` (default 1; 2 in height and width for inputs larger than 64 pixels), ``group_width``
    (channels per group of ``resnext``), ``budget_tolerance`` (largest accepted relative deviation from
    ``param_budget``: K and R move in whole steps, so small budgets are met only roughly). ``model.spec`` records design, K/R, K_0, R_0, the per-stage widths,
    the parameter count and, for a budget, the relative deviation ``budget_error``.
    """
    if isinstance(info, str):
        from .data import dataset_info

        info = dataset_info(info)
    if not isinstance(info, DatasetInfo):
        raise TypeError(f"info must be a DatasetInfo or a dataset name, got {type(info).__name__}")
    dim = info.dim
    design = _resolve_design(design, dim)
    kr = as_fraction(kr_ratio)
    if design == "dense" and kr != 1:
        raise ValueError(f"design 'dense' has R = K (no decomposition), so only K/R = 1 is possible; got K/R = {kr}")
    given = [name for name, v in (("R", R), ("K", K), ("param_budget", param_budget)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of R, K or param_budget (got {', '.join(given) or 'none'})")
    for name, v in (("stages", stages), ("blocks_per_stage", blocks_per_stage), ("kernel_size", kernel_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if stem_stride is None:
        stem_stride = 2 if max(info.input_shape[-2:]) > 64 else 1
    stem = (1,) * (dim - 2) + (stem_stride, stem_stride)  # video: never strided in time by the stem
    strides = _stage_strides(info.input_shape, stages, stem)

    def make(m: int) -> KRNet:
        return KRNet(info.channels, info.num_classes, dim, design, kr.numerator * m, kr.denominator * m, stages,
                     blocks_per_stage, kernel_size, stem, strides, group_width)

    if design == "resnext":  # R_0 = q m must be a multiple of group_width, with >= 2 groups
        if isinstance(group_width, bool) or not isinstance(group_width, int) or group_width < 1:
            raise ValueError(f"group_width must be a positive int, got {group_width!r}")
        step = group_width // math.gcd(kr.denominator, group_width)
        min_m = step * max(1, -(-2 * group_width // (kr.denominator * step)))
    else:
        step, min_m = 1, 1

    budget_error = None
    if R is not None or K is not None:
        base, unit, name = (R, kr.denominator, "R") if R is not None else (K, kr.numerator, "K")
        if isinstance(base, bool) or not isinstance(base, int) or base < 1:
            raise ValueError(f"{name} must be a positive int, got {base!r}")
        if base % unit:
            other = "K" if name == "R" else "R"
            raise ValueError(f"with K/R = {kr}, {other} = {'K/R x R' if name == 'R' else 'K / (K/R)'} must be a whole "
                             f"number: {name} must be a multiple of {unit}, got {name}={base}")
        m = base // unit
        if m % step or m < min_m:
            raise ValueError(f"resnext with group_width={group_width}: R = {kr.denominator * m} must be a multiple of "
                             f"{group_width} and at least {2 * group_width} (2 groups)")
        model = make(m)
    else:
        if isinstance(param_budget, bool) or not isinstance(param_budget, int) or param_budget < 1:
            raise ValueError(f"param_budget must be a positive int, got {param_budget!r}")
        k = solve_scale(lambda k: _meta_count(make, step * k), param_budget, lowest=min_m // step)
        model = make(step * k)
    params = count_parameters(model)
    if param_budget is not None:
        budget_error = params / param_budget - 1
        if abs(budget_error) > budget_tolerance:
            raise ValueError(f"a {design} network with K/R = {kr} cannot come within {budget_tolerance:.0%} of "
                             f"{param_budget} parameters (closest: {params}, K = {model.K}, R = {model.R}); raise the "
                             f"budget, change stages/blocks_per_stage, or raise budget_tolerance")
    model.spec = {
        "design": design, "dim": dim, "kr_ratio": float(kr), "kr_fraction": str(kr), "K": model.K, "R": model.R,
        "stage_K": [model.K * 2 ** s for s in range(stages)], "stage_R": [model.R * 2 ** s for s in range(stages)],
        "stages": stages, "blocks_per_stage": blocks_per_stage, "kernel_size": kernel_size,
        "stem_stride": stem_stride, "group_width": group_width, "input_shape": list(info.input_shape),
        "num_classes": info.num_classes, "parameters": params, "param_budget": param_budget,
        "budget_error": budget_error,
    }
    return model


def _meta_count(make, m: int) -> int:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return count_parameters(make(m))


def solve_scale(count, budget: int, lowest: int = 1) -> int:
    """The whole number m >= ``lowest`` whose ``count(m)`` (increasing in m) is nearest ``budget``."""
    hi = lowest
    while count(hi) < budget:
        hi *= 2
    lo = max(lowest, hi // 2)
    while hi - lo > 1:  # count(lo) < budget <= count(hi), or lo = hi - 1
        mid = (lo + hi) // 2
        if count(mid) < budget:
            lo = mid
        else:
            hi = mid
    return min((lo, hi), key=lambda m: abs(count(m) - budget))
