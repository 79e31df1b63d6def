"""Where the integrity tests leave the figures they measured (for ``scripts/integrity_report.py``).

The fault, crash, disk-full, property, concurrency and bad-input tests each count what they
did (faults injected, builds killed, disk-full points, examples run, ...) while they assert on
every single case. :func:`record` appends those counts as one JSON line to the file named by
``SPARSE_IR_FIGURES``; without that variable it does nothing, so the normal suite writes
nothing. The report script sets the variable, runs the tests and turns the lines into tables:
the figures are the ones the suite itself checked, not a second implementation of the tests.
"""

from __future__ import annotations

import json
import os


def record(test: str, **figures) -> None:
    """Append ``{"test": test, **figures}`` to ``$SPARSE_IR_FIGURES`` (if set)."""
    target = os.environ.get("SPARSE_IR_FIGURES")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"test": test, **figures}, ensure_ascii=False, default=str) + "\n")
