"""A real `neardex serve` (or `milvus-lite server`) in its own process, as a user or another host
runs it: free ports, starting and stopping, and the `neardex` command."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.paths import NEARDEX


class MilvusLite:
    """A `milvus-lite server` on a real port, as a Milvus instance on another host would be; it
    can be stopped midway, as such an instance can go away."""

    def __init__(self, folder: Path) -> None:
        port = free_port()
        self.uri = f"milvus://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir", str(folder),
             "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, self.proc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.proc, grace=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port} after {timeout} s")


def start_serve(data_dir: Path, port: int, metrics_port: int = 0, *extra: str) -> subprocess.Popen[bytes]:
    """`neardex serve` as a user starts it, in its own process; `proc.output` collects what it
    prints, line by line."""
    proc = subprocess.Popen(
        [str(NEARDEX), "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
         "--port", str(port), "--metrics-port", str(metrics_port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    _drain(proc)
    wait_for_port(port, proc)
    return proc


def _drain(proc: subprocess.Popen[bytes]) -> None:
    # An unread pipe that fills up would block the server: a thread reads it all along.
    lines: list[str] = []
    proc.output = lines  # type: ignore[attr-defined]

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.decode(errors="replace"))

    threading.Thread(target=read, daemon=True).start()


def stop_process(proc: subprocess.Popen[Any] | None, grace: float = 60) -> None:
    """Graceful stop (SIGTERM: a server drains and snapshots), then SIGKILL if it hangs."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        if hasattr(proc, "output"):  # a `neardex serve`: its thread stacks say where it hangs
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            print("".join(proc.output[-200:]), file=sys.stderr)
        proc.kill()
        proc.wait(timeout=30)


def run_cli(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(NEARDEX), *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"neardex {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result
