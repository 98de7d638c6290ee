"""The neardex command has one owner, the client distribution's CLI module; the commands of each
distribution join through ``neardex.commands`` entry points, and no CLI module imports another
(the server's command module takes its shared options from ``neardex.client.options``)."""

from __future__ import annotations

import ast
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import tomllib

from neardex.client import cli
from neardex.server import cli as server_cli
from tests.support.paths import ROOT


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_cli_module_imports_another_and_the_client_never_imports_the_server() -> None:
    assert not {m for m in imported_modules(ROOT / "server/neardex/server/cli.py") if m.startswith("neardex.client.cli")}
    for path in (ROOT / "client/neardex/client").rglob("*.py"):
        assert not {m for m in imported_modules(path) if m.startswith("neardex.server")}, path


@pytest.mark.parametrize(("dist", "target"), [("client", "neardex.client.cli:register"),
                                              ("server", "neardex.server.cli:register")])
def test_each_distribution_declares_its_commands(dist: str, target: str) -> None:
    project = tomllib.loads((ROOT / dist / "pyproject.toml").read_text())["project"]
    assert project["entry-points"][cli.COMMANDS_GROUP] == {dist: target}
    assert cli.DECLARED[f"neardex.{dist}"] == target
    assert callable(EntryPoint(dist, target, cli.COMMANDS_GROUP).load())


def commands_of(parser: object) -> dict[str, list[str]]:
    """Each command, with the actions of a command group."""
    sub = next(a for a in parser._actions if a.dest == "==SUPPRESS==" and a.choices)  # type: ignore[attr-defined]
    out = {}
    for name, p in sub.choices.items():
        inner = [a for a in p._actions if getattr(a, "choices", None) and isinstance(a.choices, dict)]
        out[name] = sorted(inner[0].choices) if inner else []
    return out


def test_the_client_alone_has_every_server_talking_command() -> None:
    parser, clean = cli.build_parser([cli.register])
    commands = commands_of(parser)
    assert {"search", "ask", "similar", "similarity", "tokenize", "alias", "collections", "get", "count",
            "facet"} <= set(commands)
    assert not {"index", "serve", "eval", "check", "keys"} & set(commands)
    assert commands["snapshot"] == ["create", "list", "restore"] and clean == ()


def test_entry_points_join_the_client_first_whatever_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [EntryPoint("server", "neardex.server.cli:register", cli.COMMANDS_GROUP),
              EntryPoint("client", "neardex.client.cli:register", cli.COMMANDS_GROUP)]
    monkeypatch.setattr(cli, "entry_points", lambda group: points if group == cli.COMMANDS_GROUP else [])
    assert cli.registrations() == [cli.register, server_cli.register]
    commands = commands_of(cli.build_parser()[0])
    assert {"index", "serve", "eval", "check", "keys", "search"} <= set(commands)
    assert commands["snapshot"] == ["create", "list", "load", "restore"]


def test_an_install_without_the_group_falls_back_to_the_declared_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    assert cli.registrations() == [cli.register, server_cli.register]
