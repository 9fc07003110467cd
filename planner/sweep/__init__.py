"""What-if sweeps: a grid of scenario overrides (or a folder of scenarios) x methods, run on a
process pool or Ray, into one resumable results table, with an HTML report."""

from planner.sweep.run import SweepRun, run_sweep
from planner.sweep.spec import Sweep, SweepError, load_sweep

__all__ = ["Sweep", "SweepError", "SweepRun", "load_sweep", "run_sweep"]
