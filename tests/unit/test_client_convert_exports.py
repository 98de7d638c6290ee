"""``neardex.client.convert`` names everything it offers: every public function and constant of
its modules is in ``__all__`` and importable from the package, so its modules can be split or
merged without callers noticing."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

from neardex.client import convert


def convert_modules() -> list[ModuleType]:
    found = [convert]
    for info in pkgutil.iter_modules(getattr(convert, "__path__", [])):
        found.append(importlib.import_module(f"{convert.__name__}.{info.name}"))
    return found


def test_every_public_function_and_constant_is_exported() -> None:
    offered: set[str] = set()
    for module in convert_modules():
        for name, value in vars(module).items():
            if name.startswith("_"):
                continue
            defined_here = inspect.isfunction(value) and value.__module__ == module.__name__
            if defined_here or (name.isupper() and not inspect.ismodule(value)):
                offered.add(name)
    assert len(convert_modules()) > 1  # split by concern
    assert sorted(offered - set(convert.__all__)) == []
    assert all(hasattr(convert, name) for name in convert.__all__)


def test_the_names_callers_use_stay_importable() -> None:
    for name in ("filter_to_proto", "search_request", "search_result", "to_document", "metadata_to_struct",
                 "health_serving", "HEALTH_CHECK_METHOD", "mode_to_proto", "alias", "nothing"):
        assert name in convert.__all__, name
