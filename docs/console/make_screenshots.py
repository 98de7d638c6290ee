"""PNGs of each view of the web console, for the README: a server on free ports with
samples/neardex-docs indexed into `docs`, driven by headless chromium as the console's test
drives it (tests/support/console.py), one screenshot per view into this folder.

    .venv/bin/python docs/console/make_screenshots.py    # or: make console-screenshots
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import console  # noqa: E402


def main() -> None:
    from neardex.client import Client
    from neardex.server.app import create_server
    from neardex.server.settings import Settings

    if (why := console.missing()) is not None:
        sys.exit(why)
    with tempfile.TemporaryDirectory() as tmp:
        server, port = create_server(Settings(data_dir=Path(tmp) / "data", host="127.0.0.1", port=0,
                                              metrics_port=0, http_port=0))
        try:
            with Client(f"127.0.0.1:{port}", timeout=300) as client:
                console.index_sample(client, "docs")
                client.create_snapshot("docs")
                client.create_alias("handbook", "docs")
            base = f"http://127.0.0.1:{server.http_port}"
            with console.browser() as launched:
                page = console.new_page(launched, 1200, 860)
                shots = {
                    "collections": lambda: console.open_view(page, base, "collections"),
                    "search": lambda: console.search(page, base),
                    "ask": lambda: console.ask(page, base),
                    "tokens": lambda: console.tokenize(page, base),
                    "similarity": lambda: console.similarity(page, base),
                    "map": lambda: console.draw_map(page, base, "docs", "how does bread rise", "extension"),
                }
                for name, show in shots.items():
                    show()
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=str(HERE / f"{name}.png"))
                    print(f"wrote {HERE / f'{name}.png'}")
                if page.script_errors:
                    sys.exit(f"the page's scripts failed: {page.script_errors}")
        finally:
            server.stop(grace=1)


if __name__ == "__main__":
    main()
