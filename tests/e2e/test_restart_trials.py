"""The short, fixed-seed form of tests/support/restart_trials.py: a real server stopped with SIGTERM
under a write stream as its HNSW index starts rebuilding in the background, and as soon as its port
is open; each stop ends within the grace period and loses no acknowledged write. The 50-restart run
is the script's own. Also: a SIGTERM the kernel hands to a thread other than the main one."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from tests.support.crash_trials import wait_for
from tests.support.processes import free_port, start_serve, stop_process
from tests.support.restart_trials import run_trials


def test_sigterm_under_a_write_stream_exits_in_time_and_loses_nothing(tmp_path: Path) -> None:
    # A random moment is the 50-restart run's: here the rebuild's start (writes and the rebuild
    # under way) and the first moment the port is open.
    kinds = ("rebuild", "startup")
    results, problems = run_trials(len(kinds), seed=3, work=tmp_path, grace=30, vectors=3000, kinds=kinds,
                                   log=lambda line: None)
    assert [(r.trial, r.kind, p) for r in results for p in r.problems] == [], [r.stacks for r in results]
    assert problems == []
    assert all(r.exit_code == 0 for r in results)
    assert all(r.at_event for r in results if r.kind == "rebuild")
    assert sum(r.acknowledged_writes for r in results) > 0
    assert sum(r.documents_checked for r in results) > 0


def test_sigterm_taken_by_another_thread_still_stops_the_server(tmp_path: Path) -> None:
    # kill() with a thread's id sends the signal to the whole process but hands it to that thread,
    # as the kernel may when the main thread is asleep: Python then runs the handler only once
    # the main thread wakes, which a wait on a lock without a timeout never did.
    port = free_port()
    proc = start_serve(tmp_path / "data", port)
    try:
        assert wait_for(proc, "neardex serving", 30, threading.Event())
        time.sleep(1)  # the main thread is waiting for a signal now
        others = [int(t.name) for t in Path(f"/proc/{proc.pid}/task").iterdir() if int(t.name) != proc.pid]
        os.kill(others[-1], signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.returncode == 0 and any("shutting down" in line for line in proc.output)  # type: ignore[attr-defined]
    finally:
        stop_process(proc)
