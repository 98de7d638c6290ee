"""The web console: a page that shows what embedding search does (collections, search with each
retriever's score, Ask, the model's tokens, similarities, a map of the vectors), served as static
files on the HTTP port at `/` (`neardex serve --no-console` leaves it out).

It is a caller like any other: its scripts call the same Connect endpoints with the same keys
(typed into the page, kept in the tab's sessionStorage), so it needs nothing here but its files,
and there is no endpoint only it uses. The files are plain ES modules and CSS, read once at start
and served from memory; nothing is built and nothing comes from elsewhere at run time, which the
Content-Security-Policy sent with every file also enforces (scripts, styles and calls from this
origin only, no inline script)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STATIC = Path(__file__).with_name("static")
PREFIX = "/console/"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page's data is inserted as text nodes, never as markup; the policy is the second wall: no
# inline or foreign script can run, and calls go to this origin only.
SECURITY_HEADERS = (
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
     b" base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


def files() -> dict[str, Path]:
    """Every file of the console by the path it is served at: the page at `/`, the rest under
    /console/."""
    served = {"/": STATIC / "index.html"}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file() and path.suffix in CONTENT_TYPES:
            served[PREFIX + path.relative_to(STATIC).as_posix()] = path
    return served


def routes(document: Any) -> dict[str, Any]:
    """The console's routes for `http.Routes`, each a `document(body, content_type, headers)` app."""
    return {route: document(path.read_bytes(), CONTENT_TYPES[path.suffix], SECURITY_HEADERS)
            for route, path in files().items()}
