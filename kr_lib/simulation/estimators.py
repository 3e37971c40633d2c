"""Estimators of the simulations, batched over repetitions (a leading dimension b on every tensor).

- ``tucker_als`` / ``cp_als``: the rank-constrained least-squares estimator of the summarized tensor W
  (linear networks), min_W sum_i (y_i - <Z_i, W>)^2 over Tucker (or CP) tensors of given ranks, by
  alternating least squares from a spectral start, on the sufficient statistics Z^T Z, Z^T y
  (``normal_equations``), so the cost of a sweep does not grow with n;
- ``fit_gradient``: gradient training (Adam on minibatches) of a network's weights with early stopping on a
  validation split, for any activation.
"""
from __future__ import annotations

import string
from typing import Callable

import torch

Tensor = torch.Tensor


def normal_equations(Z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The sufficient statistics of least squares on W: the Gram Z^T Z (b, D, D) and Z^T y (b, D).

    Args:
        Z: flattened design tensors (b, n, D); y: responses (b, n).
    """
    return Z.transpose(1, 2) @ Z, (Z.transpose(1, 2) @ y.unsqueeze(-1)).squeeze(-1)


def _quadratic_min(gram: Tensor, moment: Tensor, M: Tensor | None, ridge: float) -> Tensor:
    """argmin_x of x^T M^T gram M x - 2 moment^T M x + lam ||x||^2, batched; M (b, D, k) or None (= I).

    lam = ridge * the mean diagonal of M^T gram M: a tiny ridge that keeps the solve defined when the
    block has more unknowns than samples (x is then near the minimum-norm fit).
    """
    H = gram if M is None else M.transpose(1, 2) @ gram @ M
    rhs = moment if M is None else (M.transpose(1, 2) @ moment.unsqueeze(-1)).squeeze(-1)
    lam = ridge * H.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(torch.finfo(H.dtype).tiny)
    H = H + lam[:, None, None] * torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
    return torch.linalg.solve(H, rhs.unsqueeze(-1)).squeeze(-1)


def _leading_left_singular(M: Tensor, r: int) -> Tensor:
    """The r leading left singular vectors of each matrix of the batch M (b, m, k): (b, m, r)."""
    U, _, _ = torch.linalg.svd(M, full_matrices=False)
    return U[..., :r]


def _relative_change(new: Tensor, old: Tensor) -> Tensor:
    return (new - old).flatten(1).norm(dim=1) / new.flatten(1).norm(dim=1).clamp_min(1e-30)


def tucker_als(gram: Tensor, moment: Tensor, dims: tuple[int, int, int], ranks: tuple[int, int], *,
               iters: int = 30, ridge: float = 1e-8, tol: float = 1e-5) -> Tensor:
    """Rank-constrained least squares over W = G x_1 U x_3 V, W of shape (P, L, T), Tucker ranks (r1, L, r3).

    The middle mode (the kernel's spatial positions, L = prod(l)) keeps full rank, as in book section 3, :ref:`sec-df`.
    The objective ||y - Z vec(W)||^2 is read from its sufficient statistics (``normal_equations``).
    Start: the truncated HOSVD (``torch.linalg.svd`` of the unfoldings) of the ridge solution. Then each of
    G, U, V in turn is the exact least-squares solution given the other two (W is linear in each block:
    W = M_block x); U and V are re-orthonormalized by QR, the triangular factor moved into G. A rank equal
    to its mode's size is not constrained (its factor stays the identity). Stops after ``iters`` sweeps or
    when W moves by less than ``tol`` (relative) in every repetition.

    Args:
        gram: Z^T Z, (b, D, D) with D = P L T; moment: Z^T y, (b, D); dims: (P, L, T); ranks: (r1, r3).
    Returns:
        W^, shape (b, P, L, T).
    """
    P, L, T = dims
    r1, r3 = ranks
    b = gram.shape[0]
    kw = dict(dtype=gram.dtype, device=gram.device)
    W = _quadratic_min(gram, moment, None, ridge).reshape(b, P, L, T)
    if r1 >= P and r3 >= T:
        return W
    eye_L = torch.eye(L, **kw)
    U = _leading_left_singular(W.reshape(b, P, L * T), r1) if r1 < P else torch.eye(P, **kw).expand(b, P, P)
    V = _leading_left_singular(W.permute(0, 3, 1, 2).reshape(b, T, P * L), r3) if r3 < T \
        else torch.eye(T, **kw).expand(b, T, T)
    for _ in range(iters):
        M = torch.einsum("bcs,LM,btq->bcLtsMq", U, eye_L, V).reshape(b, P * L * T, r1 * L * r3)
        G = _quadratic_min(gram, moment, M, ridge).reshape(b, r1, L, r3)
        if r1 < P:
            Gt = torch.einsum("bsLq,btq->bsLt", G, V)
            M = torch.einsum("cd,bsLt->bcLtds", torch.eye(P, **kw), Gt).reshape(b, P * L * T, P * r1)
            U, Ru = torch.linalg.qr(_quadratic_min(gram, moment, M, ridge).reshape(b, P, r1))
            G = torch.einsum("bij,bjLq->biLq", Ru, G)
        if r3 < T:
            Gu = torch.einsum("bsLq,bcs->bcLq", G, U)
            M = torch.einsum("bcLq,tu->bcLtuq", Gu, torch.eye(T, **kw)).reshape(b, P * L * T, T * r3)
            V, Rv = torch.linalg.qr(_quadratic_min(gram, moment, M, ridge).reshape(b, T, r3))
            G = torch.einsum("bsLq,bjq->bsLj", G, Rv)
        W_new = torch.einsum("bsLq,bcs,btq->bcLt", G, U, V)
        done = bool((_relative_change(W_new, W) < tol).all())
        W = W_new
        if done:
            break
    return W


def cp_als(gram: Tensor, moment: Tensor, dims: tuple[int, ...], rank: int, *, iters: int = 50,
           ridge: float = 1e-8, tol: float = 1e-5) -> Tensor:
    """Rank-constrained least squares over CP tensors W = sum_r a^1_r o ... o a^M_r of rank ``rank``.

    Start: TensorLy's ``parafac`` (torch backend, in a thread-local ``tensorly.backend_context``) of the ridge
    solution; then each factor in turn is the exact least-squares solution given the others.

    Args:
        gram: Z^T Z, (b, D, D) with D = prod(dims); moment: Z^T y, (b, D); dims: the modes (n_1, ..., n_M).
    Returns:
        W^, shape (b, n_1, ..., n_M).
    """
    import tensorly as tl
    from tensorly.decomposition import parafac

    b, M = gram.shape[0], len(dims)
    W = _quadratic_min(gram, moment, None, ridge).reshape(b, *dims)
    with tl.backend_context("pytorch", local_threadsafe=True):  # this thread only: others keep their backend
        factors = [torch.stack(f) for f in zip(*(
            parafac(W[i], rank, init="svd", n_iter_max=100).factors for i in range(b)))]
    letters = string.ascii_lowercase[2:2 + M]  # one letter per mode; 'b' is the batch, 'y' and 'z' below
    for _ in range(iters):
        for j in range(M):  # W = M_j vec(a^j): the identity on mode j, the other factors elsewhere
            operands = [torch.eye(dims[j], dtype=gram.dtype, device=gram.device) if k == j else factors[k]
                        for k in range(M)]
            subs = [f"{letters[k]}y" if k == j else f"b{letters[k]}z" for k in range(M)]
            Mj = torch.einsum(",".join(subs) + f"->b{letters}yz", *operands).reshape(b, -1, dims[j] * rank)
            factors[j] = _quadratic_min(gram, moment, Mj, ridge).reshape(b, dims[j], rank)
        W_new = torch.einsum(",".join(f"b{c}z" for c in letters) + f"->b{letters}", *factors)
        done = bool((_relative_change(W_new, W) < tol).all())
        W = W_new
        if done:
            break
    return W


def fit_gradient(predict: Callable[[dict, Tensor], Tensor], params: dict[str, Tensor],
                 train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], *, lr: float = 3e-3,
                 batch_size: int | None = 64, max_epochs: int = 200, patience: int = 10, min_steps: int = 500,
                 generator: torch.Generator | None = None, sample_dim: int = 1) -> tuple[dict[str, Tensor], Tensor]:
    """Adam on the mean squared error, each repetition its own problem, with early stopping.

    The loss is the sum over repetitions of each one's minibatch MSE, so (Adam being elementwise) the
    repetitions do not interact; they share the minibatch positions (drawn from ``generator``), not the
    data. After every epoch the validation MSE is taken; each repetition keeps the weights of its best
    validation loss, and training stops when no repetition has improved for ``patience`` epochs (but not
    before ``min_steps`` optimizer steps: small initial weights start on a plateau, which at small n lasts
    more than ``patience`` short epochs), or after ``max_epochs``.

    Args:
        predict: (params, inputs) -> predictions (b, n), batched over repetitions (e.g. ``network_output`` of stacked weights).
        params: stacked weights, each (b, ...); trained in place.
        train, val: (inputs, y) with y (b, n) and inputs (b, n, ...), or the n samples on dimension
            ``sample_dim`` of the inputs (minibatches are drawn along it, and ``predict`` gets them so).
        batch_size: minibatch size; None for full-batch steps.
    Returns:
        (the best weights, detached; for each repetition the epoch of its best validation loss, (b,)).
    """
    (X_tr, y_tr), (X_val, y_val) = train, val
    n_tr = y_tr.shape[1]
    batch_size = n_tr if batch_size is None else min(batch_size, n_tr)
    leaves = [p.requires_grad_(True) for p in params.values()]
    opt = torch.optim.Adam(leaves, lr=lr)
    best = {k: v.detach().clone() for k, v in params.items()}
    best_loss = torch.full((y_tr.shape[0],), float("inf"), device=y_tr.device)
    stale = torch.zeros_like(best_loss)
    best_epoch = torch.zeros(y_tr.shape[0], dtype=torch.long, device=y_tr.device)
    steps = 0
    for epoch in range(1, max_epochs + 1):
        order = torch.randperm(n_tr, generator=generator, device="cpu").to(y_tr.device)
        for start in range(0, n_tr, batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            batch = X_tr.index_select(sample_dim, idx)
            ((predict(params, batch) - y_tr[:, idx]) ** 2).mean(1).sum().backward()
            opt.step()
            steps += 1
        with torch.no_grad():
            val_loss = ((predict(params, X_val) - y_val) ** 2).mean(1)
            better = val_loss < best_loss
            best_loss = torch.where(better, val_loss, best_loss)
            stale = torch.where(better, torch.zeros_like(stale), stale + 1)
            best_epoch = torch.where(better, epoch, best_epoch)
            for k, v in params.items():
                mask = better.reshape(-1, *([1] * (v.dim() - 1)))
                best[k] = torch.where(mask, v.detach(), best[k])
        if steps >= min_steps and bool((stale >= patience).all()):
            break
    for p in leaves:
        p.requires_grad_(False)
    return best, best_epoch
