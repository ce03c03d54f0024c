"""PyTorch Lightning backend of PtychoPINN.

POLICY-001: torch is mandatory for this package; importing it without torch raises the brief's
actionable RuntimeError instead of failing later with a cryptic error.
"""

from __future__ import annotations

TORCH_UNAVAILABLE_MESSAGE = (
    "PyTorch backend selected but torch module unavailable.\n"
    "Install PyTorch: pip install torch>=2.2\n"
    "See docs/workflows/pytorch.md for installation guidance."
)

try:
    import torch as _torch  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess test
    raise RuntimeError(TORCH_UNAVAILABLE_MESSAGE) from _exc
