"""Sweeps, by the names they had when one module held them all (kept so that old imports work):
sweep files in :mod:`kr_lib.runs.sweepfile`, one run in :mod:`kr_lib.runs.notebook_run`, running them in
:mod:`kr_lib.runs.runner` (local, with locks)
and :mod:`kr_lib.runs.ray_runner` (Ray), the book's presets in :mod:`kr_lib.runs.presets`. Importing this
module loads the runner; import from those modules to load only what you use."""
from __future__ import annotations

from .presets import BOOK_PRESETS, book_progress, fill_commands, seed_time_estimates
from .notebook_run import RunOutcome, default_notebook, execute_run
from .runner import SweepSummary, run_lock, run_sweep
from .sweepfile import NOT_IN_SWEEP, PRESET_KEYS, SWEEP_KEYS, Sweep, load_sweep

__all__ = ["BOOK_PRESETS", "NOT_IN_SWEEP", "PRESET_KEYS", "SWEEP_KEYS", "RunOutcome", "Sweep", "SweepSummary",
           "book_progress", "default_notebook", "execute_run", "fill_commands", "load_sweep", "run_lock",
           "run_sweep", "seed_time_estimates"]
