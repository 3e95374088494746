"""Classic mode (SDS off, DESIGN §5): groups → master tiles on local WCS → harmonisation →
feathered assembly on the canvas → shared polish and save. Never imports ``sds``."""

from supadupstack.classic.run import ClassicResult, run_classic

__all__ = ["ClassicResult", "run_classic"]
