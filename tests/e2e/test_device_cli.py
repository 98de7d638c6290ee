"""`--device` at the command line: `neardex index` and `neardex serve` refuse a GPU that is not
there before doing anything, by name (never falling back to the CPU in silence), and `index
--server` refuses a device, since the server's model does the embedding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support.paths import SAMPLES
from tests.support.processes import run_cli

HAS_CUDA = torch.cuda.is_available()


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA device")
def test_index_and_serve_refuse_a_missing_gpu_before_doing_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run_cli("index", str(SAMPLES), "--collection", "docs", "--data-dir", str(data),
                     "--device", "cuda", "--quiet", check=False)
    assert result.returncode != 0
    assert "device: cuda asked for, but torch sees 0 CUDA device(s)" in result.stderr
    assert not data.exists()
    result = run_cli("serve", "--data-dir", str(data), "--port", "0", "--metrics-port", "0",
                     "--device", "cuda:1", check=False, timeout=120)
    assert result.returncode != 0
    assert "device: cuda:1 asked for" in result.stderr


def test_index_device_is_for_local_embedding_only(tmp_path: Path) -> None:
    result = run_cli("index", str(SAMPLES), "--collection", "docs", "--server", "127.0.0.1:1",
                     "--device", "cpu", check=False)
    assert result.returncode != 0 and "--device: the model runs here only without --server" in result.stderr
