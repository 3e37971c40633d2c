"""Ablation runs: one run (``ablation``), its result records (``records``), sweeps of runs (``sweep``)
and the figures drawn from records (``figures``).

    from kr_lib.runs import run_ablation, read_records, records_table, run_sweep
"""
from .ablation import DEFAULTS, SCIENTIFIC, AblationRun, check_parameters, parameters_from_namespace, run_ablation
from .records import (
    CorruptRecord, aggregate, read_record, read_records, record_path, records_table, run_id, write_json_atomic,
    write_record,
)

__all__ = [
    "DEFAULTS", "SCIENTIFIC", "AblationRun", "CorruptRecord", "aggregate", "check_parameters",
    "parameters_from_namespace", "read_record", "read_records", "record_path", "records_table", "run_ablation",
    "run_id", "write_json_atomic", "write_record",
]
