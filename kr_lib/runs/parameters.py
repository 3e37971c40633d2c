"""The parameters of one ablation run, checked once, as a frozen value with its run id.

    p = check_parameters({"dataset": "fashion_mnist", "design": "bottleneck", "kr_ratio": 4, "R": 8})
    p.run_id, p.mode, p["epochs"], p.scientific, p.record_path()
    p.replace(device="cpu", output_dir="results")     # checked again: a new value, the old one unchanged

:class:`AblationParams` is the notebook ``notebooks/ablation.ipynb``'s ``parameters`` cell as a type
(:data:`DEFAULTS` are its defaults). It is also a read-only mapping (``p["R"]``, ``dict(p)``, ``{**p}``) of
those names plus ``mode``, which is how a record stores it. Construction checks every value (a clear
``ValueError``/``TypeError`` naming the culprit and what is accepted) and resolves ``kr_ratio`` to an exact
fraction string, ``design`` to its canonical name, ``lr``/``weight_decay`` to the optimizer's defaults and
``mode`` ("fixed_r" with ``R``, "budget" with ``param_budget``). The network is built on the meta device
(shapes only) so that an impossible K/R, R or budget fails here, before anything is trained.
"""
from __future__ import annotations

import dataclasses
import functools
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..validate import boolean, non_negative_int, positive_int, positive_number
from .identity import SCIENTIFIC, checkpoint_dir, default_output_dir, record_path, run_id, scientific


