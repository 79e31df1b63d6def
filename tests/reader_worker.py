"""A reader process for the concurrency test: opens and queries an index until told to stop.

``python reader_worker.py KIND INDEX EXPECTED.json STOPFILE``: prints ``{"ready": true}``,
then loops (open, answer, compare with every published collection's expected answers; and
re-query one index kept open for the whole run) until STOPFILE exists, and prints one JSON
line with the counts and any failure.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import index_kinds


def main() -> None:
    kind = index_kinds.KINDS[sys.argv[1]]
    path, stop = Path(sys.argv[2]), Path(sys.argv[4])
    expected = json.loads(Path(sys.argv[3]).read_text())  # {seed: answers}
    kept = kind.open(path)
    kept_answers = json.loads(json.dumps(kind.answers(kept)))
    print(json.dumps({"ready": True}), flush=True)
    opens, seeds, failures = 0, set(), []
    while not stop.exists() and len(failures) < 5:
        try:
            answers = json.loads(json.dumps(kind.answers(kind.open(path))))
            seed = str(answers[0])
            if expected.get(seed) != answers:
                failures.append(f"open {opens}: answers match no published collection")
            seeds.add(seed)
            opens += 1
            if json.loads(json.dumps(kind.answers(kept))) != kept_answers:
                failures.append("an index kept open changed its answers")
        except Exception:  # noqa: BLE001 - every failure is reported to the test
            failures.append(traceback.format_exc())
    print(json.dumps({"opens": opens, "seeds": sorted(seeds), "failures": failures}), flush=True)


if __name__ == "__main__":
    main()
