"""kr_lib: the K/R ratio and the statistics of compressed CNNs, on PyTorch."""
__version__ = "0.1.0"
