"""The backend dispatcher (brief §1.4): one entry point for training and one for loading a model,
routing to the TensorFlow or the PyTorch implementation named by ``config.backend``.

Guarantees, in this order:

1. CONFIG-001: ``update_legacy_dict(params.cfg, config)`` runs first, before ``config.backend`` is
   inspected or any backend module is imported (backend modules read ``params.cfg``).
2. ``backend`` must be ``'tensorflow'`` or ``'pytorch'``; anything else is a ``ValueError`` naming the
   valid literals (and ``params.cfg`` is left as it was).
3. The TensorFlow path imports ``ptycho.workflows.components`` (the brief's name for it; the backend
   is :mod:`ptycho.tf_backend`) and never torch.
4. The PyTorch path without an importable torch raises the brief's §1.3 ``RuntimeError``; there is
   no silent fallback to TensorFlow.
5. ``results['backend']`` names the backend that produced the results.

``ptycho-train`` / ``ptycho-infer`` (and ``python -m ptycho_torch.train`` / ``.inference``) go
through :func:`train_with_backend` and :func:`load_model_with_backend`; library callers through
:func:`run_cdi_example_with_backend` and :func:`load_inference_bundle_with_backend`. Every route
hands out the backend's :class:`ptycho.backend_interface.Backend` adapter (the ``BACKEND`` of its
workflow module) only after the checks above.

This module imports neither TensorFlow nor torch at import time.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from ptycho import params
from ptycho.backend_interface import TORCH_UNAVAILABLE_MESSAGE, Backend, LoadedModel, TrainingOptions
from ptycho.config.config import InferenceConfig, TrainingConfig, legacy_items, update_legacy_dict, validate_backend

__all__ = [
    "TORCH_UNAVAILABLE_MESSAGE",
    "run_cdi_example_with_backend",
    "load_inference_bundle_with_backend",
    "select_backend",
    "train_with_backend",
    "load_model_with_backend",
    "backend_components",
]

_TORCH_MODEL_MANAGER = "ptycho_torch.model_manager"
_COMPONENTS = {
    "tensorflow": "ptycho.workflows.components",
    "pytorch": "ptycho_torch.workflows.components",
}


def _sync_and_select(config: TrainingConfig | InferenceConfig) -> str:
    """CONFIG-001 first, then the backend literal; a bad literal leaves ``params.cfg`` untouched."""
    saved = dict(params.cfg)
    update_legacy_dict(params.cfg, config)
    try:
        return validate_backend(getattr(config, "backend", None))
    except ValueError:
        params.cfg.clear()
        params.cfg.update(saved)
        raise


def backend_components(backend: str) -> ModuleType:
    """The workflow module of ``backend``; the §1.3 ``RuntimeError`` if torch is missing."""
    backend = validate_backend(backend)
    if backend == "pytorch":
        try:
            importlib.import_module("torch")
        except ImportError as exc:
            raise RuntimeError(TORCH_UNAVAILABLE_MESSAGE) from exc
        try:
            return importlib.import_module(_COMPONENTS[backend])
        except ImportError as exc:
            # torch imports but a part of the stack (e.g. lightning) does not: same policy, with the cause.
            raise RuntimeError(f"{TORCH_UNAVAILABLE_MESSAGE}\nCause: {exc}") from exc
    return importlib.import_module(_COMPONENTS[backend])


def run_cdi_example_with_backend(
    train_data: Any,
    test_data: Any,
    config: TrainingConfig,
    do_stitching: bool = False,
    **options: Any,
) -> tuple[Any, Any, dict[str, Any]]:
    """Train on ``train_data`` and reconstruct ``test_data`` with ``config.backend``.

    Returns ``(amplitude, phase, results)`` exactly as the backend's ``run_cdi_example`` /
    ``run_cdi_example_torch`` does, with ``results['backend']`` set. ``options`` (``flip_x``,
    ``flip_y``, ``transpose``, ``M``) pass through to the backend.
    """
    backend = _sync_and_select(config)
    components = backend_components(backend)
    run = components.run_cdi_example if backend == "tensorflow" else components.run_cdi_example_torch
    amplitude, phase, results = run(train_data, test_data, config, do_stitching=do_stitching, **options)
    results = dict(results)
    results["backend"] = backend
    return amplitude, phase, results


def load_inference_bundle_with_backend(
    bundle_dir: Path | str, config: InferenceConfig | TrainingConfig
) -> tuple[Any, dict[str, Any]]:
    """Load the model saved under ``bundle_dir`` with ``config.backend``.

    Returns ``(model, params_dict)``: the Keras model or the torch network (eval mode), and the
    legacy parameters it was saved with plus ``model_config``, ``manifest`` and ``backend``. An
    artifact of the other backend raises :class:`ptycho.model_manifest.BackendMismatchError`
    naming both backends and the path; a damaged one :class:`ptycho.model_manifest.ModelArtifactError`.
    """
    backend = _sync_and_select(config)
    if backend == "tensorflow":
        model, saved = backend_components(backend).load_inference_bundle(bundle_dir)
    else:
        backend_components(backend)  # the POLICY-001 check, with the brief's message
        bundle = importlib.import_module(_TORCH_MODEL_MANAGER).load_torch_bundle(bundle_dir)
        model = bundle.network
        saved = {
            **legacy_items(bundle.inference_config),
            "model_config": bundle.model_config,
            "manifest": bundle.manifest,
            "hyper_parameters": bundle.hyper_parameters,
        }
    saved = dict(saved)
    saved["backend"] = backend
    return model, saved


def select_backend(config: TrainingConfig | InferenceConfig) -> Backend:
    """The :class:`~ptycho.backend_interface.Backend` adapter of ``config.backend``, after the
    CONFIG-001 sync; the §1.3 ``RuntimeError`` if it is the PyTorch one and torch is missing."""
    return backend_components(_sync_and_select(config)).BACKEND


def train_with_backend(
    train_data: Any, test_data: Any, config: TrainingConfig, options: TrainingOptions
) -> dict[str, Any]:
    """Train (and save) with ``config.backend``: :meth:`Backend.train`'s results, with
    ``results['backend']``."""
    backend = select_backend(config)
    results = backend.train(train_data, test_data, config, options)
    results["backend"] = backend.name
    return results


def load_model_with_backend(
    config: InferenceConfig, accelerator: str = "cpu", num_threads: int = 1
) -> tuple[Backend, LoadedModel]:
    """Load ``config.model_path`` with ``config.backend``: the adapter (for
    :meth:`Backend.reconstruct`) and the loaded model. ``params.cfg`` is synced twice: with
    ``config`` before routing, then with the loaded model's own config (its N, gridsize and
    neighbour count), so legacy readers see the model in use."""
    if config.model_path is None:
        raise ValueError("model_path: required to load a model")
    backend = select_backend(config)
    loaded = backend.load(config.model_path, accelerator, num_threads)
    update_legacy_dict(params.cfg, loaded.config)
    return backend, loaded
