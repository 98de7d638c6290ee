"""A collection's `IndexSpec` as Milvus' vector index: what the chunks' `dense` field is built
with and what each search sends. One pure function, so that the requests can be checked without
a Milvus that builds them (milvus-lite builds no IVF_PQ).

The mapping (metric IP throughout, as the vectors are unit length):

- flat  -> FLAT; search sends no parameters.
- hnsw  -> HNSW {M: m, efConstruction: ef_construction}; search {ef: max(ef_search, k)}, where
           ef_search is the query's or else the spec's (Milvus refuses an ef below k).
- ivfpq -> IVF_PQ {nlist, m, nbits} where m divides the dimension (Milvus' own rule for PQ), and
           IVF_SQ8 {nlist} where it does not (8 bits a dimension: 4 times smaller than the vectors,
           where PQ with the spec's m would be refused); search {nprobe: min(nprobe, nlist)}.
           `nlist` 0 (the local store's "from the data") is NLIST here: Milvus trains each segment
           when it seals, before any count is known to neardex. `refine` has no Milvus
           counterpart for IVF_PQ and is not applied (the local store re-ranks from its copy).
- auto  -> HNSW with the hnsw defaults. The local store starts flat and moves to HNSW, then IVF-PQ,
           as the collection grows; Milvus cannot change a collection's index in place, and it
           searches small and still-growing segments exhaustively anyway, so HNSW from the start
           costs nothing while the collection is small. `memory_mb` is not consulted: Milvus
           places segments on its query nodes by their own memory.

Build parameters go to Milvus as one JSON `params` value (the form pymilvus 2 sent and Milvus
reads beside its flattened keys), because milvus-lite reads only that form: pymilvus 3 flattens
`params`, and milvus-lite then silently builds with its own defaults (M 16, efConstruction 200,
nlist 128).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import InvalidArgument
from ...records import DEFAULT_PARAMS, IndexSpec

# IVF lists per segment when the spec leaves nlist to the store: about 4 x sqrt(n) for segments of
# 65,000 vectors, and within Milvus' 1..65,536.
NLIST = 1024
METRIC = "IP"


@dataclass(frozen=True)
class MilvusIndex:
    """What a spec builds in Milvus: `kind` is what neardex reports (CollectionInfo.index_kind)."""

    kind: str
    index_type: str
    build: dict[str, int]
    # The spec's search-time defaults: ef for HNSW, nprobe for the IVF kinds.
    ef_search: int = 0
    nprobe: int = 0

    @property
    def index_params(self) -> dict[str, Any]:
        """The create-time request for the `dense` field."""
        return {"index_type": self.index_type, "metric_type": METRIC, "params": dict(self.build)}

    def search_params(self, k: int, ef_search: int = 0, nprobe: int = 0) -> dict[str, Any]:
        """The request of one search for k hits; 0 takes the spec's value."""
        if self.index_type == "HNSW":
            return {"metric_type": METRIC, "params": {"ef": max(ef_search or self.ef_search, k)}}
        if self.index_type in ("IVF_PQ", "IVF_SQ8"):
            return {"metric_type": METRIC, "params": {"nprobe": min(nprobe or self.nprobe, self.build["nlist"])}}
        return {"metric_type": METRIC}


def milvus_index(spec: IndexSpec, dimension: int) -> MilvusIndex:
    """The Milvus index for a collection's spec and vector dimension; InvalidArgument naming
    `index.params` for a value Milvus would refuse."""
    params = spec.params
    if spec.kind == "flat":
        return MilvusIndex("flat", "FLAT", {})
    if spec.kind in ("hnsw", "auto"):
        hnsw = params if spec.kind == "hnsw" else DEFAULT_PARAMS["hnsw"]
        _check(hnsw, "m", 2, 2048)
        _check(hnsw, "ef_construction", 1, 1 << 31)
        _check(hnsw, "ef_search", 1, 32_768)
        return MilvusIndex("hnsw", "HNSW", {"M": hnsw["m"], "efConstruction": hnsw["ef_construction"]},
                           ef_search=hnsw["ef_search"])
    if spec.kind == "ivfpq":
        nlist = params["nlist"] or NLIST
        _check({"nlist": nlist}, "nlist", 1, 65_536)
        _check(params, "nprobe", 1, 65_536)
        if params["m"] and dimension % params["m"] == 0:
            _check(params, "nbits", 1, 24)
            return MilvusIndex("ivfpq", "IVF_PQ", {"nlist": nlist, "m": params["m"], "nbits": params["nbits"]},
                               nprobe=params["nprobe"])
        return MilvusIndex("ivfsq8", "IVF_SQ8", {"nlist": nlist}, nprobe=params["nprobe"])
    raise InvalidArgument(f"index.kind: the Milvus store has no index for {spec.kind!r}")


def _check(params: dict[str, int], name: str, low: int, high: int) -> None:
    if not low <= params[name] <= high:
        raise InvalidArgument(f"index.params: {name} {params[name]} is outside Milvus' {low}..{high}")
