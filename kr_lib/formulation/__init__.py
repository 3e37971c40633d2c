"""Section 1 of the theory: a linear CNN is a tensor regression y = <Z(X), W> + b~.

* :class:`TensorRegression` (``TensorRegression.from_cnn(model, input_shape)``): design tensor Z, summarized
  weight W, bias b~, per-mode factors S_j and the input-space weight W~ of a linear CNN made of torch modules;
* :mod:`.layers` reads the model, :mod:`.folding` folds its convolutions into one;
* :mod:`.linear_cnn`: the conv -> average pool -> linear model and a small training loop for it.
"""
from .folding import CompositeConv, compose, fold
from .layers import ConvStep, LinearCNN, read_linear_cnn
from .linear_cnn import accuracy, fit_linear_cnn, linear_cnn
from .regression import TensorRegression, input_space_affine_map, pooling_factor, tucker_to_input_space

__all__ = [
    "TensorRegression", "pooling_factor", "tucker_to_input_space", "input_space_affine_map",
    "CompositeConv", "compose", "fold", "ConvStep", "LinearCNN", "read_linear_cnn",
    "linear_cnn", "fit_linear_cnn", "accuracy",
]
