"""Datasets by name (``get_dataset``, ``dataset_info``, ``DATASETS``). ``fashion_mnist`` is the offline default."""
from .augment import prepare_batch
from .base import DatasetInfo, TensorData
from .fashion_mnist import FASHION_MNIST_CLASSES, fashion_mnist_tensors, find_fashion_mnist
from .registry import DATASETS, check_data, dataset_info, get_dataset, load_splits
from .ucf101 import UCF101Clips

__all__ = [
    "DATASETS", "DatasetInfo", "FASHION_MNIST_CLASSES", "TensorData", "UCF101Clips", "check_data", "dataset_info",
    "fashion_mnist_tensors", "find_fashion_mnist", "get_dataset", "load_splits", "prepare_batch",
]
