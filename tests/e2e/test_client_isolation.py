"""neardex-client must install and import with its declared dependencies alone: a user who only
calls the service should never pull torch, faiss, sentence-transformers or numpy, and still has
the `neardex` command for everything that talks to a server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from neardex.client import Client
from tests.support.paths import ROOT
from tests.support.processes import free_port, start_serve, stop_process

HEAVY = ("torch", "faiss", "sentence_transformers", "numpy")
# The whole test stays within about 300 s.
VENV_TIMEOUT_S = 60
INSTALL_TIMEOUT_S = 210
CHECK_TIMEOUT_S = 30

CHECK = f"""
import importlib.util, json, sys
heavy = {HEAVY!r}
import neardex.client
from neardex.client import AsyncClient, Client, convert
Client("127.0.0.1:1").close()
convert.search_request("docs", "query", filter={{"lang": "en"}})
print(json.dumps({{
    "client_file": neardex.client.__file__,
    "findable": [m for m in heavy if importlib.util.find_spec(m) is not None],
    "imported": [m for m in heavy if m in sys.modules],
    "siblings": [
        m for m in ("neardex.server", "neardex.indexer") if importlib.util.find_spec(m) is not None
    ],
}}))
"""


def _run(cmd: list[str], timeout: float, cwd: Path) -> str:
    # The outer test run's interpreter settings must not leak into the fresh environment.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONUSERBASE"}
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, (
        f"{cmd} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    return done.stdout


def _copy_source(name: str, dest: Path) -> Path:
    # Builds write build/ and *.egg-info next to the sources; a copy keeps the checkout clean
    # and keeps stale build output from ever reaching the wheel under test.
    target = dest / name
    shutil.copytree(
        ROOT / name,
        target,
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "*.pyc"),
    )
    return target


def test_client_installs_alone_without_heavy_dependencies(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], VENV_TIMEOUT_S, tmp_path)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

    sources = tmp_path / "src"
    proto, client = _copy_source("proto", sources), _copy_source("client", sources)
    _run(
        [str(python), "-m", "pip", "install", "--quiet", str(proto), str(client)],
        INSTALL_TIMEOUT_S,
        tmp_path,
    )

    # -I: no PYTHONPATH, user site or current folder, so only the venv's packages are visible.
    report = json.loads(_run([str(python), "-I", "-c", CHECK], CHECK_TIMEOUT_S, tmp_path))

    assert Path(report["client_file"]).resolve().is_relative_to(venv.resolve()), report
    assert report["findable"] == [], f"heavy packages installed with the client: {report}"
    assert report["imported"] == [], f"heavy packages imported by the client: {report}"
    assert report["siblings"] == [], f"other neardex packages installed: {report}"

    # The command, with the client alone, against a real server (started from the full install).
    neardex = venv / "bin" / "neardex"
    commands = _run([str(neardex), "--help"], CHECK_TIMEOUT_S, tmp_path)
    listed = {line.split()[0] for line in commands.splitlines() if line.startswith("    ") and line.split()}
    assert {"search", "ask", "collections", "get", "count"} <= listed and not {"serve", "index", "eval"} & listed
    port = free_port()
    server = start_serve(tmp_path / "data", port)
    try:
        with Client(f"127.0.0.1:{port}", timeout=60) as client:
            client.create_collection("docs")
            client.upsert("docs", [{"id": "a", "text": "The Nile flows north into the Mediterranean."}])
        env = {**os.environ, "NEARDEX_SERVER": f"127.0.0.1:{port}"}
        env.pop("PYTHONPATH", None)
        found = subprocess.run([str(neardex), "search", "docs", "which way does the Nile flow", "--k", "1"],
                               capture_output=True, text=True, timeout=60, env=env)
        assert found.returncode == 0 and " a" in found.stdout, found.stderr
        listed = subprocess.run([str(neardex), "collections"], capture_output=True, text=True, timeout=60, env=env)
        assert listed.stdout.startswith("docs: 1 documents")
    finally:
        stop_process(server)
