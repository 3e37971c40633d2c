"""One training loop for every dataset of the registry and every network of :mod:`kr_lib.models`::

    config = TrainConfig(epochs=10, batch_size=128, optimizer="sgd", seed=0)
    result = train(model, (train_split, test_split), config, device=None, checkpoint_dir="runs/x")
    result.test_accuracy, result.history, result.to_dict()
    train(model, data, epochs=10, seed=0)   # the same: the config's fields as keywords

``train`` reads as its steps: check the inputs, seed and place, :func:`build_optimizer`, resume
(:func:`load_checkpoint`), then per epoch :func:`train_epoch`, :func:`evaluate`, :func:`save_checkpoint`.

- Data: each split is a :class:`~kr_lib.data.TensorData` (moved to the device once; every epoch draws
  shuffled index batches from it -- no DataLoader, no workers, loading is never the bottleneck) or a
  torch ``Dataset`` with ``.info`` such as :class:`~kr_lib.data.UCF101Clips` (read by a DataLoader).
  Batches are augmented and normalized on the device (:func:`kr_lib.data.prepare_batch`).
- Device: ``resolve_device`` (cuda, then mps, then cpu) or named. Mixed precision (autocast, bfloat16
  where supported, else float16 with a GradScaler) on CUDA.
- Reproducible: shuffling and augmentation draw from CPU generators seeded with ``seed``; on the CPU
  two runs with one seed (and one initial model) give identical metrics.
- SGD (Nesterov momentum) or AdamW, cosine learning-rate schedule stepped every batch, weight decay.
- A checkpoint at each epoch end (written to a temporary file, then renamed: atomic), read back with
  ``torch.load(weights_only=True)``; a run started again with the same ``checkpoint_dir`` resumes after
  the last finished epoch and ends exactly as an uninterrupted run would.
- A loss that becomes NaN/inf or exceeds ``max_loss`` stops the run with ``status="diverged"``.
- ``compiled=True`` (opt-in): the network's forward runs through ``torch.compile`` (training and
  evaluation; checkpoints hold the plain module's state, so either kind of run resumes from them).
  Measured by ``benchmarks/bench_train.py`` on a 2-core CPU, one thread: a training step of the book's
  Fashion-MNIST networks 1.4 to 1.7 times faster, after a compilation of about a minute to a few minutes
  per architecture (seconds once inductor's on-disk cache holds it). Off by default: the compilation
  costs more than a short run gains, and the metrics differ from eager ones in the last digits, so a
  record made with it reproduces only with it.
"""
from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data.augment import prepare_batch
from .data.base import TensorData
from .device import resolve_device
from .progress import progress_bar
from .validate import positive_int

OPTIMIZERS = ("sgd", "adamw")
DEFAULT_LR = {"sgd": 0.1, "adamw": 1e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 0.05}
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainResult:
    """What a run returns. Accuracies are top-1 fractions in [0, 1]; losses are mean cross-entropy.

    ``status``: ``"completed"`` or ``"diverged"`` (then ``message`` says when, and the test metrics are
    ``None``). ``history``: one dict per finished epoch (epoch, lr, train_loss, train_accuracy, test_loss,
    test_accuracy, train_time_s, samples_per_second). ``samples_per_second``: training samples per second
    of training time in this call (evaluation and checkpoints excluded). ``peak_memory_bytes``: CUDA's
    peak allocated memory on CUDA, else the process's peak resident memory (``peak_memory_kind`` says which).
    """

    status: str
    test_accuracy: float | None
    test_loss: float | None
    history: list[dict]
    epochs_completed: int
    wall_time_s: float
    samples_per_second: float
    peak_memory_bytes: int
    peak_memory_kind: str
    device: str
    seed: int
    amp: str | None
    resumed_from_epoch: int = 0
    message: str = ""
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-serialisable dict (NaN and inf become None)."""
        return _clean(asdict(self))


def _clean(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


class Diverged(Exception):
    """Raised inside the loop when the training loss is not finite or exceeds ``max_loss``."""


def _check_split(split, name: str):
    if isinstance(split, TensorData):
        return split
    if isinstance(split, torch.utils.data.Dataset) and hasattr(split, "info"):
        return split
    raise TypeError(f"{name} must be a kr_lib.data.TensorData or a torch Dataset with an .info "
                    f"(what kr_lib.data.get_dataset returns), got {type(split).__name__}")


def _batches(split, batch_size: int, device: torch.device, shuffle: bool, generator: torch.Generator | None,
             num_workers: int):
    """Yield ``(x, y)`` batches on ``device``: index batches of in-memory tensors, or a DataLoader."""
    if isinstance(split, TensorData):
        n = len(split)
        order = torch.randperm(n, generator=generator).to(device) if shuffle else None
        for start in range(0, n, batch_size):
            if order is None:
                yield split.x[start:start + batch_size], split.y[start:start + batch_size]
            else:
                idx = order[start:start + batch_size]
                yield split.x[idx], split.y[idx]
        return
    loader = torch.utils.data.DataLoader(split, batch_size=batch_size, shuffle=shuffle, generator=generator,
                                         num_workers=num_workers, pin_memory=device.type == "cuda")
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def _autocast(device: torch.device, amp: bool):
    """The autocast context and its dtype name: bfloat16 (or float16 + GradScaler) on CUDA, none elsewhere."""
    if not (amp and device.type == "cuda"):
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return (lambda: torch.autocast("cuda", dtype=dtype)), str(dtype).replace("torch.", "")


def _sum_dtype(device: torch.device) -> torch.dtype:
    """Loss sums in float64 (exact enough over an epoch), float32 on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return int(rss if sys.platform == "darwin" else rss * 1024), "process_max_rss"


