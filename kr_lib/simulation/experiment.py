"""Teacher-student sample-complexity experiments (book section 3, :ref:`sec-df`), as one tidy DataFrame.

A teacher CNN with a compressed kernel (Tucker-2 ranks R_in, R, or CP rank R) generates
y = f*(X) + sigma * eps from Gaussian inputs X. For each n of a grid, each student (``"compressed"``:
the teacher's family at the same ranks with K output channels; ``"dense"``: a plain conv with K output
channels) and each K of a grid, ``reps`` repetitions (fresh data, noise and student initialisation; one
teacher) are fitted together on the device and scored by

- ``estimation_error`` ||W^ - W*||_F of the summarized tensor (identity activation only: W is
  identifiable there; NaN for ReLU), and ``relative_error`` = that / ||W*||_F;
- ``excess_risk`` E (f^(X) - f*(X))^2 on fresh test inputs, and ``root_excess_risk`` its square root.

The data are nested: the first n samples of repetition r are the same for every n, student and K.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.func import stack_module_state

from kr_lib.complexity import naive_count
from kr_lib.device import resolve_device
from kr_lib.formulation import TensorRegression
from kr_lib.validate import positive_int

from .estimators import cp_als, fit_gradient, normal_equations, tucker_als
from .geometry import CNNGeometry, patches, pooling_matrix
from .models import (
    build_cnn, check_activation, check_family, check_ranks, degrees_of_freedom, network_output, summarized_ranks,
    summarized_tensor,
)

STUDENTS = ("compressed", "dense")
ESTIMATORS = ("auto", "als", "gradient")
METRICS = ("estimation_error", "relative_error", "root_excess_risk")


_positive_int = positive_int  # the project's one rule for counts (kr_lib.validate)


@dataclass(frozen=True)
class SimulationConfig:
    """Everything one sample-complexity experiment depends on. Checked on construction.

    Geometry: ``spatial`` (d, 2 or 3 modes), ``in_channels`` (P), ``kernel_size`` (l), ``stride`` (s),
    ``pool`` (q). The default stride equals the kernel size (non-overlapping patches): the design tensor's
    entries are then independent, Cov Z = I / prod(q), and W is identifiable, as the theory assumes; with
    the identity activation a geometry that leaves W unidentifiable is refused.

    Teacher: ``family`` ("tucker" or "cp"), ranks ``R_in`` (Tucker only) and ``R``, ``teacher_K`` output
    channels (default R), ``activation`` ("identity" or "relu"), noise ``sigma``; its signal f*(X) is
    scaled to unit variance. Students: ``students``, ``K_grid``. Sampling: ``n_grid``,
    ``reps``, ``n_test``. Estimator: ``"als"`` (rank-constrained least squares, identity only),
    ``"gradient"`` (Adam with early stopping on a ``validation`` split: a fraction in (0, 1) or a count)
    or ``"auto"`` (als for identity, gradient for relu); gradient training: ``lr``, ``batch_size``,
    ``max_epochs``, ``patience``, ``min_steps``; ALS: ``als_iters``. ``device``: as ``resolve_device``.
    """

    spatial: tuple[int, ...] = (24, 24)
    in_channels: int = 3
    kernel_size: int | tuple[int, ...] = 3
    stride: int | tuple[int, ...] = 3
    pool: int | tuple[int, ...] = 2
    family: str = "tucker"
    R_in: int | None = 2
    R: int = 2
    teacher_K: int | None = None
    K_grid: tuple[int, ...] = (2, 4, 8, 16)
    students: tuple[str, ...] = STUDENTS
    n_grid: tuple[int, ...] = (100, 200, 400, 800, 1600, 3200)
    reps: int = 5
    sigma: float = 0.5
    activation: str = "identity"
    estimator: str = "auto"
    n_test: int = 2000
    validation: float | int = 0.2
    lr: float = 3e-3
    batch_size: int | None = 64
    max_epochs: int = 200
    patience: int = 10
    min_steps: int = 500
    als_iters: int = 30
    device: str | None = "auto"
    seed: int = 0
    geometry: CNNGeometry = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        check_activation(self.activation)
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.estimator!r}; use one of {list(ESTIMATORS)}")
        if self.estimator == "als" and self.activation != "identity":
            raise ValueError("estimator 'als' (rank-constrained least squares on W) needs activation 'identity'; "
                             "use 'gradient' for relu")
        if check_family(self.family) == "dense":
            raise ValueError("the teacher's family must be compressed: 'tucker' or 'cp'")
        set_("geometry", CNNGeometry(tuple(self.spatial), self.in_channels, self.kernel_size, self.stride, self.pool))
        if self.activation == "identity" and (bad := self.geometry.unidentifiable_modes()):
            raise ValueError(
                f"with spatial={self.geometry.spatial}, kernel_size={self.geometry.kernel_size}, "
                f"stride={self.geometry.stride}, pool={self.geometry.pool} the summarized tensor W is not "
                f"identifiable (overlapping patches, l_j p_j > d_j on mode(s) {bad}); use stride = kernel_size "
                f"or a larger input"
            )
        set_("teacher_K", self.R if self.teacher_K is None else self.teacher_K)
        check_ranks(self.geometry, self.family, self.teacher_K, self.R_in, self.R)
        bad = [s for s in self.students if s not in STUDENTS]
        if bad or not self.students:
            raise ValueError(f"unknown student(s) {bad or '(none given)'}; use some of {list(STUDENTS)}")
        set_("students", tuple(self.students))
        set_("K_grid", tuple(sorted({_positive_int(K, "each K of K_grid") for K in self.K_grid})))
        if "compressed" in self.students:
            for K in self.K_grid:
                check_ranks(self.geometry, self.family, K, self.R_in, self.R)
        set_("n_grid", tuple(sorted({_positive_int(n, "each n of n_grid") for n in self.n_grid})))
        for name in ("reps", "n_test", "max_epochs", "patience", "min_steps", "als_iters"):
            _positive_int(getattr(self, name), name)
        if not (isinstance(self.sigma, (int, float)) and self.sigma >= 0):
            raise ValueError(f"sigma must be a number >= 0, got {self.sigma!r}")
        if self.resolved_estimator == "gradient":
            for n in self.n_grid:
                n_val = self.n_validation(n)
                if n <= n_val:
                    raise ValueError(f"n={n} is not larger than its {n_val} validation samples "
                                     f"(validation={self.validation!r}); use larger n or fewer validation samples")
        resolve_device(self.device)  # an unavailable device is an error now, not after the first fit

    @property
    def resolved_estimator(self) -> str:
        """'als' or 'gradient' ('auto' resolved by the activation)."""
        if self.estimator != "auto":
            return self.estimator
        return "als" if self.activation == "identity" else "gradient"

    def n_validation(self, n: int) -> int:
        """Validation samples out of n (gradient training): ``validation`` if an int, else ceil(fraction * n)."""
        v = self.validation
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"validation must be a fraction in (0, 1) or a count >= 1, got {v!r}")
        if isinstance(v, (int, np.integer)):
            if v < 1:
                raise ValueError(f"validation must be a fraction in (0, 1) or a count >= 1, got {v!r}")
            return int(v)
        if not 0 < v < 1:
            raise ValueError(f"validation must be a fraction in (0, 1) or a count >= 1, got {v!r}")
        return math.ceil(v * n)

    def student_spec(self, student: str, K: int) -> dict:
        """Keyword arguments of ``build_cnn`` for a student: family and ranks (dense: R_in = P, R = K)."""
        if student == "dense":
            return dict(family="dense", K=K, R_in=self.in_channels, R=K)
        return dict(family=self.family, K=K, R_in=self.R_in if self.family == "tucker" else None, R=self.R)

    def to_dict(self) -> dict:
        """The parameters as plain values (for records)."""
        d = asdict(self)
        d.pop("geometry", None)
        return d


def _init_normal_(model: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """Every weight ~ N(0, 1/fan_in), drawn from ``generator`` (the teacher's weights)."""
    with torch.no_grad():
        for w in model.parameters():
            fan_in = w[0].numel()
            w.copy_(torch.randn(w.shape, generator=generator, dtype=w.dtype) / math.sqrt(fan_in))
    return model


def make_teacher(config: SimulationConfig, *, dtype=torch.float64, n_reference: int = 8192) -> torch.nn.Sequential:
    """The teacher network of ``config`` on the CPU, seeded by ``config.seed``, with Var f*(X) = 1."""
    gen = torch.Generator().manual_seed(config.seed)
    teacher = build_cnn(config.geometry, config.family, config.teacher_K, R_in=config.R_in, R=config.R,
                        activation=config.activation).to(dtype)
    _init_normal_(teacher, gen)
    with torch.no_grad():
        X = torch.randn(n_reference, config.in_channels, *config.geometry.spatial, generator=gen, dtype=dtype)
        teacher.head.weight /= teacher(X).std()
    return teacher.requires_grad_(False)


def _students(config: SimulationConfig, student: str, K: int, device, dtype) -> dict[str, torch.Tensor]:
    """The weights of ``reps`` students (PyTorch's default init, seeded by (seed, student, K)), stacked:
    every tensor gets a leading repetition dimension (``torch.func.stack_module_state``)."""
    spec = config.student_spec(student, K)
    family, K = spec.pop("family"), spec.pop("K")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed * 1_000_003 + STUDENTS.index(student) * 10_007 + K)
        models = [build_cnn(config.geometry, family, K, activation=config.activation, **spec) for _ in range(config.reps)]
    params, _ = stack_module_state(models)
    return {k: v.detach().to(device=device, dtype=dtype) for k, v in params.items()}


