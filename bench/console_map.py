"""How long the web console's map takes: reading its sample (a scan of the ids with Scroll, then
the sampled documents' chunk vectors with Get, in the API's binary form), PCA in the page, and
drawing, in headless chromium, for collections of 10,000 and 100,000 chunks. The map reads the
vectors of at most MAX_POINTS chunks (map.js), a uniform random sample of the documents; only the
scan of the ids grows with the collection (a few bytes a document), so the figure shows how far
the bound holds.

The collections hold the caller's own vectors (model "none", 384 dimensions like the bundled
model's, one chunk per document) drawn around 12 centres, so nothing is embedded. Also times one
Scroll page of 500 documents with vectors as JSON against the same page as protobuf, the reason
the map reads binary.

    .venv/bin/python bench/console_map.py [--sizes 10000,100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import ROOT, cpu_flags, median, print_table, write_result

sys.path.insert(0, str(ROOT))
from tests.support import console  # noqa: E402

DIM = 384
CENTRES = 12
BATCH = 1000


def fill(client: object, name: str, size: int, rng: np.random.Generator) -> None:
    client.create_collection(name, model="none", dimension=DIM)  # type: ignore[attr-defined]
    centres = rng.normal(size=(CENTRES, DIM))
    for start in range(0, size, BATCH):
        labels = rng.integers(CENTRES, size=min(BATCH, size - start))
        vectors = centres[labels] + 0.6 * rng.normal(size=(len(labels), DIM))
        client.upsert(name, [{"id": f"v{start + i:07}", "vector": v.tolist(), "metadata": {"cluster": f"c{c}"}}  # type: ignore[attr-defined]
                             for i, (v, c) in enumerate(zip(vectors, labels))])


def scroll_page_seconds(base: str, name: str, content_type: str, body: bytes) -> tuple[float, int]:
    request = urllib.request.Request(f"{base}/neardex.v1.Neardex/Scroll", data=body, method="POST",
                                     headers={"content-type": content_type})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        size = len(response.read())
    return time.perf_counter() - started, size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from neardex.client import Client
    from neardex.server.app import create_server
    from neardex.server.settings import Settings
    from neardex.v1 import neardex_pb2 as pb

    if (why := console.missing()) is not None:
        sys.exit(why)
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        server, port = create_server(Settings(data_dir=Path(tmp) / "data", host="127.0.0.1", port=0,
                                              metrics_port=0, http_port=0))
        base = f"http://127.0.0.1:{server.http_port}"
        try:
            with Client(f"127.0.0.1:{port}", timeout=600) as client:
                rng = np.random.default_rng(1)
                for size in sizes:
                    started = time.perf_counter()
                    fill(client, f"map{size}", size, rng)
                    print(f"map{size}: {size} chunks written in {time.perf_counter() - started:.1f} s", flush=True)
            with console.browser() as launched:
                page = console.new_page(launched)
                for size in sizes:
                    runs = [console.draw_map(page, base, f"map{size}", colour="cluster") for _ in range(args.repeat)]
                    parts = {k: median([float(r[k]) for r in runs]) for k in ("readMs", "pcaMs", "drawMs")}
                    total = median([sum(float(r[k]) for k in ("readMs", "pcaMs", "drawMs")) for r in runs])
                    points = int(runs[0]["points"])
                    rows.append([size, points, parts["readMs"], parts["pcaMs"], parts["drawMs"], total])
                    results.append({"chunks": size, "points": points, **parts, "total_ms": total})
            fields = pb.Fields(vectors=True, no_text=True)
            request = pb.ScrollRequest(collection=f"map{sizes[0]}", limit=500, fields=fields)
            from google.protobuf import json_format
            as_json = json_format.MessageToJson(request).encode()
            json_s, json_bytes = scroll_page_seconds(base, "", "application/json", as_json)
            proto_s, proto_bytes = scroll_page_seconds(base, "", "application/proto", request.SerializeToString())
        finally:
            server.stop(grace=1)
    print(f"\nmap in headless chromium, medians of {args.repeat} (CPU flags: {cpu_flags()})")
    print_table(["chunks", "points drawn", "read ms", "PCA ms", "draw ms", "total ms"], rows)
    print(f"\none Scroll page of 500 documents with vectors: JSON {json_s * 1000:.0f} ms ({json_bytes} bytes),"
          f" protobuf {proto_s * 1000:.0f} ms ({proto_bytes} bytes)")
    write_result("console_map", {"cpu_flags": cpu_flags(), "runs": results,
                                 "scroll_page_500": {"json_ms": json_s * 1000, "json_bytes": json_bytes,
                                                     "proto_ms": proto_s * 1000, "proto_bytes": proto_bytes}})


if __name__ == "__main__":
    main()