@torch.no_grad()
def evaluate(model: nn.Module, split, batch_size: int = 256, device=None, amp: bool = True,
             num_workers: int = 0) -> tuple[float, float]:
    """Mean cross-entropy loss and top-1 accuracy of ``model`` on ``split`` (no augmentation)."""
    device = resolve_device(device)
    split = _check_split(split, "split")
    if isinstance(split, TensorData):
        split = split.to(device)
    autocast, _ = _autocast(device, amp)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=_sum_dtype(device))
    correct = torch.zeros((), device=device, dtype=torch.long)
    for x, y in _batches(split, batch_size, device, False, None, num_workers):
        with autocast():
            logits = model(prepare_batch(x, split.info, train=False))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(dim=1) == y).sum()
    model.train(was_training)
    n = len(split)
    return loss_sum.item() / n, correct.item() / n


@dataclass(frozen=True)
class TrainConfig:
    """What decides a training run's numbers, checked on construction: ``epochs``, ``batch_size``,
    ``optimizer`` ("sgd": Nesterov momentum, or "adamw"), ``lr`` and ``weight_decay`` (None: the optimizer's
    default, SGD 0.1 / 5e-4, AdamW 1e-3 / 0.05; filled in here), ``momentum`` (SGD), ``seed`` (shuffling,
    augmentation, dropout) and ``augment`` (the dataset's standard training augmentation). A checkpoint
    stores it; a run resumes from a checkpoint only when its config equals this one."""

    epochs: int = 1
    batch_size: int = 128
    lr: float | None = None
    optimizer: str = "sgd"
    weight_decay: float | None = None
    momentum: float = 0.9
    seed: int = 0
    augment: bool = True

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("epochs", "batch_size"):
            positive_int(getattr(self, name), name)
        set_("lr", DEFAULT_LR[self.optimizer] if self.lr is None else float(self.lr))
        set_("weight_decay", DEFAULT_WEIGHT_DECAY[self.optimizer] if self.weight_decay is None
             else float(self.weight_decay))
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


_CONFIG_FIELDS = tuple(f.name for f in fields(TrainConfig))
#: What a checkpoint must agree on besides the :class:`TrainConfig`: the training data.
_DATA_KEYS = ("dataset", "train_size")