def _sample(cfg: SimulationConfig, teacher: torch.nn.Module, S: torch.Tensor, n: int, gen: torch.Generator,
            dtype, *, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """n Gaussian inputs, kept only as what the students read, and their responses.

    Returns (inputs, y): for the identity activation the flattened design tensors Z (n, P prod(l) prod(p)),
    else the patches (n, P prod(l), prod(m)); y = f*(X), noiseless (float64). Drawn in chunks, so the raw
    inputs never sit in memory all at once.
    """
    g = cfg.geometry
    out, ys = [], []
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        X = torch.randn(m, cfg.in_channels, *g.spatial, generator=gen, device=S.device, dtype=torch.float64)
        with torch.no_grad():
            ys.append(teacher(X).reshape(m))
        P = patches(X, g)
        out.append((P @ S).flatten(1) if cfg.activation == "identity" else P)
    return torch.cat(out).to(dtype), torch.cat(ys)


def run_sample_complexity(config: SimulationConfig, *, progress: bool = True) -> pd.DataFrame:
    """Run the experiment of ``config``; one row per (student, K, n, repetition).

    Columns: student, family, K, R, R_in, K_over_R, n, rep, activation, estimator, sigma, df, naive,
    estimation_error, relative_error, excess_risk, root_excess_risk, best_epoch (gradient training; 0 for als), seconds
    (per repetition: the fit's wall time / reps), device.
    df is the dimension of the student's set of summarized tensors (``degrees_of_freedom``; for ReLU
    students it is the count of their linear counterparts), naive its parameter count.
    """
    from ..progress import progress_bar

    cfg, g = config, config.geometry
    device = resolve_device(cfg.device)
    estimator = cfg.resolved_estimator
    dtype = torch.float64 if estimator == "als" else torch.float32
    teacher = make_teacher(cfg).to(device)
    if cfg.activation == "identity":  # W* is identifiable only there
        W_star = TensorRegression.from_cnn(teacher, (cfg.in_channels, *g.spatial)).weight.reshape(-1).to(dtype)

    gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    shuffle = torch.Generator().manual_seed(cfg.seed + 2)  # minibatch order (gradient training)
    S = pooling_matrix(g, dtype=torch.float64, device=device)
    sample = lambda n: _sample(cfg, teacher, S, n, gen, dtype)  # noqa: E731
    S_train = S.to(dtype)
    b = cfg.reps
    inputs, y = (torch.stack(t) for t in zip(*(sample(cfg.n_grid[-1]) for _ in range(b))))  # (b, n_max, ..)
    y = (y + cfg.sigma * torch.randn(y.shape, generator=gen, device=device, dtype=y.dtype)).to(dtype)
    inputs_test, y_test = sample(cfg.n_test)
    inputs_test, y_test = inputs_test.unsqueeze(0), y_test.to(dtype).unsqueeze(0)  # noiseless: excess risk
    # the patches a network reads, kept as (b, P prod l, n, prod m): network_output's conv is then one matrix
    # product per repetition (samples on dimension 2; ``network_input`` gives network_output its (b, n, ..) view)
    sample_dim = 1 if cfg.activation == "identity" else 2
    if sample_dim == 2:
        inputs, inputs_test = inputs.transpose(1, 2).contiguous(), inputs_test.transpose(1, 2).contiguous()
    network_input = (lambda X: X) if sample_dim == 1 else (lambda X: X.transpose(1, 2))  # noqa: E731

    jobs = [(s, K, n) for s in cfg.students for K in cfg.K_grid for n in cfg.n_grid]
    rows, cache, grams = [], {}, {}
    jobs.sort(key=lambda job: job[2])  # increasing n: the Gram matrices accumulate
    for student, K, n in progress_bar(jobs, desc="sample complexity", enabled=progress):
        spec = cfg.student_spec(student, K)
        family = spec["family"]
        t0 = time.perf_counter()
        epochs = torch.zeros(b, dtype=torch.long)
        if estimator == "als":
            if n not in grams:  # the sufficient statistics, accumulated along the nested samples
                n_prev = max((m for m in grams if m < n), default=0)
                gram, moment = normal_equations(inputs[:, n_prev:n], y[:, n_prev:n])
                if n_prev:
                    gram, moment = gram + grams[n_prev][0], moment + grams[n_prev][1]
                grams[n] = (gram, moment)
            key = (family, summarized_ranks(g, **spec) if family != "cp" else cfg.R, n)
            if key not in cache:  # the estimator depends on the student only through its set of W's
                if family == "cp":
                    W_hat = cp_als(*grams[n], g.summarized_modes, cfg.R, iters=cfg.als_iters)
                else:
                    r = summarized_ranks(g, **spec)
                    W_hat = tucker_als(*grams[n], (g.in_channels, g.kernel_numel, g.pooled_numel), (r[0], r[-1]),
                                       iters=cfg.als_iters)
                cache[key] = W_hat.reshape(b, -1)
            W_hat = cache[key]
            pred_test = inputs_test[0] @ W_hat.T  # (n_test, b)
            excess = ((pred_test.T - y_test) ** 2).mean(1)
        else:
            params = _students(cfg, student, K, device, dtype)
            if cfg.activation == "identity":
                def predict(p, Z):  # <Z, W(p)>, Z (b or 1, n, D)
                    return (Z @ summarized_tensor(family, p, g).reshape(b, -1, 1)).squeeze(-1)
            else:
                def predict(p, X_patches):
                    return network_output(family, cfg.activation, p, g, network_input(X_patches), S_train).squeeze(-1)
            n_val = cfg.n_validation(n)
            train = (inputs.narrow(sample_dim, 0, n - n_val), y[:, : n - n_val])
            val = (inputs.narrow(sample_dim, n - n_val, n_val), y[:, n - n_val: n])
            params, epochs = fit_gradient(predict, params, train, val, lr=cfg.lr, batch_size=cfg.batch_size,
                                          max_epochs=cfg.max_epochs, patience=cfg.patience,
                                          min_steps=cfg.min_steps, generator=shuffle, sample_dim=sample_dim)
            with torch.no_grad():
                excess = ((predict(params, inputs_test) - y_test) ** 2).mean(1)
                W_hat = summarized_tensor(family, params, g).reshape(b, -1)
        seconds = time.perf_counter() - t0
        if cfg.activation == "identity":
            err = (W_hat - W_star).norm(dim=1)
            rel = err / W_star.norm()
        else:
            err = rel = torch.full((b,), float("nan"))
        naive = naive_count(build_cnn(g, **spec))
        df = degrees_of_freedom(g, **spec)
        for rep in range(b):
            rows.append(dict(
                student=student, family=family, K=K, R=spec["R"], R_in=spec["R_in"], K_over_R=K / spec["R"],
                n=n, rep=rep, activation=cfg.activation, estimator=estimator, sigma=cfg.sigma, df=df, naive=naive,
                estimation_error=float(err[rep]), relative_error=float(rel[rep]), excess_risk=float(excess[rep]),
                root_excess_risk=math.sqrt(max(float(excess[rep]), 0.0)), best_epoch=int(epochs[rep]), seconds=seconds / b,
                device=str(device),
            ))
    return pd.DataFrame(rows).sort_values(["student", "K", "n", "rep"], ignore_index=True)
