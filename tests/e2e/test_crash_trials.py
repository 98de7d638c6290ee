"""The short, fixed-seed form of tests/support/crash_trials.py: one trial of each kind (a random
moment, the HNSW rebuild, IVF-PQ training, a snapshot being written), each killing a real server
with SIGKILL under a mixed workload. The 50-trial run is the script's own."""

from __future__ import annotations

from pathlib import Path

from tests.support.crash_trials import KINDS, run_trials


def test_kill_9_under_a_mixed_workload_loses_and_half_applies_nothing(tmp_path: Path) -> None:
    results = run_trials(len(KINDS), seed=7, work=tmp_path, log=lambda line: None)
    problems = [f"trial {r.trial} ({r.kind}): {p}" for r in results for p in r.problems]
    assert problems == []
    assert all(r.lost == 0 and r.half_applied == 0 and r.check_clean for r in results)
    assert all(r.killed_at_event for r in results if r.kind != "random"), [(r.kind, r.killed_at_event) for r in results]
    assert all(r.acknowledged_writes > 0 and r.documents_checked > 2000 for r in results)
    assert sum(r.search_found for r in results) == sum(r.search_sample for r in results) > 0
    assert sum(r.metadata_updates for r in results) > 0
