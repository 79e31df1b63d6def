"""A fork server for the kill -9 test: builds indexes in children it kills at given moments.

Run as ``python crash_worker.py KIND``. It imports everything and builds once (so numba's
kernels are compiled), prints ``{"ready": true, "build_seconds": ...}``, then reads one JSON
command per line from stdin::

    {"path": "...", "seed": 3, "size": "MEDIUM", "kill_after": 0.137}

and for each forks a child that builds the index at ``path`` from ``seed``; if the child is
still running ``kill_after`` seconds later it gets SIGKILL. The answer is one JSON line:
``{"outcome": "killed" | "exited", "status": ..., "elapsed": ...}``. The killing is done by
the child's own parent, so the process id cannot have been reused by anyone else.
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

# fork() is safe only in a process with one thread: no BLAS thread pool, no tqdm monitor
# (a fork while such a thread holds a lock leaves the child waiting for it forever). And tqdm's
# default lock is a multiprocessing semaphore that forked children share: a child killed while
# holding it (tqdm takes it when a bar is made or closed) would block every later child.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import index_kinds
import tqdm

tqdm.tqdm.monitor_interval = 0
tqdm.tqdm.set_lock(threading.RLock())  # per process: each child gets its own, unlocked


def build_in_child(kind, path: Path, seed: int, size) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            kind.build(path, seed, size)
        except BaseException:  # noqa: BLE001 - the child reports any failure by exit code
            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def main() -> None:
    kind = index_kinds.KINDS[sys.argv[1]]
    durations = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(3):
            kind.prepare(seed, index_kinds.MEDIUM)
            started = time.perf_counter()
            kind.build(Path(scratch) / "warm", seed, index_kinds.MEDIUM)
            durations.append(time.perf_counter() - started)
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    assert threads == 1, f"the fork server has {threads} threads: forking it is unsafe"
    print(json.dumps({"ready": True, "build_seconds": statistics.median(durations)}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        size = getattr(index_kinds, command.get("size", "MEDIUM"))
        kind.prepare(command["seed"], size)  # generate the data here: the child only builds
        started = time.perf_counter()
        pid = build_in_child(kind, Path(command["path"]), command["seed"], size)
        deadline = started + command["kill_after"]
        status = None
        while time.perf_counter() < deadline:
            done, status_now = os.waitpid(pid, os.WNOHANG)
            if done:
                status = status_now
                break
            time.sleep(0.0005)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        outcome = "killed" if os.WIFSIGNALED(status) else "exited"
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
        print(
            json.dumps(
                {"outcome": outcome, "status": code, "elapsed": time.perf_counter() - started}
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
