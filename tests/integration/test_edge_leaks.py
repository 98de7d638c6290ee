"""Nothing leaks past a key's reach: refusals never name what the key cannot see, alias changes
stay inside a scoped admin's names, metrics need a key that may read them, timeouts are numbers
of milliseconds, and no name reads as a command-line option."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from neardex.client import Client, InvalidArgument, PermissionDenied
from neardex.server import auth
from neardex.server.app import Server, create_server
from neardex.server.settings import Settings
from tests.support.processes import free_port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str], int]]:
    keys_file = tmp_path / "keys.json"
    keys = {name: auth.create_key(keys_file, name, role, scope) for name, role, scope in (
        ("admin", "admin", None), ("a-admin", "admin", "a-*"), ("a-reader", "read", "a-*"),
        ("reader", "read", None), ("prometheus", "metrics", None))}
    metrics_port = free_port()
    server, port = create_server(Settings(data_dir=tmp_path / "data", host="127.0.0.1", port=0,
                                          metrics_port=metrics_port, http_port=0, api_keys_file=keys_file))
    with Client(f"127.0.0.1:{port}", api_key=keys["admin"], timeout=300) as admin:
        for name in ("a-docs", "secret"):
            admin.create_collection(name)
        admin.create_alias("a-link", "secret")
        admin.create_alias("b-link", "a-docs")
    yield server, keys, metrics_port
    server.stop(grace=1)


def test_a_refusal_does_not_name_an_alias_target_out_of_scope(served: tuple[Server, dict[str, str], int]) -> None:
    server, keys, _ = served
    with Client(f"127.0.0.1:{server.port}", api_key=keys["a-reader"], timeout=30) as client:
        with pytest.raises(PermissionDenied) as refused:
            client.count("a-link")
    assert "a-link" in str(refused.value) and "secret" not in str(refused.value)


def test_a_scoped_admin_changes_only_aliases_named_in_its_scope(served: tuple[Server, dict[str, str], int]) -> None:
    server, keys, _ = served
    with Client(f"127.0.0.1:{server.port}", api_key=keys["a-admin"], timeout=30) as client:
        with pytest.raises(PermissionDenied):
            client.delete_alias("b-link")  # points into its scope, but is not named in it
        with pytest.raises(PermissionDenied):
            client.create_alias("b-other", "a-docs")
        client.create_alias("a-other", "a-docs")
        client.delete_alias("a-other")
    with Client(f"127.0.0.1:{server.port}", api_key=keys["admin"], timeout=30) as admin:
        assert {a.name for a in admin.aliases()} == {"a-link", "b-link"}


def test_metrics_need_a_key_that_may_read_them(served: tuple[Server, dict[str, str], int]) -> None:
    _, keys, metrics_port = served

    def scrape(key: str | None) -> int:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        request = urllib.request.Request(f"http://127.0.0.1:{metrics_port}/metrics", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as page:
                assert b"neardex_rpc_requests_total" in page.read()
                return page.status
        except urllib.error.HTTPError as err:
            return err.code

    assert scrape(None) == 401 and scrape("ndx_wrong") == 401
    assert scrape(keys["reader"]) == 403 and scrape(keys["a-admin"]) == 403
    assert scrape(keys["prometheus"]) == 200 and scrape(keys["admin"]) == 200


@pytest.mark.parametrize("timeout", ["-5", "NaN", "1e309", "1.5", "99999999999"])
def test_a_timeout_that_is_no_number_of_milliseconds_is_refused(served: tuple[Server, dict[str, str], int],
                                                                 timeout: str) -> None:
    server, keys, _ = served
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/neardex.v1.Neardex/Count",
                                     data=json.dumps({"collection": "a-docs"}).encode(), method="POST",
                                     headers={"content-type": "application/json", "connect-timeout-ms": timeout,
                                              "authorization": f"Bearer {keys['reader']}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400 and json.loads(refused.value.read())["code"] == "invalid_argument"


def test_names_may_not_start_with_a_dash(served: tuple[Server, dict[str, str], int]) -> None:
    server, keys, _ = served
    with Client(f"127.0.0.1:{server.port}", api_key=keys["admin"], timeout=30) as admin:
        with pytest.raises(InvalidArgument, match="may not start with '-'"):
            admin.create_collection("-rf")
        with pytest.raises(InvalidArgument, match="may not start with '-'"):
            admin.create_alias("-rf", "a-docs")
        assert "-rf" not in {c.name for c in admin.collections()}
