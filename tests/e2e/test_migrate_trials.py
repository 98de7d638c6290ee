"""The short, fixed-seed form of tests/support/migrate_trials.py: one trial, `neardex migrate`
killed with SIGKILL at random moments (up to three times), then run to the end; nothing lost, nothing
doubled, `neardex check` clean on both stores. The 20-trial run is the script's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.migrate_trials import run

pytest.importorskip("pymilvus")
pytestmark = pytest.mark.slow


def test_kill_9_during_a_migration_then_running_it_again_loses_and_doubles_nothing(tmp_path: Path) -> None:
    summary = run(trials=1, kills=3, seed=5, work=tmp_path)
    assert [p for r in summary["results"] for p in r["problems"]] == []
    assert summary["results"][0]["kills_at"]  # at least the first run was killed midway
