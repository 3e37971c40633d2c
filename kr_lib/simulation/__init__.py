"""Teacher-student sample-complexity simulations (book section 3, :ref:`sec-df`).

* :mod:`.geometry` -- the sizes of conv -> pool -> linear head networks, im2col patches, the pooling matrix;
* :mod:`.models` -- teacher and student networks (Tucker-2, CP, dense kernels) as torch modules, their
  summarized tensor W, its ranks and degrees of freedom;
* :mod:`.estimators` -- rank-constrained least squares (ALS) and gradient training with early stopping,
  batched over repetitions;
* :mod:`.experiment` -- ``SimulationConfig`` and ``run_sample_complexity`` (a tidy DataFrame);
* :mod:`.analysis` -- slopes, the n needed to reach a target error, the sqrt(df/n) reference.
"""
from .analysis import (describe_k_ordering, k_ordering, loglog_slopes, n_to_reach, reachable_target,
                       reference_constant, summarize)
from .estimators import cp_als, fit_gradient, normal_equations, tucker_als
from .experiment import ESTIMATORS, METRICS, STUDENTS, SimulationConfig, make_teacher, run_sample_complexity
from .geometry import CNNGeometry, patches, pooling_matrix
from .models import (
    ACTIVATIONS, FAMILIES, build_cnn, composite_kernel, degrees_of_freedom, network_output, summarized_ranks,
    summarized_tensor,
)

__all__ = [
    "SimulationConfig", "run_sample_complexity", "make_teacher", "STUDENTS", "ESTIMATORS", "METRICS",
    "CNNGeometry", "patches", "pooling_matrix",
    "ACTIVATIONS", "FAMILIES", "build_cnn", "composite_kernel", "summarized_tensor", "summarized_ranks",
    "degrees_of_freedom", "network_output",
    "tucker_als", "cp_als", "fit_gradient", "normal_equations",
    "summarize", "loglog_slopes", "k_ordering", "describe_k_ordering", "n_to_reach", "reachable_target", "reference_constant",
]
