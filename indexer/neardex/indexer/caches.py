"""What a machine derives once and keeps, outside every data folder: the model cache.

ONNX builds of a model, the encoder `auto` chose for it on this CPU, and the language
identifier's model unpacked: each costs seconds to minutes to make and is the same for every data
folder and process on the machine, so it is made once, here (NEARDEX_MODEL_CACHE, else
$XDG_CACHE_HOME/neardex or ~/.cache/neardex), and written so that a reader never sees half of it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def machine_cache() -> Path:
    if env := os.environ.get("NEARDEX_MODEL_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "neardex"


def derived_file(name: str, make: Callable[[Path], None]) -> Path | None:
    """machine_cache()/name, made by make(temporary path) and renamed into place the first time;
    None where the cache cannot be written (a read-only home): the caller derives it itself."""
    target = machine_cache() / name
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=target.parent)
        os.close(fd)
        try:
            make(Path(tmp))
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private; a cache is the machine's
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        return None
    return target
