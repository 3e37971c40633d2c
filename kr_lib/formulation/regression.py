"""A linear CNN is a tensor regression (section 1 of the theory).

For convolution (kernel A: K x P x l_1..l_N, bias a, stride s), average pooling over windows q and a
fully connected layer (B: O x K x p_1..p_N, bias b), with identity activations,

    y_o = < Z(X), W_o > + b~_o,
    Z(X)[c, u, t] = mean_{i in window t} Xpad[c, s*i + u]           design tensor  (P, l.., p..)
    W[o, c, u, t] = sum_k A[k, c, u] B[o, k, t]                     weight         (O, P, l.., p..)
    b~_o          = b_o + sum_{k, t} B[o, k, t] a_k

and, mode by mode, y_o = < X, W~_o > + b~_o with W~_o = W_o x_1 S_1 ... x_N S_N, where
S_j[x, (u, t)] = (1/q_j) #{i in window t : s_j i + u - pad_j = x} (d_j x l_j p_j) depends on stride,
padding and pooling only. Several layers are first folded into one convolution (:mod:`.folding`).
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorly as tl
import torch
import torch.nn.functional as F
from tensorly.tenalg import multi_mode_dot
from torch import nn

from ..composite import pad_arg
from .folding import fold
from .layers import read_linear_cnn


def pooling_factor(d: int, kernel: int, stride: int, window: int, pooled: int, pad_left: int,
                   dtype=torch.float64, device=None) -> torch.Tensor:
    """S_j of one spatial mode, shape (d, kernel * pooled), column index u * pooled + t.

    S_j[x, (u, t)] = (1/q) #{r in 0..q-1 : stride * (q t + r) + u - pad_left = x}: how much input position x
    (of the unpadded input) contributes to tap u of the kernel in pooling window t. Positions in the
    zero padding are no input, so their rows are dropped.
    """
    u = torch.arange(kernel, device=device).view(kernel, 1, 1)
    t = torch.arange(pooled, device=device).view(1, pooled, 1)
    r = torch.arange(window, device=device).view(1, 1, window)
    x = stride * (window * t + r) + u - pad_left  # (l, p, q): the input position each (u, t, r) reads
    hits = (x.unsqueeze(-1) == torch.arange(d, device=device)).to(dtype).sum(dim=2) / window  # (l, p, d)
    return hits.permute(2, 0, 1).reshape(d, kernel * pooled)


def input_space_affine_map(model: nn.Module, input_shape, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(J, y0)`` with ``model(x) = <x, J_o> + y0_o`` for a linear model.

    ``J`` has shape ``(O, *input_shape)`` and comes from autograd; ``y0 = model(0)``.
    """
    def one(x):
        return model(x.unsqueeze(0)).squeeze(0)

    x0 = like.new_zeros(input_shape)
    with torch.no_grad():
        y0 = one(x0)
    return torch.func.jacrev(one)(x0).detach(), y0


