"""A fork server for the live index kill -9 test: runs writer steps in children it kills.

Run as ``python live_crash_worker.py KIND``. It imports everything and runs a few steps once
(so numba's kernels are compiled), prints ``{"ready": true, "step_seconds": ...}``, then reads
one JSON command per line from stdin::

    {"path": "...", "step": 3, "kill_after": 0.137}

and for each forks a child that runs step ``step`` (``live_steps.run_step``: add, upsert,
delete, commit, and a force-merge every third step) on the index at ``path``; if the child
is still running ``kill_after`` seconds later it gets SIGKILL from its own parent (so the pid
cannot have been reused). The answer is one JSON line:
``{"outcome": "killed" | "exited", "status": ..., "elapsed": ...}``.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import live_steps
import tqdm

tqdm.tqdm.monitor_interval = 0
tqdm.tqdm.set_lock(threading.RLock())


def run_in_child(kind: str, path: Path, step: int) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            live_steps.run_step(kind, path, step)
        except BaseException:  # noqa: BLE001 - the child reports any failure by exit code
            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def main() -> None:
    kind = sys.argv[1]
    durations = []
    with tempfile.TemporaryDirectory() as scratch:
        for step in range(4):
            started = time.perf_counter()
            live_steps.run_step(kind, Path(scratch) / "warm", step)
            durations.append(time.perf_counter() - started)
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    assert threads == 1, f"the fork server has {threads} threads: forking it is unsafe"
    print(json.dumps({"ready": True, "step_seconds": statistics.median(durations)}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        started = time.perf_counter()
        pid = run_in_child(kind, Path(command["path"]), command["step"])
        deadline = started + command["kill_after"]
        status = None
        while time.perf_counter() < deadline:
            done, status_now = os.waitpid(pid, os.WNOHANG)
            if done:
                status = status_now
                break
            time.sleep(0.001)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            outcome = "killed" if os.WIFSIGNALED(status) else "exited"
        else:
            outcome = "exited"
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
        elapsed = time.perf_counter() - started
        print(json.dumps({"outcome": outcome, "status": code, "elapsed": elapsed}), flush=True)


if __name__ == "__main__":
    main()
