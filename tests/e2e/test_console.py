"""The web console in a real browser (Debian's chromium, headless, under Playwright) against a
real server on real ports, over TLS with API keys, serving the sample collection: every view
renders what the API answers, refusals read as messages, data is shown as text, and
`--no-console` leaves `/` unserved."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trustme

from neardex.client import Client
from neardex.server import auth
from neardex.server.app import create_server
from neardex.server.settings import Settings
from tests.support import console
from tests.support.processes import free_port, start_serve, stop_process, wait_for_port

pytestmark = pytest.mark.skipif(console.missing() is not None, reason=str(console.missing()))


@dataclass
class Served:
    base: str  # https://127.0.0.1:PORT of the HTTP port
    client: Client  # gRPC, admin key
    keys: dict[str, str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("console")
    ca = trustme.CA()
    ca_cert = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_cert))
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = root / "server.pem", root / "server.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    keys_file = root / "keys.json"
    keys = {role: auth.create_key(keys_file, role, role) for role in ("read", "admin")}
    server, port = create_server(Settings(data_dir=root / "data", host="127.0.0.1", port=0, metrics_port=0,
                                          http_port=0, api_keys_file=keys_file, tls_cert=cert, tls_key=key,
                                          # Below the map's first id page (10,000): its scan steps down.
                                          max_batch_documents=5000))
    try:
        with Client(f"127.0.0.1:{port}", tls=True, ca_cert=ca_cert, api_key=keys["admin"], timeout=120) as client:
            console.index_sample(client, "docs")
            client.create_collection("hostile")
            client.upsert("hostile", [{"id": "<b>id</b>", "title": "<img src=x onerror=alert(1)>",
                                       "text": "Rivers <script>window.hacked = 1</script> and <i>deltas</i> flood.",
                                       "metadata": {"<em>key</em>": "<u>value</u>"}}])
            yield Served(f"https://127.0.0.1:{server.http_port}", client, keys)
    finally:
        server.stop(grace=1)


@pytest.fixture(scope="module")
def browser(served: Served) -> Iterator[Any]:
    with console.browser() as launched:
        yield launched


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = console.new_page(browser)
    yield page
    assert page.script_errors == []
    page.close()


def test_without_a_key_the_refusal_is_readable(served: Served, page: Any) -> None:
    view = console.open_view(page, served.base, "collections")
    error = view.locator(".error")
    assert error.count() == 1
    assert "ListCollections: unauthenticated" in error.text_content()
    assert "enter a valid API key" in error.text_content()


def test_search_shows_hits_scores_and_highlighted_chunks(served: Served, page: Any) -> None:
    console.search(page, served.base, key=served.keys["read"])
    hits = page.locator("#results li.hit")
    expected = served.client.search("docs", console.SAMPLE_QUERY, k=5, chunks_per_document=3)
    assert [hits.nth(i).get_attribute("data-id") for i in range(hits.count())] == [h.id for h in expected]
    first = hits.first
    assert "history/apollo-11.md" in first.text_content()
    chips = first.locator(".retrievers .chip").all_text_contents()
    assert any(c.startswith("dense ") for c in chips) and any(c.startswith("lexical ") for c in chips)
    # The best chunk is marked where it sits inside the whole document.
    best = first.locator(".document mark.best")
    assert best.count() == 1
    assert best.text_content() == expected[0].chunks[0].text
    assert page.locator("#results .timing-part").count() >= 3


def test_search_filters_on_a_metadata_key_with_facet_values(served: Served, page: Any) -> None:
    console.open_view(page, served.base, "search", served.keys["read"])
    page.fill("input[name=query]", "moon landing")
    page.click("text=+ filter")
    page.select_option("select[name=filter-key]", "extension")
    # The key's values, as Facet counts them, are offered for the value.
    page.wait_for_function("""() => [...document.querySelectorAll('.filter-row datalist option')]
        .map(o => o.value).sort().join(' ') === '.html .md .txt'""")
    page.fill("input[name=filter-value]", ".html")
    console.submit(page)
    page.wait_for_selector("#results li.hit")
    ids = page.locator("#results li.hit").evaluate_all("hs => hs.map(h => h.dataset.id)")
    assert ids and all(i.endswith(".html") for i in ids)


def test_ask_marks_the_answering_sentence(served: Served, page: Any) -> None:
    console.ask(page, served.base, key=served.keys["read"])
    [answer, *_] = served.client.ask("docs", console.SAMPLE_QUERY, k=3)
    first = page.locator("#results li.answer").first
    assert first.get_attribute("data-id") == answer.passage.id
    assert first.locator("mark.answer").text_content() == answer.sentence


def test_token_view_counts_what_tokenize_counts(served: Served, page: Any) -> None:
    text = "Unbelievably, the Nile's délta floods 🌊 every summer; 5,000 years of farming."
    console.tokenize(page, served.base, text, key=served.keys["read"])
    tokenized = served.client.tokenize(text, collection="docs")
    count = page.locator("#token-count")
    assert int(count.get_attribute("data-count")) == tokenized.count == page.locator("span.token").count()
    # Offsets count code points, as the server's do, also past a character outside the BMP.
    assert page.locator("span.token").all_text_contents() == [text[t.start:t.end] for t in tokenized.tokens]
    assert page.locator("table.chunks tr").count() == len(tokenized.chunks)
    assert page.locator(".terms .term").count() == len(tokenized.terms)


def test_stored_document_in_the_token_view(served: Served, page: Any) -> None:
    console.open_view(page, served.base, "tokens", served.keys["read"])
    page.select_option("select[name=collection]", "docs")
    page.fill("input[name=document]", "history/apollo-11.md")
    page.click("text=load document")
    page.wait_for_selector("#results p.muted")
    console.submit(page)
    page.wait_for_selector("#token-count")
    stored = served.client.get("docs", ["history/apollo-11.md"]).documents[0].text
    assert int(page.locator("#token-count").get_attribute("data-count")) == \
        served.client.tokenize(stored, collection="docs").count


def test_heatmap_and_map_are_drawn(served: Served, page: Any) -> None:
    console.similarity(page, served.base, key=served.keys["read"])
    assert console.canvas_painted(page, "canvas.heatmap") > 10
    assert page.locator("table.matrix tr").count() == 5
    drawn = console.draw_map(page, served.base, "docs", query="how does bread rise", colour="extension")
    assert int(drawn["points"]) == served.client.info("docs").chunks  # all 77: under the sample's bound
    assert int(drawn["marks"]) >= 2  # the query and its hits
    assert console.canvas_painted(page, "canvas.map") > 4
    assert page.locator(".legend").text_content().count("(") >= 3  # .md, .txt, .html
    # The map reads vectors in the API's binary form: decoded, they are what the client reads.
    sampled = page.evaluate("""import('/console/js/views/map.js').then(m => m.sample('docs', 'extension', 4))
        .then(points => points.map(p => ({id: p.id, chunk: p.chunk, value: p.value, vector: Array.from(p.vector)})))""")
    assert len(sampled) == 4
    stored = {d.id: d for d in served.client.get("docs", sorted({p["id"] for p in sampled}), vectors=True).documents}
    for point in sampled:
        document = stored[point["id"]]
        assert point["value"] == document.metadata["extension"]
        assert point["vector"] == pytest.approx(list(document.chunk_vectors[point["chunk"]]), abs=1e-7)


def test_map_samples_the_whole_collection(served: Served, page: Any) -> None:
    # More documents than the map's bound, their ids sorted by category: the first ones in id order
    # would all be of the first categories; a uniform sample has documents of the last one too.
    size, categories, bound = 2500, 5, 2000
    rng = np.random.default_rng(7)
    served.client.create_collection("spread", model="none", dimension=8)
    served.client.upsert("spread", [{"id": f"cat{i * categories // size}-{i:05}", "vector": rng.normal(size=8).tolist(),
                                     "metadata": {"category": f"cat{i * categories // size}"}} for i in range(size)])
    try:
        drawn = console.draw_map(page, served.base, "spread", colour="category", key=served.keys["read"])
        assert int(drawn["points"]) == bound and int(drawn["documents"]) == bound  # one chunk each
        legend = page.locator(".legend").text_content()
        assert all(f"cat{c} (" in legend for c in range(categories))
        assert "a uniform random sample: 2000 of 2500 documents" in page.locator("#results .summary").text_content()
        ids = page.evaluate("import('/console/js/views/map.js').then(m => m.sample('spread', '', 3000))"
                            ".then(points => points.map(p => p.id))")
        assert sorted(ids) == sorted(d.id for d in served.client.scroll_all("spread", text=False))  # all, once each
    finally:
        served.client.delete_collection("spread")


def test_read_only_key_is_offered_no_delete_and_a_forced_one_is_refused(served: Served, page: Any) -> None:
    view = console.open_view(page, served.base, "collections", served.keys["read"])
    # Once the server has said what the key may do (data-admin), nothing more is offered.
    row = view.locator("tr[data-collection=docs][data-admin=no]")
    row.wait_for()
    view.locator("#create[data-admin=no]").wait_for(state="attached")  # empty: nothing to see
    assert row.locator("button").count() == 0 and view.locator("#create form").count() == 0
    page.evaluate("import('/console/js/views/collections.js').then(m => m.remove('docs'))")
    error = page.locator("#collections-status .error")
    error.wait_for()
    assert error.get_attribute("data-code") == "permission_denied"
    assert error.text_content().startswith("DeleteCollection: permission denied: key 'read'")
    assert served.client.collection_exists("docs")


def test_admin_creates_and_deletes_with_confirmation(served: Served, page: Any) -> None:
    view = console.open_view(page, served.base, "collections", served.keys["admin"])
    view.locator("#create form").wait_for()
    page.fill("#create input[name=name]", "scratch")
    page.click("#create button[type=submit]")
    page.wait_for_selector("tr[data-collection=scratch] button.danger")
    assert served.client.collection_exists("scratch")
    page.click("tr[data-collection=scratch] button.danger")
    page.click("button[data-confirm=scratch]")
    page.wait_for_selector("#collections-status .ok")
    assert not served.client.collection_exists("scratch")
    assert view.locator("tr[data-collection=scratch]").count() == 0


def test_data_is_shown_as_text(served: Served, page: Any) -> None:
    console.open_view(page, served.base, "search", served.keys["read"])
    page.select_option("select[name=collection]", "hostile")
    page.fill("input[name=query]", "rivers flood")
    console.submit(page)
    hit = page.locator("#results li.hit")
    hit.wait_for()
    assert hit.locator("img, script, b, i, em, u").count() == 0
    assert "<img src=x onerror=alert(1)>" in hit.text_content()
    assert "<script>window.hacked = 1</script>" in hit.locator(".document").text_content()
    assert page.evaluate("window.hacked === undefined")


def test_no_console_serves_nothing_at_root(tmp_path: Path) -> None:
    port, http_port = free_port(), free_port()
    proc = start_serve(tmp_path / "data", port, 0, "--http-port", str(http_port), "--no-console")
    try:
        wait_for_port(http_port, proc)
        base = f"http://127.0.0.1:{http_port}"
        for path in ("/", "/console/js/main.js"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=30)
            assert refused.value.code == 404
        with urllib.request.urlopen(base + "/openapi.json", timeout=30) as response:
            assert json.loads(response.read())["openapi"]
        deadline = time.monotonic() + 60
        while not (ready := [line for line in proc.output if "neardex serving" in line]):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, proc.output  # type: ignore[attr-defined]
            time.sleep(0.1)
        assert "HTTP/JSON" in ready[0] and "console" not in ready[0].split("HTTP/JSON")[1]
    finally:
        stop_process(proc)


def test_console_files_are_served_with_their_policy(served: Served) -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(served.base + "/", timeout=30, context=context) as response:
        assert response.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in response.headers["content-security-policy"]
    with urllib.request.urlopen(served.base + "/console/js/main.js", timeout=30, context=context) as response:
        assert response.headers["content-type"].startswith("text/javascript")
