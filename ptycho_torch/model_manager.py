"""Save and load the torch model bundle: ``manifest.json`` (backend "pytorch") beside
``checkpoints/last.ckpt``.

Loading checks the manifest first, so a TensorFlow model gives the error naming both backends
(:class:`ptycho.model_manifest.BackendMismatchError`) instead of a deserialisation failure, then
reads the checkpoint with ``torch.load(weights_only=True)`` (no arbitrary pickles from a file that
may come from elsewhere) and rebuilds the network from the checkpoint's hyperparameters. Plain
torch: no Lightning import (``load_lightning_module`` is there when the LightningModule is wanted).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho.model_manifest import (
    MANIFEST_NAME,
    TORCH_CHECKPOINT,
    ModelArtifactError,
    make_manifest,
    read_manifest,
    require_backend,
    write_manifest,
)

__all__ = [
    "TorchBundle",
    "save_torch_bundle",
    "load_torch_bundle",
    "checkpoint_path_of",
    "load_lightning_module",
    "initial_network",
    "NETWORK_PREFIX",
]

NETWORK_PREFIX = "network."


@dataclass
class TorchBundle:
    """A loaded model: the network (eval mode) and the configurations it was trained with."""

    network: Any  # ptycho_torch.network.PtychoPINN
    hyper_parameters: dict[str, Any]
    model_config: ModelConfig
    training_config: TrainingConfig
    inference_config: InferenceConfig
    manifest: dict[str, Any]
    checkpoint_path: Path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_torch_bundle(output_dir: Path | str, hyper_parameters: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Write ``manifest.json`` for the checkpoint already at ``output_dir/checkpoints/last.ckpt``."""
    output_dir = Path(output_dir)
    ckpt = output_dir / TORCH_CHECKPOINT
    if not ckpt.is_file():
        raise ModelArtifactError(f"{output_dir}: no checkpoint at {TORCH_CHECKPOINT}; nothing to describe")
    manifest = make_manifest(
        "pytorch",
        hyper_parameters,
        {"checkpoint": str(TORCH_CHECKPOINT), "checkpoint_sha256": _sha256(ckpt), **(extra or {})},
    )
    return write_manifest(output_dir, manifest)


def checkpoint_path_of(model_path: Path | str) -> tuple[Path, dict[str, Any]]:
    """The checkpoint a model path refers to, and its manifest (after the backend check)."""
    model_path = Path(model_path)
    manifest = require_backend(model_path, "pytorch")
    if model_path.is_dir():
        ckpt = model_path / manifest.get("checkpoint", str(TORCH_CHECKPOINT))
        if not ckpt.is_file():
            raise ModelArtifactError(f"{model_path}: {MANIFEST_NAME} names {ckpt.relative_to(model_path)}, which is missing")
    else:
        ckpt = model_path
    return ckpt, manifest


def _read_checkpoint(ckpt: Path, map_location: Any) -> dict[str, Any]:
    import pickle
    import zipfile

    import torch

    try:
        checkpoint = torch.load(ckpt, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelArtifactError(f"{ckpt}: not a readable torch checkpoint ({first})") from None
    if not isinstance(checkpoint, dict):
        raise ModelArtifactError(f"{ckpt}: expected a checkpoint dict, found {type(checkpoint).__name__}")
    for key in ("hyper_parameters", "state_dict"):
        if not checkpoint.get(key):
            raise ModelArtifactError(f"{ckpt}: checkpoint lacks {key!r} (ARTIF-001); it was not written by this backend's trainer")
    return checkpoint


def load_torch_bundle(model_path: Path | str, map_location: Any = "cpu") -> TorchBundle:
    """Load a saved model directory (or a bare ``last.ckpt``) into a plain-torch network."""
    import torch

    from ptycho_torch.config_bridge import HyperparameterError, validate_hyperparameters
    from ptycho_torch.network import PtychoPINN

    ckpt, manifest = checkpoint_path_of(model_path)
    if "checkpoint_sha256" in manifest and _sha256(ckpt) != manifest["checkpoint_sha256"]:
        raise ModelArtifactError(f"{ckpt}: checksum differs from {MANIFEST_NAME}; the checkpoint was modified or truncated")
    checkpoint = _read_checkpoint(ckpt, map_location)
    hparams = dict(checkpoint["hyper_parameters"])
    try:
        training, inference = validate_hyperparameters(hparams)
    except HyperparameterError as exc:
        raise ModelArtifactError(f"{ckpt}: invalid hyper_parameters: {exc}") from None
    state = {k[len(NETWORK_PREFIX):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(NETWORK_PREFIX)}
    probe = state.get("physics.probe")
    if probe is None:
        raise ModelArtifactError(f"{ckpt}: state_dict lacks the probe buffer {NETWORK_PREFIX}physics.probe")
    network = PtychoPINN(training.model, probe.to("cpu"))
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelArtifactError(f"{ckpt}: weights do not fit the architecture in its hyper_parameters ({str(exc).splitlines()[0]})") from None
    network.eval()
    return TorchBundle(network, hparams, training.model, training, inference, manifest, ckpt)


def load_lightning_module(model_path: Path | str, map_location: Any = "cpu"):
    """The :class:`~ptycho_torch.model.PtychoPINN_Lightning` of a saved model (imports Lightning)."""
    from ptycho_torch.model import PtychoPINN_Lightning

    ckpt, _ = checkpoint_path_of(model_path)
    _read_checkpoint(ckpt, map_location)  # the weights-only check before Lightning's own loader
    return PtychoPINN_Lightning.load_from_checkpoint(ckpt, map_location=map_location, weights_only=True)


def initial_network(bundle: TorchBundle):
    """The network as the bundle's training began: same architecture, probe and seed, hence the same
    initial weights (training seeds torch, then builds the module, which builds the network first).
    The reference for "did training do anything"."""
    import torch

    from ptycho_torch.config_bridge import seed_from
    from ptycho_torch.network import PtychoPINN

    torch.manual_seed(seed_from(bundle.hyper_parameters))
    network = PtychoPINN(bundle.model_config, bundle.network.physics.probe.detach().cpu().clone())
    return network.eval()
