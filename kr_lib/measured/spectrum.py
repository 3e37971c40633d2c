"""The spectrum of a block's K output channels, accumulated in one streaming pass, and the numbers read from it.

Every position of every sample gives one vector of K channel values (book section 4, :ref:`sec-kr`: the K outputs of
a block). Over N such vectors the centred data matrix X (N x K) has the covariance C = X^T X / (N - 1),
eigenvalues lambda_1 >= ... >= lambda_K and singular values sigma_i = sqrt((N - 1) lambda_i). C is summed
batch by batch in float64 (:class:`StreamingCovariance`): memory is K x K, whatever N.

    acc = StreamingCovariance(K); acc.update(batch)     # batch (n, K, d_1..d_N), any number of times
    lam = eigenvalues(acc.covariance())                  # (K,), descending, >= 0
    effective_rank(np.sqrt(lam)), components(lam, 0.99), stable_rank(np.sqrt(lam))
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["StreamingCovariance", "eigenvalues", "effective_rank", "components", "stable_rank", "numerical_rank",
           "NUMERICAL_RANK_RTOL"]

#: A direction counts in the numerical rank when its singular value exceeds this fraction of the largest.
#: Float32 activations carry a relative rounding of about 1e-7, so a direction that exact arithmetic would
#: give zero variance keeps a singular value near 1e-7 sigma_1; 1e-5 sits well above that and well below
#: any direction a trained network uses.
NUMERICAL_RANK_RTOL = 1e-5


def _accumulator_device(device: torch.device) -> torch.device:
    return torch.device("cpu") if device.type == "mps" else device  # MPS has no float64


class StreamingCovariance:
    """The K x K covariance of channel vectors, summed over batches in float64 on the activations' device.

    ``update(a)`` takes activations ``(n, K, d_1..d_N)`` (or ``(n, K)``): each of the n d_1...d_N positions is
    one vector. Sums are taken around a *shift* (the first batch's mean), which keeps float64's digits
    when the mean is large against the spread; ``mean()`` and ``covariance()`` (divisor N - 1) undo it.
    """

    def __init__(self, K: int):
        self.K = int(K)
        self.count = 0
        self._shift = self._sum = self._outer = None

    def update(self, a: torch.Tensor) -> None:
        if a.ndim < 2 or a.shape[1] != self.K:
            raise ValueError(f"expected activations (n, {self.K}, ...), got shape {tuple(a.shape)}")
        device = _accumulator_device(a.device)
        if a.ndim in (4, 5) and not a.is_contiguous() and a.movedim(1, -1).is_contiguous():
            # channels-last activations: the (N, K) matrix is a view; one (K, N) @ (N, K) product
            x = a.detach().movedim(1, -1).reshape(-1, self.K).to(device=device, dtype=torch.float64)
            if self._shift is None:
                self._start(x.mean(dim=0), device)
            x = x - self._shift
            self._sum += x.sum(dim=0)
            self._outer += x.T @ x
            self.count += x.shape[0]
            return
        x = a.detach().reshape(a.shape[0], self.K, -1).to(device=device, dtype=torch.float64)  # (n, K, D), D positions
        if self._shift is None:
            self._start(x.mean(dim=(0, 2)), device)
        x = x - self._shift.view(1, self.K, 1)
        self._sum += x.sum(dim=(0, 2))
        if x.shape[2] >= 256:  # many positions: per-sample products (n, K, D) @ (n, D, K), no transposed copy
            self._outer += torch.matmul(x, x.transpose(1, 2)).sum(dim=0)
        else:  # few positions: one (K, n D) @ (n D, K) product is faster than n small ones
            flat = x.transpose(0, 1).reshape(self.K, -1)
            self._outer += flat @ flat.T
        self.count += x.shape[0] * x.shape[2]

    def _start(self, shift: torch.Tensor, device: torch.device) -> None:
        self._shift = shift
        self._sum = torch.zeros(self.K, dtype=torch.float64, device=device)
        self._outer = torch.zeros(self.K, self.K, dtype=torch.float64, device=device)

    def mean(self) -> torch.Tensor:
        """(K,) mean vector, float64."""
        self._check()
        return self._shift + self._sum / self.count

    def covariance(self) -> torch.Tensor:
        """(K, K) covariance, float64, divisor N - 1."""
        self._check()
        if self.count < 2:
            raise ValueError("a covariance needs at least 2 vectors")
        centred = self._outer - torch.outer(self._sum, self._sum) / self.count
        return (centred + centred.T) / (2 * (self.count - 1))  # symmetric to the last bit

    def _check(self):
        if self._shift is None:
            raise ValueError("no activations were accumulated (the block was never called)")


def eigenvalues(covariance: torch.Tensor) -> np.ndarray:
    """Eigenvalues of a symmetric K x K matrix, descending, negative rounding clipped to 0: (K,) float64."""
    lam = torch.linalg.eigvalsh(covariance.to("cpu", torch.float64)).numpy()[::-1]
    return np.clip(lam, 0.0, None).copy()


def effective_rank(singular_values) -> float:
    """Roy & Vetterli (2007): exp of the Shannon entropy of p_i = sigma_i / sum_j sigma_j (0 log 0 = 0).

    Between 1 (one direction) and the number of nonzero values (all equal). Give it *singular values*
    (for a covariance: the square roots of its eigenvalues), as its authors define it."""
    s = np.asarray(singular_values, dtype=np.float64)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def components(eigenvalues_, fraction: float) -> int:
    """The fewest leading components that hold ``fraction`` of the variance: the smallest r with
    lambda_1 + ... + lambda_r >= fraction (lambda_1 + ... + lambda_K)."""
    lam = np.sort(np.asarray(eigenvalues_, dtype=np.float64))[::-1]
    total = lam.sum()
    if total <= 0:
        return 0
    cumulative = np.cumsum(lam) / total
    return int(min(np.searchsorted(cumulative, fraction - 1e-12) + 1, len(lam)))


def stable_rank(singular_values) -> float:
    """||A||_F^2 / ||A||_2^2 = sum sigma_i^2 / sigma_1^2 of the matrix whose singular values are given
    (for the centred activations X: sum lambda_i / lambda_1)."""
    s = np.asarray(singular_values, dtype=np.float64)
    top = s.max(initial=0.0)
    return float((s ** 2).sum() / top ** 2) if top > 0 else 0.0


def numerical_rank(singular_values, rtol: float = NUMERICAL_RANK_RTOL) -> int:
    """How many singular values exceed ``rtol`` times the largest (see :data:`NUMERICAL_RANK_RTOL`)."""
    s = np.asarray(singular_values, dtype=np.float64)
    top = s.max(initial=0.0)
    return int((s > rtol * top).sum()) if top > 0 else 0