@dataclass
class _State:
    """Everything a run changes as it trains: what a checkpoint saves and restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    shuffle_gen: torch.Generator
    augment_gen: torch.Generator
    net: Callable | None = None  # what runs the forward pass: the model, or its torch.compile

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model if self.net is None else self.net)(x)

    def parts(self) -> dict[str, tuple[Callable, Callable]]:
        """Checkpoint key -> (get its state, restore it): the one list of what a checkpoint holds (with
        ``epoch``, ``history`` and ``config``), read in this order on resume."""
        scaler = self.scaler
        return {
            "model": (self.model.state_dict, self.model.load_state_dict),
            "optimizer": (self.optimizer.state_dict, self.optimizer.load_state_dict),
            "scheduler": (self.scheduler.state_dict, self.scheduler.load_state_dict),
            # empty when the checkpoint was made without float16 scaling (CPU, bfloat16)
            "scaler": (scaler.state_dict, lambda state: state and scaler.load_state_dict(state)),
            "shuffle_rng": (self.shuffle_gen.get_state, self.shuffle_gen.set_state),
            "augment_rng": (self.augment_gen.get_state, self.augment_gen.set_state),
            "torch_rng": (torch.get_rng_state, torch.set_rng_state),
        }


def save_checkpoint(path: Path, state: _State, epoch: int, history: list[dict], config: dict) -> None:
    """Write the checkpoint after ``epoch`` finished epochs atomically (a temporary file, then renamed)."""
    payload = {"epoch": epoch, **{key: get() for key, (get, _) in state.parts().items()}, "history": history,
               "config": config}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, state: _State, config: dict) -> tuple[int, list[dict]]:
    """Restore ``state`` from the checkpoint at ``path``; return (finished epochs, history). ``ValueError``
    when the checkpoint was made with another :class:`TrainConfig` or other training data."""
    # on the CPU: the generator states must be CPU tensors; load_state_dict moves the rest to the device
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for key in (*_CONFIG_FIELDS, *_DATA_KEYS):
        if saved["config"].get(key) != config[key]:
            raise ValueError(
                f"checkpoint {path} was made with {key}={saved['config'].get(key)!r}, this run asks for "
                f"{config[key]!r}; use another checkpoint_dir or resume=False to start over"
            )
    for key, (_, restore) in state.parts().items():
        restore(saved[key])
    return int(saved["epoch"]), list(saved["history"])


def build_optimizer(model: nn.Module, config: TrainConfig, steps: int):
    """The optimizer (weight decay on weights, none on BatchNorm and biases) and its cosine learning-rate
    schedule over ``steps`` batches."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)  # no decay on BatchNorm and biases
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)
    else:
        opt = torch.optim.AdamW(groups, lr=config.lr)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)


def train_epoch(state: _State, split, info, config: TrainConfig, epoch: int, *, device: torch.device, autocast,
                max_loss: float, log_every: int, num_workers: int, bar) -> tuple[float, float, int]:
    """One pass over the training split: (mean loss, accuracy, samples seen). Raises :class:`Diverged`
    when the running loss is not finite or exceeds ``max_loss`` (checked every ``log_every`` batches)."""
    model, opt, scaler = state.model, state.optimizer, state.scaler
    model.train()
    loss_sum = torch.zeros((), device=device, dtype=_sum_dtype(device))
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    steps = _num_batches(len(split), config.batch_size)
    batches = _batches(split, config.batch_size, device, True, state.shuffle_gen, num_workers)
    for step, (x, y) in enumerate(batches, start=1):
        x = prepare_batch(x, info, train=config.augment, generator=state.augment_gen)
        with autocast():
            logits = state.forward(x)
            loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        state.scheduler.step()
        loss_sum += loss.detach() * y.shape[0]
        correct += (logits.detach().argmax(dim=1) == y).sum()
        seen += y.shape[0]
        if step % log_every == 0 or step == steps:
            running = loss_sum.item() / seen  # waits for the device: only every log_every steps
            if not math.isfinite(running) or running > max_loss:
                raise Diverged(f"training loss reached {running:.4g} at epoch {epoch + 1}, step {step} "
                               f"(limit {max_loss:.4g}); try a smaller lr (was {config.lr})")
            bar.set_postfix(loss=f"{running:.4f}", acc=f"{correct.item() / seen:.4f}", refresh=False)
        bar.update(1)
    return loss_sum.item() / seen, correct.item() / seen, seen


