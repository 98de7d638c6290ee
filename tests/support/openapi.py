"""The OpenAPI document as tests read it: the committed file, its generator (a build script beside
the .proto, not part of any distribution) and validators of a body against one of its schemas.

A strict validator also refuses a property the schema does not name, so a body the server writes
with a field the document left out (or spelled otherwise) fails, where OpenAPI's own reading
would let it through."""

from __future__ import annotations

import copy
import importlib.util
import json
from functools import cache
from types import ModuleType
from typing import Any

import jsonschema
from openapi_schema_validator import OAS31Validator

from tests.support.paths import ROOT

DOCUMENT = ROOT / "proto" / "neardex" / "v1" / "openapi.json"
GENERATOR = ROOT / "proto" / "generate_openapi.py"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_openapi", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def document() -> dict[str, Any]:
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def _closed(schema: Any) -> Any:
    """Every object schema with properties refuses others (recursively)."""
    if isinstance(schema, dict):
        closed = {key: _closed(value) for key, value in schema.items()}
        if closed.get("type") == "object" and "properties" in closed:
            closed.setdefault("additionalProperties", False)
        return closed
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


def validator(schema: dict[str, Any], doc: dict[str, Any] | None = None, strict: bool = True) -> Any:
    """Validates against `schema` (a $ref into the document's components, or a schema inline)."""
    components = copy.deepcopy((doc or document())["components"])
    if strict:
        components["schemas"] = _closed(components["schemas"])
        schema = _closed(schema)
    return OAS31Validator({**schema, "components": components}, format_checker=jsonschema.FormatChecker())


def schema_of(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}
