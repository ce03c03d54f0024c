"""PyTorch Lightning backend of PtychoPINN.

Without the ``ptycho`` extra (lightning, the shared layer's numpy/scipy stack) importing it raises an
ImportError naming that extra. POLICY-001: torch is mandatory for this package; importing it where
only torch is missing raises the brief's actionable RuntimeError instead of failing later with a
cryptic error.
"""

from __future__ import annotations

from ptycho import require_extra  # the shared layer checks its own requirements on import
from ptycho.backend_interface import TORCH_UNAVAILABLE_MESSAGE  # the brief's §1.3 text, defined once

require_extra("ptycho_torch", {"lightning": "lightning"})

try:
    import torch as _torch  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess test
    raise RuntimeError(TORCH_UNAVAILABLE_MESSAGE) from _exc
