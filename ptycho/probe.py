"""The legacy global probe, ``ptycho.probe.set_probe_guess`` (ptychodus calls it before inference).

The library keeps the probe inside the model (it travels in the weights archive), so the global is
a record for legacy readers: ``params.get('probe')`` after ``set_probe_guess``. The object patches
a model predicts do not depend on it (the probe enters only the physics that training uses).
"""

from __future__ import annotations

import numpy as np

from ptycho import params

__all__ = ["set_probe_guess", "get_probe", "single_probe"]


def single_probe(probe: np.ndarray) -> np.ndarray:
    """One coherent probe, complex64 (N, N), from (N, N), a one-mode stack (1, N, N) or the
    legacy TF layout (N, N, 1); anything else is refused."""
    p = np.asarray(probe)
    if p.ndim == 3 and 1 in (p.shape[0], p.shape[-1]):
        # (1, N, N) from ptychodus's mode stack, (N, N, 1) from the legacy TF layout.
        p = p[0] if p.shape[0] == 1 else p[..., 0]
    if p.ndim != 2 or p.shape[0] != p.shape[1]:
        raise ValueError(f"probe_guess: expected one square probe (N, N), (1, N, N) or (N, N, 1), got shape {np.shape(probe)}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probe_guess: expected finite values, found NaN or Inf")
    return p.astype(np.complex64)


def set_probe_guess(X_train: np.ndarray | None = None, probe_guess: np.ndarray | None = None) -> np.ndarray:
    """Record ``probe_guess`` as the global probe (``params.cfg['probe']``, complex64 (N, N)).

    ``X_train`` is the legacy way to ask for a probe estimated from the diffraction data: not
    implemented, so a call without ``probe_guess`` is refused. The probe's size must match
    ``params.cfg['N']``.
    """
    if probe_guess is None:
        raise ValueError(
            "set_probe_guess: probe_guess is required; estimating a probe from X_train is not implemented"
        )
    probe = single_probe(probe_guess)
    n = int(params.get("N"))
    if probe.shape != (n, n):
        raise ValueError(
            f"probe_guess: shape {probe.shape} does not match params.cfg['N'] = {n}; "
            f"call update_legacy_dict with the model's config first"
        )
    params.set("probe", probe)
    return probe


def get_probe() -> np.ndarray:
    """The probe recorded by :func:`set_probe_guess`."""
    if "probe" not in params.cfg:
        raise KeyError("params.cfg: no probe recorded; call ptycho.probe.set_probe_guess(None, probe) first")
    return params.cfg["probe"]
