"""Simulated Seestar datasets with ground truth, and truth metrics (DESIGN §1, issue 3).

``simulate_dataset(out, preset, n_frames, seed, sidecars)`` writes raw subs + truth;
``metrics.evaluate(output_fits, truth_dir)`` scores a stacked output against that truth.
"""

from supadupstack.simulate.presets import PRESETS, simulate_dataset

__all__ = ["PRESETS", "simulate_dataset"]
