"""The web console's files as shipped: every one is package data of neardex-server (a wheel
without them would serve a page whose modules 404), every module one imports exists, and every
file is served at its path with its type."""

from __future__ import annotations

import fnmatch
import re

import tomllib

from neardex.server import console
from tests.support.paths import ROOT

IMPORT = re.compile(r"""^\s*(?:import|export)\s[^'"]*?\sfrom\s+["'](\.{1,2}/[^"']+)["']""", re.M)


def test_every_file_is_package_data() -> None:
    data = tomllib.loads((ROOT / "server" / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["neardex.server.console"]
    shipped = [p for p in console.STATIC.rglob("*") if p.is_file()]
    assert shipped
    for path in shipped:
        relative = path.relative_to(console.STATIC.parent).as_posix()
        assert any(fnmatch.fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns), relative


def test_every_import_resolves_and_every_file_is_served() -> None:
    served = console.files()
    assert served["/"] == console.STATIC / "index.html"
    for route, path in served.items():
        assert path.suffix in console.CONTENT_TYPES, route
        if path.suffix == ".js":
            for target in IMPORT.findall(path.read_text()):
                assert (path.parent / target).resolve().is_file(), f"{route}: imports {target}"
    page = (console.STATIC / "index.html").read_text()
    for reference in re.findall(r'(?:src|href)="(/console/[^"]+)"', page):
        assert reference in served, reference


def test_no_module_writes_markup() -> None:
    """Data reaches the page as text nodes and attribute values only (dom.h); a module that parses
    a string as HTML could let a document's text run as markup."""
    sinks = re.compile(r"\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment)\b")
    for path in console.STATIC.rglob("*.js"):
        assert not sinks.search(path.read_text()), path.name
