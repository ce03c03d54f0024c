"""Scan data into training groups, the same for both backends (neither TensorFlow nor torch here).

N, gridsize and the neighbour count come from the config given, explicitly: the library does not
route them through the legacy ``params.cfg``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ptycho.config.config import InferenceConfig, TrainingConfig
from ptycho.raw_data import GroupedData, RawData, generate_grouped_data

__all__ = ["GroupingError", "ensure_raw_data", "training_inputs", "group_for_training"]


class GroupingError(ValueError):
    """The scan cannot be grouped as configured (too few positions, pattern size mismatch); the
    message names the file."""


def ensure_raw_data(data: RawData | Path | str | None, what: str) -> RawData | None:
    """Accept a :class:`RawData` or an NPZ path."""
    if data is None or isinstance(data, RawData):
        return data
    if isinstance(data, (str, Path)):
        return RawData.from_file(data)
    raise TypeError(f"{what}: expected RawData or a path to an NPZ file, got {type(data).__name__}")


def training_inputs(
    train_data: RawData | Path | str | None, test_data: RawData | Path | str | None, config: TrainingConfig
) -> tuple[RawData, RawData | None, TrainingConfig]:
    """The training and test scans, read, and ``config`` with ``N`` taken from the training data
    when it is 0 ("take it from the data", as ptychodus builds its configs); an explicit ``N`` must
    match the patterns. The same for both backends."""
    train_raw = ensure_raw_data(train_data, "train_data")
    test_raw = ensure_raw_data(test_data, "test_data")
    if train_raw is None:
        raise ValueError("train_data: required for training")
    try:
        model = config.model.resolved(train_raw.N, where=str(train_raw.source or "train_data"))
    except ValueError as exc:
        raise GroupingError(str(exc)) from None
    if model is not config.model:
        config = dataclasses.replace(config, model=model)
    return train_raw, test_raw, config


def group_for_training(
    raw: RawData, config: TrainingConfig | InferenceConfig, n_groups: int | None = None, seed: int | None = None
) -> GroupedData:
    """Groups of ``config.model.gridsize**2`` patterns of ``config.model.N``, drawn from
    ``config.neighbor_count`` nearest neighbours; ``n_groups`` (default ``config.n_groups``: all)
    groups, a subset seeded by ``seed`` (default ``config.subsample_seed``)."""
    if seed is None:
        seed = getattr(config, "subsample_seed", None)
    try:
        return generate_grouped_data(
            raw,
            n_groups=config.n_groups if n_groups is None else n_groups,
            neighbor_count=config.neighbor_count,
            seed=seed,
            N=config.model.N,
            gridsize=config.model.gridsize,
        )
    except ValueError as exc:
        source = raw.source or "data"
        message = str(exc)
        raise GroupingError(message if message.startswith(str(source)) else f"{source}: {message}") from None
