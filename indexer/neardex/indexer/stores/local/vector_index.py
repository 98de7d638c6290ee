"""FAISS indexes with 64-bit ids: flat (exact), HNSW and IVF-PQ with exact re-ranking.

All three answer the same calls (add, remove, search with an id filter, save, load). FAISS cannot
remove vectors from an HNSW graph, so there removed ids become tombstones that searches exclude,
and the collection rebuilds the index from its stored vectors when tombstones pile up
(needs_rebuild). IVF-PQ must be trained, so it stays exact until enough vectors exist to train it
(needs_rebuild again), and is trained again when the collection outgrows its lists; trained, it
removes ids itself. IVF-PQ keeps its ids in its own inverted
lists, with no id map beside them, so a vector costs its code plus one id.

A large snapshot is opened memory-mapped (load(mmap=True)): searches read it in place, and the
first write reads it whole, since FAISS cannot modify a mapped index.

An HNSW snapshot is three files: the graph (the snapshot file itself), its vectors (`.vectors`, a
flat index) and its ids (`.ids.npy`). Opening reads the graph and the ids, and maps the vectors,
so a cold open reads a sixth of what one file holding all three would make it read: searches
touch the vectors they need as they go.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from ...errors import InvalidArgument
from ...files import replace_durably
from ...records import IndexSpec

MMAP_FLAT = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
MMAP_IVF = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY

# Rebuild HNSW when this share of its vectors are tombstones.
TOMBSTONE_REBUILD_SHARE = 0.2


def _ivf_nlist(spec: IndexSpec, n: int) -> int:
    # FAISS wants about 39 training points per list; sqrt(n) lists is the usual starting point.
    return spec.params.get("nlist") or max(1, min(int(4 * np.sqrt(n)), n // 39))


class VectorIndex:
    def __init__(self, index: faiss.Index, spec: IndexSpec, dimension: int,
                 tombstones: set[int] | None = None, mapped_from: Path | None = None) -> None:
        # Full vectors by id for IVF-PQ's exact re-ranking; the collection reads them from its store.
        self.fetch_vectors: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
        self.index = index
        self.spec = spec  # as the collection asked for it, possibly auto
        # The kind and parameters in force: for auto, what the FAISS structure is.
        self.concrete = spec if spec.kind != "auto" else IndexSpec.parse(_structure_kind(index))
        self.dimension = dimension
        self.tombstones: set[int] = tombstones or set()
        # The selector excluding the tombstones, built by the first search after they change:
        # a selector over 200,000 ids costs milliseconds to build, too much for every query.
        self._excluded: faiss.IDSelector | None = None
        # The snapshot file a memory-mapped index reads from; None once the index is in memory.
        self.mapped_from = mapped_from

    # -- construction -------------------------------------------------------------------------

    @staticmethod
    def empty(spec: IndexSpec, dimension: int) -> VectorIndex:
        if spec.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dimension, spec.params["m"], faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = spec.params["ef_construction"]
            inner.hnsw.efSearch = spec.params["ef_search"]
            return VectorIndex(faiss.IndexIDMap2(inner), spec, dimension)
        # ivfpq before training and flat are both exact.
        return VectorIndex(faiss.IndexIDMap2(faiss.IndexFlatIP(dimension)), spec, dimension)

    @staticmethod
    def build(requested: IndexSpec, dimension: int, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        spec = requested.resolve(len(ids), dimension)
        if spec.kind == "ivfpq" and len(ids) >= VectorIndex.ivfpq_min_train(spec):
            nlist = _ivf_nlist(spec, len(ids))
            quantizer = faiss.IndexFlatIP(dimension)
            ivf = faiss.IndexIVFPQ(quantizer, dimension, nlist, spec.params["m"],
                                   spec.params["nbits"], faiss.METRIC_INNER_PRODUCT)
            ivf.nprobe = spec.params["nprobe"]
            sample = vectors
            # 64 points per list trains the centroids well enough and four times faster than
            # FAISS's default cap of 256.
            if len(vectors) > nlist * 64:
                rng = np.random.default_rng(0)
                sample = vectors[rng.choice(len(vectors), nlist * 64, replace=False)]
            ivf.train(sample)
            # Only the PQ codes live in memory; the exact re-ranking reads the candidates' full
            # vectors from the store (fetch_vectors), so a vector costs its code plus its id.
            index = VectorIndex(ivf, requested, dimension)
        else:
            index = VectorIndex.empty(spec, dimension)
            index.spec = requested
        if len(ids):
            index.add(ids, vectors)
        return index

    @staticmethod
    def ivfpq_min_train(spec: IndexSpec) -> int:
        return max(39 * (spec.params.get("nlist") or 64), 2 ** spec.params.get("nbits", 8) * 39)

    @property
    def trained_kind(self) -> str:
        """What the FAISS structure really is now (ivfpq stays exact until trained)."""
        if self.concrete.kind == "ivfpq" and not isinstance(self.index, faiss.IndexIVF):
            return "flat"
        return self.concrete.kind

    def ids(self) -> np.ndarray:
        """Every id the FAISS structure holds, tombstones included."""
        if isinstance(self.index, faiss.IndexIVF):
            lists = self.index.invlists
            return np.concatenate([np.zeros(0, dtype=np.int64)] + [
                faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                for i in range(lists.nlist) if lists.list_size(i)])
        return faiss.vector_to_array(self.index.id_map)

    # -- updates ------------------------------------------------------------------------------

    def _in_memory(self) -> None:
        """Read a mapped index whole before its first change."""
        if self.mapped_from is not None:
            self.index = _read(self.mapped_from)
            self.mapped_from = None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._in_memory()
            self.tombstones.difference_update(int(i) for i in ids)
            self._excluded = None
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                    np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        if self.trained_kind != "hnsw":
            self._in_memory()
            self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))
        else:
            self.tombstones.update(int(i) for i in ids)
            self._excluded = None

    def forget_tombstones(self, ids: set[int]) -> int:
        """Drop these ids from the tombstones; how many were there."""
        dropped = len(self.tombstones & ids)
        if dropped:
            self.tombstones -= ids
            self._excluded = None
        return dropped

    @property
    def live(self) -> int:
        return int(self.index.ntotal) - len(self.tombstones)

    def needs_rebuild(self) -> bool:
        if len(self.tombstones) > TOMBSTONE_REBUILD_SHARE * max(self.index.ntotal, 1):
            return True
        if self.spec.kind == "auto" and self.spec.resolve(self.live, self.dimension).kind != self.concrete.kind:
            return True  # grown past what its kind suits
        if self.concrete.kind != "ivfpq":
            return False
        if self.trained_kind == "flat":
            return self.live >= self.ivfpq_min_train(self.concrete)
        # Lists sized for the collection when it was trained get long as it grows: retrain when
        # its size now calls for twice as many.
        return not self.concrete.params["nlist"] and _ivf_nlist(self.concrete, self.live) >= 2 * self.index.nlist

    # -- search -------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               ef_search: int = 0, nprobe: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k nearest live vectors per query; id -1 pads short lists."""
        k = max(1, min(k, self.live)) if self.live else 1
        selector = self._selector(allowed)
        params: faiss.SearchParameters
        kind = self.trained_kind
        if kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=selector) if selector else faiss.SearchParametersHNSW()
            params.efSearch = max(ef_search or self.concrete.params["ef_search"], k)
        elif kind == "ivfpq":
            params = faiss.SearchParametersIVF(sel=selector) if selector else faiss.SearchParametersIVF()
            params.nprobe = nprobe or self.concrete.params["nprobe"]
            if self.fetch_vectors is not None:
                return self._refined(queries, k, params)
        else:
            params = faiss.SearchParameters(sel=selector) if selector else faiss.SearchParameters()
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k,
                                        params=params)
        return scores, ids

    def _refined(self, queries: np.ndarray, k: int, params: faiss.SearchParameters) -> tuple[np.ndarray, np.ndarray]:
        """IVF-PQ candidates (refine x k of them) re-ranked by exact inner product."""
        assert self.fetch_vectors is not None
        wide = max(k, int(k * self.concrete.params["refine"]))
        _, candidates = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), wide, params=params)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, cand) in enumerate(zip(queries, candidates)):
            cand, vectors = self.fetch_vectors(cand[cand >= 0])
            if not len(cand):
                continue
            exact = vectors @ query
            order = np.argsort(-exact)[:k]
            scores[row, : len(order)] = exact[order]
            ids[row, : len(order)] = cand[order]
        return scores, ids

    def exact_search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Ids of the exact k nearest live vectors, from the full vectors HNSW keeps beside its
        graph. IVF-PQ keeps only codes, so it has no exact search in memory."""
        if isinstance(self.index, faiss.IndexIVF):
            raise NotImplementedError("IVF-PQ keeps no full vectors in memory")
        inner = faiss.downcast_index(self.index.index)
        if isinstance(inner, faiss.IndexHNSW):
            flat = faiss.downcast_index(inner.storage)
        else:
            flat = inner
        id_map = faiss.vector_to_array(self.index.id_map)
        params = None
        if self.tombstones:
            internal = np.flatnonzero(np.isin(id_map, np.fromiter(self.tombstones, dtype=np.int64)))
            params = faiss.SearchParameters(sel=faiss.IDSelectorNot(faiss.IDSelectorBatch(internal)))
        _, internal_ids = flat.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        return np.where(internal_ids >= 0, id_map[np.maximum(internal_ids, 0)], -1)

    def _selector(self, allowed: np.ndarray | None) -> faiss.IDSelector | None:
        selectors: list[faiss.IDSelector] = []
        if allowed is not None:
            selectors.append(faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64)))
        if self.tombstones:
            selectors.append(self._live_selector())
        if not selectors:
            return None
        selector = selectors[0]
        for other in selectors[1:]:
            selector = faiss.IDSelectorAnd(selector, other)
        # FAISS keeps raw pointers: hold the parts alive as long as the combined selector.
        selector.parts = selectors  # type: ignore[attr-defined]
        return selector

    def _live_selector(self) -> faiss.IDSelector:
        """Every id but the tombstones; callers hold the collection's read lock, writers (which
        change the tombstones) its write lock."""
        if self._excluded is None:
            dead = faiss.IDSelectorBatch(np.fromiter(self.tombstones, dtype=np.int64,
                                                     count=len(self.tombstones)))
            excluded = faiss.IDSelectorNot(dead)
            excluded.parts = [dead]  # type: ignore[attr-defined]  # FAISS keeps a raw pointer
            self._excluded = excluded
        return self._excluded

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write atomically: the rename of the index file is the commit point (its companions are
        durable before it), so a crash leaves the previous snapshot in force, never half of this
        one."""
        # A mapped IVF index would write a reference to its source file, not its lists.
        self._in_memory()
        # The snapshot's name is new (see index_cache.py), so no older companion can pair with it.
        if self.tombstones:
            _write(_tomb_path(path), lambda tmp: _save_array(tmp, np.fromiter(self.tombstones, dtype=np.int64)))
        if self.trained_kind == "hnsw":
            graph = faiss.downcast_index(self.index.index)
            _write(_vectors_path(path), lambda tmp: faiss.write_index(graph.storage, str(tmp)))
            _write(_ids_path(path), lambda tmp: _save_array(tmp, faiss.vector_to_array(self.index.id_map)))
            _write(path, lambda tmp: faiss.write_index(graph, str(tmp), faiss.IO_FLAG_SKIP_STORAGE))
        else:
            _write(path, lambda tmp: faiss.write_index(self.index, str(tmp)))

    @staticmethod
    def load(path: Path, spec: IndexSpec, dimension: int, mmap: bool = False) -> VectorIndex:
        index, mapped = None, None
        # Flat vectors (flat, HNSW's storage) map with IO_FLAG_MMAP_IFC, IVF lists with
        # IO_FLAG_MMAP alone (it refuses the other); whatever maps neither is read whole.
        if _vectors_path(path).exists():
            index, mapped = _read_hnsw(path, MMAP_FLAT if mmap else 0), path if mmap else None
        for flags in (MMAP_FLAT, MMAP_IVF) if mmap and index is None else ():
            try:
                index, mapped = faiss.read_index(str(path), flags), path
                break
            except RuntimeError:
                continue
        if index is None:
            index = faiss.read_index(str(path))
        tomb = _tomb_path(path)
        tombstones = {int(i) for i in np.load(tomb)} if tomb.exists() else set()
        if index.d != dimension:
            raise InvalidArgument(f"index: stored index has dimension {index.d}, expected {dimension}")
        return VectorIndex(index, spec, dimension, tombstones, mapped)