@dataclass(frozen=True)
class AblationParams(Mapping):
    """One ablation run's parameters, checked (see the module docstring). Field = notebook parameter."""

    dataset: str = "fashion_mnist"   # a name of kr_lib.data.DATASETS
    design: str = "bottleneck"       # dense, bottleneck, resnext, inverted_residual, separable, r2plus1d (3D)
    kr_ratio: Any = 4                # K/R of every block: a number or a fraction such as "1/4"
    R: int | None = 8                # first-stage R (fixed-R mode); stage s has R 2^s; None with param_budget
    param_budget: int | None = None  # total parameters to aim at (budget mode: R is solved); None with R
    stages: int = 3                  # depth: stages of blocks (widths double, resolution halves)
    blocks_per_stage: int = 1        # depth: blocks per stage
    kernel_size: int = 3
    stem_stride: int | None = None   # None: 1, or 2 for inputs larger than 64 pixels; 2 quarters the cost
    group_width: int = 4             # channels per group of resnext
    epochs: int = 1
    batch_size: int = 128
    optimizer: str = "sgd"           # sgd (Nesterov, cosine schedule) or adamw
    lr: float | None = None          # None: 0.1 for sgd, 1e-3 for adamw
    weight_decay: float | None = None  # None: 5e-4 for sgd, 0.05 for adamw
    augment: bool = True             # the dataset's standard training augmentation
    amp: bool = True                 # mixed precision on CUDA (no effect on the CPU)
    seed: int = 0
    train_limit: int | None = 2000   # training subset: the first n samples; None: the whole split
    test_limit: int | None = None    # test subset; None: the whole split
    dataset_options: Mapping = field(default_factory=dict)  # per dataset, e.g. {"frames": 8, "canvas": 32}
    device: str = "auto"             # auto (cuda, mps, cpu), cpu, cuda, cuda:1, ...
    threads: int | None = None       # CPU threads of torch (None: torch's default); the CPU sums depend on it
    data_dir: str | None = None      # None: $KR_DATA_DIR, then the dataset's default places
    download: bool = False           # fetch a missing dataset (cifar10, svhn, fashion_mnist; needs internet)
    output_dir: str | None = None    # None: $KR_RESULTS_DIR, else _build/runs (scratch); kr ablate/sweep: results
    save_record: bool = True         # write the result record
    staged_record: bool = False      # kr ablate/sweep: write <run_id>.json.staged, renamed once the notebook is saved
    checkpoint: bool = True          # checkpoint each epoch (resumed if the run is started again)
    sweep: Mapping | None = None     # set by kr sweep: {"file": ..., "preset": ...}; not part of the run id
    mode: str = field(init=False)    # "fixed_r" or "budget", from R / param_budget

    def __post_init__(self):
        from ..data import DATASETS, dataset_info
        from ..models import as_fraction
        from ..train import DEFAULT_LR, DEFAULT_WEIGHT_DECAY, OPTIMIZERS

        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; accepted: {', '.join(DATASETS)}")
        if not isinstance(self.dataset_options, Mapping):
            raise TypeError(f"dataset_options must be a mapping (e.g. {{'frames': 8}}), got {self.dataset_options!r}")
        set_("dataset_options", dict(self.dataset_options))
        for key in ("limit", "train_limit", "test_limit"):
            if key in self.dataset_options:
                raise ValueError(f"give the subset as the parameters train_limit/test_limit, not dataset_options[{key!r}]")
        dataset_info(self.dataset, **self.dataset_options)  # unknown options are named here

        for name in _INTS:
            set_(name, positive_int(self[name], name))
        for name in _OPTIONAL_INTS:
            set_(name, positive_int(self[name], name, optional=True))
        for name in _BOOLS:
            boolean(self[name], name)
        set_("seed", non_negative_int(self.seed, "seed"))
        if (self.R is None) == (self.param_budget is None):
            raise ValueError("give exactly one of R (fixed-R mode) and param_budget (budget mode); got "
                             f"R={self.R!r}, param_budget={self.param_budget!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        for name, default in (("lr", DEFAULT_LR), ("weight_decay", DEFAULT_WEIGHT_DECAY)):
            value = self[name]
            set_(name, default[self.optimizer] if value is None else
                 positive_number(value, name, allow_zero=name == "weight_decay",
                                 hint=" or None (the optimizer's default)"))
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {self.device!r}")
        for name in ("data_dir", "output_dir"):
            if self[name] is not None and not isinstance(self[name], (str, Path)):
                raise TypeError(f"{name} must be a path or None, got {self[name]!r}")
            if self[name] is not None:
                set_(name, str(self[name]))
        if self.sweep is not None:
            if not isinstance(self.sweep, Mapping):
                raise TypeError(f"sweep must be a mapping or None, got {self.sweep!r}")
            set_("sweep", dict(self.sweep))

        set_("kr_ratio", str(as_fraction(self.kr_ratio)))
        set_("design", _meta_design(self.dataset, _freeze(self.dataset_options), self.design, self.kr_ratio, self.R,
                                    self.param_budget, self.stages, self.blocks_per_stage, self.kernel_size,
                                    self.stem_stride, self.group_width))
        set_("mode", "fixed_r" if self.R is not None else "budget")

    # -- a read-only mapping of the notebook's names and mode (what a record's "parameters" holds)
    def __getitem__(self, name: str):
        if name not in _NAMES:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(_NAMES)

    def __len__(self) -> int:
        return len(_NAMES)

    # -- identity
    @property
    def scientific(self) -> dict[str, Any]:
        """The parameters that decide the result (:data:`~kr_lib.runs.identity.SCIENTIFIC`)."""
        return scientific(self)

    @functools.cached_property
    def run_id(self) -> str:
        """The run id (:func:`~kr_lib.runs.identity.run_id` of :attr:`scientific`)."""
        return run_id(self.scientific)

    @property
    def results_root(self) -> Path:
        """The results root: ``output_dir``, else :func:`~kr_lib.runs.identity.default_output_dir`."""
        return Path(self.output_dir) if self.output_dir else default_output_dir()

    def record_path(self) -> Path:
        """``<results root>/<dataset>/<run_id>.json``."""
        return record_path(self.results_root, self.dataset, self.run_id)

    def checkpoint_dir(self) -> Path:
        """``<results root>/<dataset>/.checkpoints/<run_id>``."""
        return checkpoint_dir(self.results_root, self.dataset, self.run_id)

    def notebook_parameters(self) -> dict[str, Any]:
        """The notebook's parameters (every name of :data:`DEFAULTS`, no ``mode``): what papermill injects."""
        return {name: self[name] for name in DEFAULTS}

    def replace(self, **changes) -> AblationParams:
        """A copy with ``changes`` (notebook parameter names), checked again."""
        return dataclasses.replace(self, **changes)


_NAMES = tuple(f.name for f in dataclasses.fields(AblationParams))
#: The notebook's parameters and their defaults (small: one epoch on 2,000 Fashion-MNIST images, a few
#: seconds on a laptop CPU); the fields of :class:`AblationParams`, whose comments say what each one is.
DEFAULTS: dict[str, Any] = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                            for f in dataclasses.fields(AblationParams) if f.init}

