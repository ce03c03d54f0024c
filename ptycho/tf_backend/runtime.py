"""How the TensorFlow backend imports TensorFlow: with oneDNN's CPU kernels on, quietly.

TensorFlow enables its oneDNN kernels by default only on CPUs with AVX-512/AMX; on others (this
project's AVX2 machines) it falls back to Eigen, whose convolution gradients measured about 3x
slower per training step here (benchmarks/backends.py). ``TF_ENABLE_ONEDNN_OPTS=1`` is therefore set
unless the user chose otherwise, before the first ``import tensorflow``. TensorFlow then announces
it on stderr at import (an INFO line its log level cannot silence, as it comes before logging is
set up); with ``TF_CPP_MIN_LOG_LEVEL >= 1`` that import-time chatter is dropped, so a command's
stderr carries only what the command says. Errors raised by the import still propagate.

Every TensorFlow module of this package imports ``tf`` from here.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator

__all__ = ["tf", "ONEDNN_ENV"]

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


@contextlib.contextmanager
def _stderr_to_scratch() -> Iterator[None]:
    """Send file descriptor 2 (C++ logging too) to a scratch file for the duration; on an error the
    captured text is replayed so nothing needed for a diagnosis is lost."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (embedded, captured): nothing to do
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as scratch:
        os.dup2(scratch.fileno(), fd)
        try:
            yield
        except BaseException:
            os.dup2(saved, fd)
            scratch.seek(0)
            os.write(fd, scratch.read())
            raise
        finally:
            os.dup2(saved, fd)
            os.close(saved)


def _import_tensorflow():
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault(ONEDNN_ENV, "1")
    quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() not in ("", "0")
    with _stderr_to_scratch() if quiet else contextlib.nullcontext():
        import tensorflow

    return tensorflow


tf = _import_tensorflow()