def train(
    model: nn.Module,
    data,
    config: TrainConfig | None = None,
    *,
    device: str | torch.device | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = True,
    amp: bool = True,
    progress: bool = True,
    num_workers: int = 0,
    max_loss: float | None = None,
    log_every: int = 25,
    on_epoch_end: Callable[[dict], None] | None = None,
    compiled: bool = False,
    **settings,
) -> TrainResult:
    """Train ``model`` on ``data = (train_split, test_split)``; evaluate on the test split after every epoch.

    ``config``: a :class:`TrainConfig`, or its fields as keywords (``epochs=3, lr=0.05``), not both.
    ``checkpoint_dir``: where ``checkpoint.pt`` is written at each epoch end and, with ``resume``, read back
    to continue. ``amp``: mixed precision on CUDA. ``max_loss``: a training loss above it counts as
    divergence (default ``100 * ln(number of classes)``). ``log_every``: batches between progress-bar
    updates (each one waits for the device). ``on_epoch_end(record)`` is called with each epoch's history
    record. ``compiled``: run the forward pass through ``torch.compile`` (see the module docstring).
    Returns a :class:`TrainResult`.
    """
    # 1. check the inputs
    start_wall = time.perf_counter()
    if config is not None and settings:
        raise TypeError(f"give a TrainConfig or its fields ({', '.join(sorted(settings))}), not both")
    unknown = sorted(set(settings) - set(_CONFIG_FIELDS))
    if unknown:
        raise TypeError(f"train() got unexpected keyword argument(s) {', '.join(unknown)}; "
                        f"the TrainConfig fields are {', '.join(_CONFIG_FIELDS)}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError("data must be a pair (train_split, test_split), e.g. kr_lib.data.load_splits(name)")
    train_split, test_split = _check_split(data[0], "data[0] (train split)"), _check_split(data[1], "data[1] (test split)")
    config = config if config is not None else TrainConfig(**settings)
    positive_int(log_every, "log_every")
    info = train_split.info
    max_loss = 100 * math.log(max(info.num_classes, 2)) if max_loss is None else float(max_loss)
    device = resolve_device(device)
    config_dict = {**asdict(config), "dataset": info.name, "train_size": len(train_split), "test_size": len(test_split),
                   "compiled": bool(compiled)}  # not checked on resume: either kind of run resumes a checkpoint

    # 2. seed, and put the model and the data on the device
    torch.manual_seed(config.seed)  # anything random inside the model (dropout)
    shuffle_gen = torch.Generator().manual_seed(config.seed)
    augment_gen = torch.Generator().manual_seed(config.seed + 1)
    model.to(device)
    if isinstance(train_split, TensorData):
        train_split = train_split.to(device)
    if isinstance(test_split, TensorData):
        test_split = test_split.to(device)
    autocast, amp_dtype = _autocast(device, amp)

    # 3. optimizer, schedule, gradient scaler
    steps_per_epoch = _num_batches(len(train_split), config.batch_size)
    opt, scheduler = build_optimizer(model, config, config.epochs * steps_per_epoch)
    state = _State(model, opt, scheduler, torch.amp.GradScaler("cuda", enabled=amp_dtype == "float16"),
                   shuffle_gen, augment_gen, net=torch.compile(model) if compiled else None)

    # 4. resume after the last finished epoch of a checkpoint
    history: list[dict] = []
    first_epoch = 0
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if ckpt_path is not None and resume and ckpt_path.is_file():
        first_epoch, history = load_checkpoint(ckpt_path, state, config_dict)
    if ckpt_path is not None:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)

    # 5. each epoch: train, evaluate, checkpoint, report
    cuda_ctx = contextlib.nullcontext()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda_ctx = _cudnn_benchmark()
    status, message = "completed", ""
    train_time, samples_seen = 0.0, 0
    with cuda_ctx:
        for epoch in range(first_epoch, config.epochs):
            epoch_start = time.perf_counter()
            bar = progress_bar(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", enabled=progress,
                               leave=False, dynamic_ncols=True)
            try:
                train_loss, train_acc, seen = train_epoch(
                    state, train_split, info, config, epoch, device=device, autocast=autocast, max_loss=max_loss,
                    log_every=log_every, num_workers=num_workers, bar=bar)
            except Diverged as err:
                status, message = "diverged", str(err)
                break
            finally:
                bar.close()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            epoch_train_time = time.perf_counter() - epoch_start
            train_time += epoch_train_time
            samples_seen += seen
            net = model if state.net is None else state.net
            test_loss, test_acc = evaluate(net, test_split, 2 * config.batch_size, device, amp, num_workers)
            record = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": train_loss,
                      "train_accuracy": train_acc, "test_loss": test_loss, "test_accuracy": test_acc,
                      "train_time_s": epoch_train_time, "samples_per_second": seen / epoch_train_time}
            if not math.isfinite(test_loss):
                status, message = "diverged", f"test loss is {test_loss} after epoch {epoch + 1}; try a smaller lr"
                break
            history.append(record)
            if ckpt_path is not None:
                save_checkpoint(ckpt_path, state, epoch + 1, history, config_dict)
            if progress:
                bar.write(f"epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f} acc {train_acc:.4f} | "
                          f"test loss {test_loss:.4f} acc {test_acc:.4f}")
            if on_epoch_end is not None:
                on_epoch_end(record)

    # 6. the result
    peak, peak_kind = _peak_memory(device)
    done = status == "completed" and history
    return TrainResult(
        status=status,
        test_accuracy=history[-1]["test_accuracy"] if done else None,
        test_loss=history[-1]["test_loss"] if done else None,
        history=history,
        epochs_completed=len(history),
        wall_time_s=time.perf_counter() - start_wall,
        samples_per_second=samples_seen / train_time if train_time > 0 else float("nan"),
        peak_memory_bytes=peak,
        peak_memory_kind=peak_kind,
        device=str(device),
        seed=config.seed,
        amp=amp_dtype,
        resumed_from_epoch=first_epoch,
        message=message,
        config=config_dict,
    )


@contextlib.contextmanager
def _cudnn_benchmark():
    """cuDNN autotuning for the run's fixed shapes, restored afterwards (the caller's setting is theirs)."""
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old
