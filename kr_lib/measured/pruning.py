"""The pruning test of a block: what the network loses when a block's output is cut to r directions.

**Principal projection.** After the block, each K-vector y of its output (one per sample and position) is
replaced by ``mu + U_r U_r^T (y - mu)``: the affine projection onto the top r principal directions of the
block's output (``mu`` and the eigenvectors ``U`` of its covariance, estimated on training data; nothing is
retrained). At r = K it is the identity up to float rounding. One forward hook replaces the block's output
by the G projections of a rank grid stacked along the batch, so the part of the network before the block
runs once per batch for all G ranks (what follows the block must see only the block's output: a
sequential trunk, as ``kr_lib.models.KRNet``; a model where it does not raises).

**Channel removal** (Torch-Pruning, optional): the block's K - r output channels of least group L2
magnitude (``torch_pruning.importance.MagnitudeImportance`` over every layer coupled to them: the closing
conv, its BatchNorm, the shortcut, the next layer's inputs) are removed from what the next layer receives
(set to zero), also without retraining, in the same pass as the projections.
"""
from __future__ import annotations

import copy

import torch

__all__ = ["rank_grid", "check_ranks", "principal_directions", "PrunedOutputs", "torch_pruning_available",
           "magnitude_order"]


def rank_grid(K: int, R: int) -> list[int]:
    """The ranks r < K tested for a block, descending: K halved again and again (K/2, K/4, ..., down to 1, whole
    numbers), with R and R/2 added when below K. On this grid the measured ratio K / r* is a power of two, as
    the K/R of the book's networks are, and a block costs about log2 K test passes (every power of two below
    K and the multiples of R together cost up to twice as many). r = K is not in it: the projection onto all K
    directions is the identity (up to float rounding: ``tests/test_measured.py`` runs it), so its accuracy is
    the unpruned one."""
    K, R = int(K), int(R)
    grid = {R, max(R // 2, 1), 1}
    r = K // 2
    while r >= 1:
        grid.add(r)
        r //= 2
    return sorted((r for r in grid if r < K), reverse=True) or [K]


def check_ranks(ranks, blocks) -> list[int]:
    """``ranks`` as a descending list of positive ints, each at most every block's K; ``ValueError`` naming the
    block otherwise. ``blocks``: (path, K) pairs."""
    if isinstance(ranks, (str, bytes)) or not hasattr(ranks, "__iter__"):
        raise ValueError(f"ranks must be a list of positive whole numbers, got {ranks!r}")
    values = list(ranks)
    bad = [v for v in values if isinstance(v, bool) or not hasattr(v, "__index__") and not
           (isinstance(v, float) and v.is_integer()) or int(v) < 1]
    if not values or bad:
        raise ValueError(f"ranks must be positive whole numbers, got {ranks!r}")
    out = sorted({int(v) for v in values}, reverse=True)
    for path, K in blocks:
        if out[0] > K:
            raise ValueError(f"r = {out[0]} is larger than K = {K} of block {path or '<root>'}: a block's output "
                             f"has only K directions; ask for r <= {K} (or leave ranks unset for each block's grid)")
    return out


def principal_directions(mean: torch.Tensor, covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, U)``: the mean (K,) and the eigenvectors of the covariance as columns (K, K), by descending
    eigenvalue, both float64 on the CPU."""
    lam, vec = torch.linalg.eigh(covariance.to("cpu", torch.float64))
    order = torch.argsort(lam, descending=True)
    return mean.to("cpu", torch.float64), vec[:, order]


class PrunedOutputs:
    """A forward hook that replaces a block's output y (n, K, d..) by G pruned versions stacked along the batch,
    (G n, K, d..), version g in rows g n .. (g + 1) n: first its projections onto the top r principal
    directions for every r of ``ranks``, then ``y`` with the channels outside each of ``keep_channels``
    (index lists) set to zero -- removed from what the next layer receives. Float32 on the output's device."""

    def __init__(self, mean: torch.Tensor, directions: torch.Tensor, ranks: list[int], keep_channels=()):
        self.ranks = list(ranks)
        self.mean = mean.to(torch.float32)
        self.directions = directions.to(torch.float32)
        K = self.mean.numel()
        self.masks = torch.zeros(len(keep_channels), K)
        for i, keep in enumerate(keep_channels):
            self.masks[i, list(keep)] = 1.0

    @property
    def versions(self) -> int:
        return len(self.ranks) + len(self.masks)

    def to(self, device) -> "PrunedOutputs":
        self.mean, self.directions, self.masks = self.mean.to(device), self.directions.to(device), self.masks.to(device)
        return self

    def project(self, y: torch.Tensor) -> torch.Tensor:
        """(n, K, d..) -> (G n, K, d..), each version written in place into one preallocated tensor (no
        concatenation copy): the principal coordinates z = U^T (y - mu) once, then mu + U_r z_r for each r.
        A channels-last ``y`` gives a channels-last result (the layout the next conv runs fastest in)."""
        n, K, rest = y.shape[0], y.shape[1], y.shape[2:]
        if y.ndim in (4, 5) and not y.is_contiguous() and y.movedim(1, -1).is_contiguous():
            flat = y.movedim(1, -1).reshape(n, -1, K)  # (n, D, K): a view of the channels-last layout
            mu = self.mean.view(1, 1, K)
            z = torch.matmul(flat - mu, self.directions)  # coordinates in the principal basis (n, D, K)
            out = flat.new_empty((self.versions, n, flat.shape[1], K))
            for g, r in enumerate(self.ranks):
                torch.matmul(z[..., :r], self.directions[:, :r].T, out=out[g])
                out[g] += mu
            for i, mask in enumerate(self.masks):
                torch.mul(flat, mask.view(1, 1, K), out=out[len(self.ranks) + i])
            return out.view(self.versions * n, *rest, K).movedim(-1, 1)
        flat = y.reshape(n, K, -1)  # (n, K, D): D positions
        mu = self.mean.view(1, K, 1)
        z = torch.matmul(self.directions.T, flat - mu)  # coordinates in the principal basis (n, K, D)
        out = flat.new_empty((self.versions, n, K, flat.shape[2]))
        for g, r in enumerate(self.ranks):
            torch.matmul(self.directions[:, :r], z[:, :r], out=out[g])
            out[g] += mu
        for i, mask in enumerate(self.masks):
            torch.mul(flat, mask.view(1, K, 1), out=out[len(self.ranks) + i])
        return out.view(self.versions * n, K, *rest)

    def __call__(self, module, args, output):
        return self.project(output)


def torch_pruning_available() -> bool:
    """True when the optional dependency Torch-Pruning (``pip install torch-pruning``) imports."""
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        return False
    return True


def magnitude_order(model: torch.nn.Module, closing_conv: str, example_input: torch.Tensor) -> list[int]:
    """The output channels of the conv at path ``closing_conv``, most important first, by Torch-Pruning's group
    L2 magnitude importance (``MagnitudeImportance(p=2)``: the mean over every layer coupled to the channel --
    the conv, its BatchNorm, the shortcut, the next layer's inputs). Traced on a copy; ``model`` is untouched."""
    import torch_pruning as tp

    copy_ = copy.deepcopy(model).eval()
    conv = copy_.get_submodule(closing_conv)
    with torch.enable_grad():  # the dependency graph is traced through autograd
        graph = tp.DependencyGraph().build_dependency(copy_, example_inputs=example_input, verbose=False)
    group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels)))
    scores = tp.importance.MagnitudeImportance(p=2)(group)
    return torch.argsort(scores.detach().cpu(), descending=True, stable=True).tolist()
