"""Regenerate ``tests/data/classic_reference.json``, the pinned classic-mode output.

    .venv/bin/python tests/data/make_classic_reference.py

Regenerating is a deliberate act: the reference guards the promise that nothing (SDS work
in particular) changes classic output by accident. Only run this when a change to classic
output is intended, and give the reason in the commit message, e.g. "classic reference
regenerated: feathering now weights by coverage". It prints the differences to the old
reference before overwriting it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from test_classic_regression import REFERENCE, compare, fingerprint, run_case  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        new = fingerprint(run_case(Path(tmp)))
    if REFERENCE.exists():
        diffs = compare(new, json.loads(REFERENCE.read_text()))
        print("\n".join(diffs) if diffs else "no change beyond the tolerances")
    REFERENCE.write_text(json.dumps(new, indent=1) + "\n")
    print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
