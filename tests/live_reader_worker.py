"""A reader process for the live index concurrency test.

Run as ``python live_reader_worker.py KIND PATH STEPS``: opens and searches the index at PATH
in a loop until the file PATH/STOP exists, checking every answer against the model of one of
the commits of the first STEPS steps (``live_steps``). Prints ``ready`` after its first read,
and at the end one JSON line of counts (``opens``, ``checks``, and ``error: ...`` keys for
anything that went wrong).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import live_steps


def main() -> None:
    kind, path, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    models, model = [], {}
    for step in range(steps):
        model = live_steps.apply_step(model, step)
        models.append(model)
    by_ids = {frozenset(m): m for m in models}
    tally: Counter = Counter()
    deadline = time.monotonic() + 600
    first = True
    # The first read happens whatever the writer has done by then, and "ready" tells the test
    # that this process is reading (on a loaded machine its start-up can outlast the writer).
    while first or (not (path / "STOP").exists() and time.monotonic() < deadline):
        try:
            index = live_steps.open_index(kind, path)
            found = by_ids[frozenset(live_steps.live_ids(index))]
            tally["checks"] += live_steps.check_answers(kind, index, found)
            tally["opens"] += 1
        except Exception as error:  # noqa: BLE001 - counted and reported
            tally[f"error: {type(error).__name__}: {error}"] += 1
        if first:
            print("ready", flush=True)
            first = False
    print(json.dumps(dict(tally)), flush=True)


if __name__ == "__main__":
    main()
