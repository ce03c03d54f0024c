"""``PtychoPINN_Lightning``: the PtychoPINN network (:mod:`ptycho_torch.network`) trained with the
Poisson negative log-likelihood of the measured counts through the physics layer, with Adam.

The four configuration groups are the module's hyperparameters (plain JSON-able dicts, see
:mod:`ptycho_torch.config_bridge`), so ``PtychoPINN_Lightning.load_from_checkpoint(path)`` rebuilds
the module without kwargs; the probe travels in the state dict as a buffer.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as L
import numpy as np
import torch

from ptycho.config.config import ModelConfig
from ptycho_torch.config_bridge import model_config_from, training_config_from
from ptycho_torch.network import (
    NetworkOutput,
    PtychoPINN,
    PhysicsLayer,
    DecoderLast,
    Encoder,
    DecoderTrunk,
    predicted_size,
)
from ptycho_torch.physics import poisson_nll

__all__ = [
    "PtychoPINN_Lightning",
    "PtychoPINN",
    "PhysicsLayer",
    "DecoderLast",
    "Encoder",
    "DecoderTrunk",
    "NetworkOutput",
    "predicted_size",
    "training_loss",
]


def training_loss(
    predicted: torch.Tensor, measured: torch.Tensor, nll_weight: float, mae_weight: float
) -> torch.Tensor:
    """``nll_weight * PoissonNLL(A_hat^2; A^2) + mae_weight * mean|A_hat - A|`` on normalised
    amplitudes (the NLL's minimiser does not depend on the normalisation: ``NLL(s lam, s k) =
    s NLL(lam, k) + const``)."""
    loss = predicted.new_zeros(())
    if nll_weight:
        loss = loss + nll_weight * poisson_nll(predicted**2, measured**2)
    if mae_weight:
        loss = loss + mae_weight * torch.mean(torch.abs(predicted - measured))
    return loss


def _placeholder_probe(cfg: ModelConfig) -> torch.Tensor:
    # Replaced by the checkpoint's ``network.physics.probe`` buffer when loading weights.
    return torch.ones((cfg.N, cfg.N), dtype=torch.complex64)


class PtychoPINN_Lightning(L.LightningModule):
    """Lightning wrapper: training step, optimiser, and the hyperparameter contract."""

    def __init__(
        self,
        model_config: dict[str, Any],
        data_config: dict[str, Any],
        training_config: dict[str, Any],
        inference_config: dict[str, Any],
        probe: np.ndarray | torch.Tensor | None = None,
    ):
        super().__init__()
        # Only the four plain dicts become hyperparameters; the probe is a buffer of the network.
        self.save_hyperparameters(ignore=["probe"])
        hparams = {
            "model_config": model_config,
            "data_config": data_config,
            "training_config": training_config,
            "inference_config": inference_config,
        }
        self.model_cfg = model_config_from(hparams)
        self.train_cfg = training_config_from(hparams)
        if probe is None:
            probe_t = _placeholder_probe(self.model_cfg)
        else:
            probe_t = torch.as_tensor(np.asarray(probe) if not isinstance(probe, torch.Tensor) else probe)
        self.network = PtychoPINN(self.model_cfg, probe_t)

    def forward(self, x: torch.Tensor, offsets: torch.Tensor | None = None) -> NetworkOutput:
        return self.network(x, offsets)

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, offsets = batch
        out = self.network(x, offsets)
        return training_loss(out.amplitude, x, self.train_cfg.nll_weight, self.train_cfg.mae_weight)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch[0].shape[0])
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch[0].shape[0])
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.train_cfg.learning_rate)
