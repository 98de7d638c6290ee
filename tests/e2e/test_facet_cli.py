"""`neardex facet NAME KEY` as a user runs it against a real server: a table of values and their
document counts (values as JSON, so that "1", 1 and true read apart), a filter, a limit, JSON
output, and a bad key reported as one line naming it."""

from __future__ import annotations

import json

from neardex.client import Client
from tests.support.processes import run_cli

DOCS = [
    {"id": "a", "text": "The Nile flows north.", "metadata": {"kind": "river", "year": 2001, "tags": ["water", "africa"]}},
    {"id": "b", "text": "The Amazon is wide.", "metadata": {"kind": "river", "year": 2015, "tags": ["water"]}},
    {"id": "c", "text": "The Sahara is dry.", "metadata": {"kind": "desert", "year": 2001, "tags": "africa", "hot": True}},
    {"id": "d", "text": "Everest is high.", "metadata": {"kind": "mountain", "hot": "true"}},
]


def test_facet_prints_values_and_counts(server: tuple[object, int], client: Client) -> None:
    client.create_collection("places")
    client.upsert("places", DOCS)
    where = ("--server", f"127.0.0.1:{server[1]}")
    out = run_cli("facet", "places", "tags", *where).stdout.splitlines()
    assert out[0].split() == ["value", "documents"]
    assert [line.split() for line in out[1:-1]] == [['"africa"', "2"], ['"water"', "2"]]
    assert out[-1] == "(2 values; 4 documents matched)"
    out = run_cli("facet", "places", "kind", "--filter", "year=2001", "--limit", "1", *where).stdout.splitlines()
    assert [line.split() for line in out[1:-1]] == [['"desert"', "1"]] and out[-1] == "(1 value; 2 documents matched)"
    shown = [line.split() for line in run_cli("facet", "places", "hot", *where).stdout.splitlines()[1:-1]]
    assert shown == [["true", "1"], ['"true"', "1"]]
    whole = json.loads(run_cli("facet", "places", "year", "--json", *where).stdout)
    assert whole == {"values": [{"value": 2001, "count": 2}, {"value": 2015, "count": 1}], "documents": 4, "exact": True}
    bad = run_cli("facet", "places", "no such key", *where, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: INVALID_ARGUMENT: key: ")