_OPTIONAL_INTS = ("R", "param_budget", "stem_stride", "train_limit", "test_limit", "threads")
_INTS = ("stages", "blocks_per_stage", "kernel_size", "group_width", "epochs", "batch_size")
_BOOLS = ("augment", "amp", "download", "save_record", "staged_record", "checkpoint")
assert set(SCIENTIFIC) <= set(DEFAULTS)


def _accepted(name: str) -> str:
    return f"{name} (default {DEFAULTS[name]!r})"


def _unknown(names) -> ValueError:
    return ValueError(f"unknown parameter(s) {', '.join(sorted(names))}; accepted: "
                      + ", ".join(_accepted(n) for n in DEFAULTS))


def check_parameters(params: Mapping[str, Any]) -> AblationParams:
    """``params`` (any of :data:`DEFAULTS`' names; the rest take their defaults) as checked
    :class:`AblationParams`; checked parameters are returned as they are. A ``mode`` key is ignored (it
    follows from R / param_budget), so a record's ``parameters`` check again. Raises ``ValueError``/
    ``TypeError`` naming the culprit and what is accepted, before anything is trained."""
    if isinstance(params, AblationParams):
        return params
    if not isinstance(params, Mapping):
        raise TypeError(f"parameters must be a mapping of name -> value, got {type(params).__name__}")
    unknown = set(params) - set(DEFAULTS) - {"mode"}
    if unknown:
        raise _unknown(unknown)
    return AblationParams(**{k: v for k, v in params.items() if k != "mode"})


def parameters_from_namespace(namespace: Mapping[str, Any]) -> AblationParams:
    """The ablation parameters defined in a notebook's namespace (``globals()``), checked.

    Any other plain value defined there (not a module, function or class, not ``_private``, not one of
    IPython's own names) is an unknown parameter -- a misspelt ``-p`` name that papermill injected -- and
    raises ``ValueError`` with the accepted names.
    """
    hidden: set[str] = set()
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            hidden = set(shell.user_ns_hidden)
    except ImportError:
        pass
    params, unknown = {}, []
    for name, value in namespace.items():
        if name in DEFAULTS:
            params[name] = value
        elif not (name.startswith("_") or name in hidden or name in ("In", "Out", "exit", "quit", "get_ipython")
                  or isinstance(value, (types.ModuleType, types.FunctionType, type)) or callable(value)):
            unknown.append(name)
    if unknown:
        raise _unknown(unknown)
    return check_parameters(params)


def build_network(p: Mapping[str, Any], info):
    """The untrained network of checked parameters ``p`` for the dataset ``info`` (``build_model``)."""
    from ..models import build_model

    return build_model(info, p["design"], p["kr_ratio"], R=p["R"], param_budget=p["param_budget"],
                       stages=p["stages"], blocks_per_stage=p["blocks_per_stage"], kernel_size=p["kernel_size"],
                       stem_stride=p["stem_stride"], group_width=p["group_width"])


def _freeze(options: Mapping) -> tuple:
    return tuple(sorted((k, _freeze(v) if isinstance(v, Mapping) else v) for k, v in options.items()))


@functools.lru_cache(maxsize=1024)
def _meta_design(dataset, options, design, kr_ratio, R, param_budget, stages, blocks_per_stage, kernel_size,
                 stem_stride, group_width) -> str:
    """Build the network on the meta device (shapes only) so that an impossible K/R, R or budget fails
    while checking; returns the canonical design name. Cached: a sweep checks each network once, not per seed."""
    import torch

    from ..data import dataset_info

    p = {"design": design, "kr_ratio": kr_ratio, "R": R, "param_budget": param_budget, "stages": stages,
         "blocks_per_stage": blocks_per_stage, "kernel_size": kernel_size, "stem_stride": stem_stride,
         "group_width": group_width}
    with torch.device("meta"):
        try:
            return build_network(p, dataset_info(dataset, **dict(options))).spec["design"]
        except ValueError as err:
            # build_model's budget_tolerance is not a run parameter: suggest only what a run can change
            text = str(err)
            if "raise budget_tolerance" in text:
                text = text.replace(", or raise budget_tolerance", ", or pick another kr_ratio or design")
                text = text.replace("raise the budget, change", "raise param_budget, change")
                raise ValueError(text) from None
            raise