def _structure_kind(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexIVF):
        return "ivfpq"
    if isinstance(index, faiss.IndexIDMap2) and isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW):
        return "hnsw"
    return "flat"


def _read(path: Path) -> faiss.Index:
    """The snapshot whole, in memory."""
    if _vectors_path(path).exists():
        return _read_hnsw(path, 0)
    return faiss.read_index(str(path))


def _read_hnsw(path: Path, vector_flags: int) -> faiss.Index:
    """An HNSW snapshot of three files as one IndexIDMap2: the graph read, the vectors read with
    vector_flags (MMAP_FLAT maps them), the ids read."""
    graph = faiss.read_index(str(path), faiss.IO_FLAG_SKIP_STORAGE)
    vectors = faiss.read_index(str(_vectors_path(path)), vector_flags)
    ids = np.load(_ids_path(path))
    if vectors.ntotal != graph.ntotal or len(ids) != graph.ntotal:
        raise InvalidArgument(f"index: {path.name} has {graph.ntotal} graph nodes, {vectors.ntotal} vectors"
                              f" and {len(ids)} ids: its files do not belong together")
    graph.storage = vectors
    graph.own_fields = False
    # IndexIDMap2 takes only an empty index: wrap a placeholder, then put the graph in its place.
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(graph.d))
    index.own_fields = False
    index.index = graph
    index.ntotal = graph.ntotal
    faiss.copy_array_to_vector(np.ascontiguousarray(ids, dtype=np.int64), index.id_map)
    index.construct_rev_map()
    # FAISS holds raw pointers to these: the wrapper keeps them alive as long as itself.
    index.referenced_objects = [graph, vectors]
    return index


def _write(path: Path, write: Callable[[Path], object]) -> None:
    """write(tmp) then a durable rename to path; a failed write leaves nothing behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written file only takes space
        raise


def _save_array(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as fh:  # a handle: np.save would add .npy to a name that lacks it
        np.save(fh, array)


def companions(path: Path) -> list[Path]:
    """The files a snapshot may have beside it: tombstones, and an HNSW snapshot's vectors and ids."""
    return [_tomb_path(path), _vectors_path(path), _ids_path(path)]


def _tomb_path(path: Path) -> Path:
    return path.with_name(path.name + ".tomb.npy")


def _vectors_path(path: Path) -> Path:
    return path.with_name(path.name + ".vectors")


def _ids_path(path: Path) -> Path:
    return path.with_name(path.name + ".ids.npy")

