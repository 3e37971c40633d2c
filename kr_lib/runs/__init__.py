"""Ablation runs: checked parameters (``parameters``) and a run's identity (``identity``), one run
(``ablation``), its result records (``records``), sweep files (``sweepfile``) run by ``runner`` (or
``ray_runner``), the book's presets (``presets``), reruns (``reproduce``) and the figures and pages drawn
from records (``figures``, ``pages``).

    from kr_lib.runs import check_parameters, run_ablation, read_records, records_table
"""
from .ablation import AblationRun, run_ablation
from .identity import SCIENTIFIC, record_path, run_id
from .parameters import DEFAULTS, AblationParams, check_parameters, parameters_from_namespace
from .records import CorruptRecord, aggregate, read_record, read_records, records_table, write_json_atomic, write_record

__all__ = [
    "DEFAULTS", "SCIENTIFIC", "AblationParams", "AblationRun", "CorruptRecord", "aggregate", "check_parameters",
    "parameters_from_namespace", "read_record", "read_records", "record_path", "records_table", "run_ablation",
    "run_id", "write_json_atomic", "write_record",
]
