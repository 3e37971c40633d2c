"""Measured redundancy of trained networks (the chapter "Does K/R measure the redundancy of trained networks?").

``kr_lib.measured.spectrum``: the streaming K x K covariance of a block's outputs and the numbers read from it
(effective rank, variance components, stable and numerical rank); ``kr_lib.measured.pruning``: the pruning test
(principal projection, Torch-Pruning channel removal); ``kr_lib.measured.measure``: one row per block of a
network, a record or a results folder; ``kr_lib.measured.verdict``: the rule and the sentences of the chapter;
``kr_lib.measured.cache``: each network's rows kept beside its record; ``kr_lib.measured.findings``: the
evidence row and the introduction's paragraph, read from that cache.
"""
from .measure import (COLUMNS, DROP_THRESHOLD, SUMMARY_COLUMNS, check_record, linear_control, measure_record,
                      measure_records, measure_redundancy, records_with_weights)
from .findings import evidence, intro_paragraph
from .spectrum import StreamingCovariance, components, effective_rank, numerical_rank, stable_rank

__all__ = ["measure_redundancy", "measure_record", "measure_records", "records_with_weights", "check_record", "linear_control",
           "COLUMNS", "SUMMARY_COLUMNS", "DROP_THRESHOLD", "StreamingCovariance", "effective_rank", "components",
           "stable_rank", "numerical_rank", "evidence", "intro_paragraph"]
