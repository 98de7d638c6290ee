"""The filter language read plainly in Python, and random filters and metadata to test stores
against that reading."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import strategies as st

from neardex.indexer.query.filters import Condition, Filter

MISSING = object()
KEYS = ["a", "b", "n.x", "n.y", "gone"]
SCALARS = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, 2.0, -1.5]), st.sampled_from(["x", "y", "2021-03-01",
                                                                                               "2022-12-31", ""]),
                    st.booleans(), st.none())


def condition_strategy() -> st.SearchStrategy[Condition]:
    non_null = SCALARS.filter(lambda v: v is not None)
    number_bounds = st.dictionaries(st.sampled_from(["gt", "gte", "lt", "lte"]), st.integers(-3, 3), min_size=1)
    text_bounds = st.dictionaries(st.sampled_from(["gt", "gte", "lt", "lte"]),
                                  st.sampled_from(["2021-01-01", "2022-06-30", "x", ""]), min_size=1)
    return st.one_of(
        st.tuples(st.sampled_from(["eq", "ne"]), SCALARS),
        st.tuples(st.sampled_from(["in", "not_in", "contains_any", "contains_all"]), st.lists(non_null, min_size=1,
                                                                                              max_size=3)),
        st.tuples(st.just("range"), st.one_of(number_bounds, text_bounds)),
        st.tuples(st.just("exists"), st.booleans()),
    ).map(lambda pair: Condition(*pair))


def filter_strategy() -> st.SearchStrategy[Filter]:
    leaf = st.dictionaries(st.sampled_from(KEYS), condition_strategy(), min_size=1, max_size=2).map(Filter)
    return st.recursive(leaf, lambda inner: st.builds(
        lambda c, al, an, no: Filter(c, tuple(al), tuple(an), tuple(no)),
        st.dictionaries(st.sampled_from(KEYS), condition_strategy(), max_size=1),
        st.lists(inner, max_size=2), st.lists(inner, max_size=2), st.lists(inner, max_size=1)), max_leaves=6)


# -- the plain Python reading ----------------------------------------------------------------


def value_at(metadata: dict[str, Any], key: str) -> Any:
    value: Any = metadata
    for segment in key.split("."):
        if not isinstance(value, dict) or segment not in value:
            return MISSING
        value = value[segment]
    return value


def same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return isinstance(a, str) and isinstance(b, str) and a == b


def holds(value: Any, test: Any) -> bool:
    """test(value), or test of one element when value is an array."""
    if value is MISSING:
        return False
    return any(test(v) for v in value) if isinstance(value, list) else test(value)


def in_range(value: Any, bounds: dict[str, Any]) -> bool:
    numeric = not any(isinstance(b, str) for b in bounds.values())
    if numeric and not (isinstance(value, int | float) and not isinstance(value, bool)):
        return False
    if not numeric and not isinstance(value, str):
        return False
    ops = {"gt": value.__gt__, "gte": value.__ge__, "lt": value.__lt__, "lte": value.__le__}
    return all(ops[op](bound) for op, bound in bounds.items())


def condition_holds(metadata: dict[str, Any], key: str, cond: Condition, ranges_in_arrays: bool = True) -> bool:
    """ranges_in_arrays False: a range holds for scalar values only (the Milvus store's reading)."""
    value = value_at(metadata, key)
    if cond.op == "eq":
        return value is MISSING or value is None if cond.value is None else holds(value, lambda v: same(v, cond.value))
    if cond.op == "ne":
        return not condition_holds(metadata, key, Condition("eq", cond.value), ranges_in_arrays)
    if cond.op in ("in", "contains_any"):
        return any(condition_holds(metadata, key, Condition("eq", v)) for v in cond.value)
    if cond.op == "contains_all":
        return all(condition_holds(metadata, key, Condition("eq", v)) for v in cond.value)
    if cond.op == "not_in":
        return not condition_holds(metadata, key, Condition("in", cond.value), ranges_in_arrays)
    if cond.op == "range":
        if isinstance(value, list) and not ranges_in_arrays:
            return False
        return holds(value, lambda v: in_range(v, cond.value))
    return (value is not MISSING and value is not None) == cond.value


def matches(metadata: dict[str, Any], flt: Filter, ranges_in_arrays: bool = True) -> bool:
    return (all(condition_holds(metadata, k, c, ranges_in_arrays) for k, c in flt.conditions.items())
            and all(matches(metadata, f, ranges_in_arrays) for f in flt.all)
            and (not flt.any or any(matches(metadata, f, ranges_in_arrays) for f in flt.any))
            and not any(matches(metadata, f, ranges_in_arrays) for f in flt.not_))


def random_metadata(count: int, seed: int = 5) -> list[dict[str, Any]]:
    """Metadata over KEYS: scalars of every kind, arrays, nested objects, missing keys."""
    rng = random.Random(seed)
    pool: list[Any] = [-3, -1, 0, 1, 2, 3, 0.5, 2.0, -1.5, "x", "y", "2021-03-01", "2022-12-31", "", True, False, None]

    def value() -> Any:
        return [rng.choice(pool) for _ in range(rng.randint(0, 3))] if rng.random() < 0.3 else rng.choice(pool)

    documents = []
    for _ in range(count):
        metadata: dict[str, Any] = {}
        for key in ("a", "b"):
            if rng.random() < 0.8:
                metadata[key] = value()
        if rng.random() < 0.7:
            metadata["n"] = {k: value() for k in ("x", "y") if rng.random() < 0.7} if rng.random() < 0.8 else value()
        documents.append(metadata)
    return documents