@dataclass(frozen=True, eq=False)
class TensorRegression:
    """A linear CNN written as the tensor regression y = <Z(X), W> + b~ (+ a border term, see below).

    Shapes (N spatial modes, P input channels, O outputs, K kernels of the folded convolution):

    * ``kernel`` A (K, P, l..), ``kernel_bias`` a (K,): all convolutions, pools and BatchNorms before the
      final pooling folded into one convolution with ``stride`` s and input padding ``pad_left``/``pad_right``;
    * ``window`` q, ``conv_size`` m, ``pooled_size`` p = floor(m / q) of the final pooling (q = 1 when none);
    * ``fc_weight`` B (O, K, p..), ``fc_bias`` b (O,): the fully connected layer(s);
    * ``weight`` W (O, P, l.., p..) = A contracted with B over K; ``bias`` b~ (O,);
    * ``factors`` S_j (d_j, l_j p_j); ``effective_weight`` W~ (O, P, d..) on the unpadded input;
    * ``border_weight`` E (O, P, d..): zero when the trunk is exactly one convolution
      (``single_convolution``). Zero padding in a layer after the first cuts kernel taps at the border,
      which no single convolution does; the model is then y = <Z(X), W> + <X, E> + b~ exactly, with W
      the convolution that the layers make away from the border, E the difference of the model's
      input-space weight (by autograd) and W x_1 S_1 ... x_N S_N, and b~ = model(0).

    Everything is a snapshot of the model's weights (detached), on the model's device and dtype.
    """

    input_shape: tuple[int, ...]
    kernel: torch.Tensor
    kernel_bias: torch.Tensor
    stride: tuple[int, ...]
    pad_left: tuple[int, ...]
    pad_right: tuple[int, ...]
    window: tuple[int, ...]
    conv_size: tuple[int, ...]
    pooled_size: tuple[int, ...]
    fc_weight: torch.Tensor
    fc_bias: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    factors: tuple[torch.Tensor, ...]
    effective_weight: torch.Tensor
    border_weight: torch.Tensor
    single_convolution: bool

    @classmethod
    def from_cnn(cls, model: nn.Module, input_shape) -> "TensorRegression":
        """Write the linear CNN ``model`` (an ``nn.Sequential``) for inputs (P, d_1..d_N) as a tensor regression.

        Raises TypeError naming the module for anything not linear (ReLU, MaxPool, Dropout or BatchNorm in
        training mode, ...), ValueError naming the culprit for pooling windows that overlap or do not divide,
        shapes that do not fit, and other settings the form does not cover.
        """
        cnn = read_linear_cnn(model, input_shape)
        like = cnn.fc_weight
        n = len(cnn.conv_size)
        conv = fold(cnn.steps, cnn.input_shape[0], n, like)
        O, K, P = cnn.fc_weight.shape[0], conv.kernel.shape[0], cnn.input_shape[0]
        L = tuple(conv.kernel.shape[2:])
        # W = A x_K B: the kernel and the fully connected weights contracted over the K channels
        weight = torch.einsum("kcu,okt->ocut", conv.kernel.reshape(K, P, -1), cnn.fc_weight.reshape(O, K, -1))
        weight = weight.reshape(O, P, *L, *cnn.pooled_size)
        bias = cnn.fc_bias + cnn.fc_weight.reshape(O, K, -1).sum(-1) @ conv.bias
        factors = tuple(
            pooling_factor(d, l, s, q, p, a, dtype=like.dtype, device=like.device)
            for d, l, s, q, p, a in zip(cnn.input_shape[1:], L, conv.stride, cnn.window, cnn.pooled_size,
                                        conv.pad_left))
        tucker = tucker_to_input_space(weight, factors)
        if conv.single_convolution:
            border = torch.zeros_like(tucker)
        else:
            exact, bias = input_space_affine_map(model, cnn.input_shape, like)
            border = exact - tucker
        return cls(cnn.input_shape, conv.kernel, conv.bias, conv.stride, conv.pad_left, conv.pad_right,
                   cnn.window, cnn.conv_size, cnn.pooled_size, cnn.fc_weight, cnn.fc_bias, weight, bias,
                   factors, tucker + border, border, conv.single_convolution)

    def __repr__(self) -> str:
        return (f"TensorRegression(P={self.input_shape[0]}, d={self.input_shape[1:]}, K={self.num_kernels}, "
                f"l={self.kernel_size}, s={self.stride}, q={self.window}, p={self.pooled_size}, "
                f"O={self.num_outputs}, single_convolution={self.single_convolution})")

    @property
    def kernel_size(self) -> tuple[int, ...]:
        """l: the size of the folded kernel per spatial mode."""
        return tuple(self.kernel.shape[2:])

    @property
    def num_kernels(self) -> int:
        """K: the output channels of the folded convolution (contracted away in ``weight``)."""
        return self.kernel.shape[0]

    @property
    def num_outputs(self) -> int:
        """O: the outputs of the fully connected layer."""
        return self.fc_weight.shape[0]

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != len(self.input_shape) + 1 \
                or tuple(x.shape[1:]) != self.input_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (n, {', '.join(map(str, self.input_shape))}), got {got}")
        return x

    def design(self, x: torch.Tensor) -> torch.Tensor:
        """The design tensor Z(x), shape (n, P, l_1..l_N, p_1..p_N): patches of the padded input, averaged
        over each pooling window. ``x`` is (n, P, d_1..d_N), on the model's device."""
        x = self._check_input(x)
        n = len(self.stride)
        patches = F.pad(x, pad_arg(self.pad_left, self.pad_right))
        for j in range(n):  # (n, P, m.., l..): patches[..., i, u] = xpad[s i + u]
            patches = patches.unfold(2 + j, self.kernel_size[j], self.stride[j])
        for j in range(n):  # (n, P, p.., l.., q..): positions grouped by pooling window (the rest dropped)
            whole = self.pooled_size[j] * self.window[j]
            patches = patches.narrow(2 + j, 0, whole).unfold(2 + j, self.window[j], self.window[j])
        z = patches.mean(dim=tuple(range(2 + 2 * n, 2 + 3 * n)))  # (n, P, p.., l..)
        return z.permute(0, 1, *range(2 + n, 2 + 2 * n), *range(2, 2 + n))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """y = <Z(x), W> + b~ (+ <x, E> when the trunk is not a single convolution), shape (n, O)."""
        z = self.design(x)
        y = z.flatten(1) @ self.weight.flatten(1).T + self.bias
        if not self.single_convolution:
            y = y + x.flatten(1) @ self.border_weight.flatten(1).T
        return y


def tucker_to_input_space(weight: torch.Tensor, factors) -> torch.Tensor:
    """W x_1 S_1 ... x_N S_N: weight (O, P, l.., p..) and S_j (d_j, l_j p_j) -> (O, P, d_1..d_N)."""
    n = len(factors)
    O, P = weight.shape[:2]
    L, p = weight.shape[2:2 + n], weight.shape[2 + n:]
    paired = weight.permute(0, 1, *[i for j in range(n) for i in (2 + j, 2 + n + j)])  # (O, P, l1, p1, l2, p2..)
    core = paired.reshape(O, P, *[L[j] * p[j] for j in range(n)])
    with tl.backend_context("pytorch", local_threadsafe=True):
        return multi_mode_dot(core, list(factors), modes=list(range(2, 2 + n)))
