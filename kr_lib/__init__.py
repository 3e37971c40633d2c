"""kr_lib: the K/R ratio and the statistics of compressed CNNs, on PyTorch.

The public names are imported lazily (``kr_lib.kr_report`` loads ``kr_lib.redundancy`` on first use),
so ``import kr_lib`` stays cheap and the command line starts fast.
"""
from __future__ import annotations

import importlib

from .provenance import source_hash, stamp

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "TensorRegression": "formulation",
    "decompose_conv": "decompose",
    "reconstructed_conv": "decompose",
    "fastest_layer": "fastpath",
    "make_block": "blocks",
    "DenseBlock": "blocks",
    "BottleneckBlock": "blocks",
    "ResNeXtBlock": "blocks",
    "InvertedResidualBlock": "blocks",
    "SeparableBlock": "blocks",
    "R2Plus1DBlock": "blocks",
    "tucker_dof": "complexity",
    "cp_dof": "complexity",
    "naive_count": "complexity",
    "flop_count": "complexity",
    "compressed_conv_df": "complexity",
    "kr_ratio": "redundancy",
    "kr_report": "redundancy",
    "resolve_device": "device",
    "SimulationConfig": "simulation",
    "run_sample_complexity": "simulation",
    "build_model": "models",
    "get_dataset": "data",
}

__all__ = ["__version__", "source_hash", "stamp", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kr_lib' has no attribute {name!r}")
