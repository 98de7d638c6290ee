"""The web console driven in a real browser (Debian's chromium under Playwright), as a person
uses it: what the console's test and the screenshot and map-timing scripts share. Playwright's
own browser downloads are never used: the system's chromium is launched by path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("NEARDEX_CHROMIUM", "/usr/bin/chromium"))
SAMPLE_QUERY = "when did Apollo 11 land on the moon"


def index_sample(client: Any, collection: str = "docs") -> int:
    """samples/neardex-docs into `collection` through a client, as `neardex index --server` would;
    returns the number of documents."""
    from neardex.indexer.ingest.readers import read_documents
    from tests.support.paths import SAMPLES

    documents = [{"id": d.id, "text": d.text, "title": d.title, "metadata": d.metadata}
                 for d in read_documents(SAMPLES)]
    client.create_collection(collection)
    client.upsert(collection, documents)
    return len(documents)


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (Debian package chromium; `make system-deps`)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (the dev dependency group)"
    return None


@contextmanager
def browser() -> Iterator[Any]:
    """A headless chromium; as root it runs without its sandbox, which needs user namespaces."""
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            yield launched
        finally:
            launched.close()


def new_page(launched: Any, width: int = 1200, height: int = 900) -> Any:
    """A page of its own (own sessionStorage, so its own key) that trusts the test's certificates;
    errors the page's scripts throw are collected in `page.script_errors`."""
    page = launched.new_page(viewport={"width": width, "height": height}, ignore_https_errors=True)
    errors: list[str] = []
    page.script_errors = errors
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def open_view(page: Any, base: str, view: str, key: str | None = None) -> Any:
    """Loads the console at `view`, with `key` typed into its key form when given; returns the
    view's element once it has rendered (data-ready is the view's name, or "error")."""
    page.goto(f"{base}/#{view}")
    if key is not None:
        page.fill("#key-input", key)
        page.click("#key-form button[type=submit]")
    page.wait_for_selector(f"#view[data-ready={view}], #view[data-ready=error]")
    return page.locator("#view")


def submit(page: Any) -> None:
    page.click("#view form.query button[type=submit]")


def search(page: Any, base: str, query: str = SAMPLE_QUERY, key: str | None = None) -> None:
    open_view(page, base, "search", key)
    page.fill("input[name=query]", query)
    submit(page)
    page.wait_for_selector("#results li.hit, #results .error")


def ask(page: Any, base: str, question: str = SAMPLE_QUERY, key: str | None = None) -> None:
    open_view(page, base, "ask", key)
    page.fill("input[name=question]", question)
    submit(page)
    page.wait_for_selector("#results li.answer, #results .error")


def tokenize(page: Any, base: str, text: str | None = None, key: str | None = None) -> None:
    open_view(page, base, "tokens", key)
    if text is not None:
        page.fill("textarea[name=text]", text)
    submit(page)
    page.wait_for_selector("#token-count, #results .error")


def similarity(page: Any, base: str, key: str | None = None) -> None:
    open_view(page, base, "similarity", key)
    submit(page)
    page.wait_for_selector("canvas.heatmap, #results .error")


def draw_map(page: Any, base: str, collection: str, query: str = "", colour: str | None = None,
             key: str | None = None, timeout_ms: float = 600_000) -> dict[str, str]:
    """Draws the map of `collection`; returns the result's data attributes (points, readMs, pcaMs,
    drawMs, marks)."""
    open_view(page, base, "map", key)
    page.select_option("select[name=collection]", collection)
    if colour is not None:  # the chosen collection's keys come in once a page of it is read
        page.wait_for_selector(f"select[name=colour] option[value='{colour}']", state="attached")
        page.select_option("select[name=colour]", colour)
    page.fill("input[name=query]", query)
    submit(page)
    page.wait_for_selector("#results .map-result, #results .error", timeout=timeout_ms)
    error = page.locator("#results .error")
    if error.count():
        raise AssertionError(error.first.text_content())
    return dict(page.locator("#results .map-result").evaluate("e => ({...e.dataset})"))


def canvas_painted(page: Any, selector: str) -> int:
    """Distinct colours on a canvas: a blank one has one."""
    return int(page.locator(selector).evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  const seen = new Set(); for (let i = 0; i < d.length; i += 4 * 7)
                  seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]); return seen.size; }"""))
