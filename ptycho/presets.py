"""Named training presets (``--preset NAME`` of ``ptycho-train`` on both backends).

A preset is data (``ptycho/presets.toml``, validated here): a configuration anyone can rerun by
name, such as the nightly quality selector's. Explicit command-line flags override the preset's
values. A preset also says what data it was made for (pattern size, least number of scan
positions), so running it on data it does not fit is a named error instead of a poor model.
Free of torch and TensorFlow: resolving a preset costs milliseconds.
"""

from __future__ import annotations

import argparse
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "PRESETS_FILE",
    "PresetFlags",
    "Preset",
    "PresetError",
    "load_presets",
    "preset_names",
    "get_preset",
    "explicit_flags",
    "apply_preset",
    "check_preset_fits",
]

PRESETS_FILE = Path(__file__).with_name("presets.toml")


class PresetError(ValueError):
    """An unknown preset, a broken presets file, or a preset that does not fit the data."""


class PresetFlags(BaseModel):
    """Training flag values a preset may set (argparse destinations of the training flags)."""

    model_config = ConfigDict(extra="forbid")

    gridsize: Optional[int] = Field(None, ge=1)
    max_epochs: Optional[int] = Field(None, ge=1)
    batch_size: Optional[int] = Field(None, ge=1)
    learning_rate: Optional[float] = Field(None, gt=0)
    n_filters_scale: Optional[int] = Field(None, ge=1)
    neighbor_count: Optional[int] = Field(None, ge=1)
    n_images: Optional[int] = Field(None, ge=1)
    nll_weight: Optional[float] = Field(None, ge=0)
    mae_weight: Optional[float] = Field(None, ge=0)
    seed: Optional[int] = Field(None, ge=0)
    # How, not what, to train, but part of a budgeted preset: its epochs were chosen for this many
    # CPU threads (0: the backend's default).
    num_threads: Optional[int] = Field(None, ge=0)


class Preset(BaseModel):
    """One named preset: what it is for, what data it fits, and its flag values."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    N: Optional[int] = Field(None, description="pattern size the preset was made for (None: any)")
    min_positions: int = Field(1, ge=1, description="least number of scan positions the preset is meant for")
    flags: PresetFlags

    def values(self) -> dict[str, int | float]:
        """The flag values the preset sets (unset ones left out)."""
        return self.flags.model_dump(exclude_none=True)


@lru_cache(maxsize=4)
def load_presets(path: Path = PRESETS_FILE) -> dict[str, Preset]:
    """Every preset of ``path`` by name; a broken file is a :class:`PresetError` naming it."""
    try:
        table = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PresetError(f"{path}: cannot read the presets: {exc}") from None
    presets: dict[str, Preset] = {}
    for name, body in table.items():
        if not isinstance(body, dict):
            raise PresetError(f"{path}: [{name}]: expected a table, got {type(body).__name__}")
        try:
            presets[name] = Preset(name=name, **body)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise PresetError(f"{path}: [{name}]: {problems}") from None
    return presets


def preset_names(path: Path = PRESETS_FILE) -> list[str]:
    return sorted(load_presets(path))


def get_preset(name: str, path: Path = PRESETS_FILE) -> Preset:
    """The preset called ``name``; an unknown name lists the valid ones."""
    presets = load_presets(path)
    if name not in presets:
        raise PresetError(f"--preset: unknown preset {name!r}; valid presets: {', '.join(sorted(presets))}")
    return presets[name]


def explicit_flags(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """Destinations of the flags ``argv`` actually gives (not filled in from defaults)."""
    probe = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public way to copy actions
        if isinstance(action, argparse._HelpAction) or not action.option_strings:  # noqa: SLF001
            continue
        kwargs = {"dest": action.dest, "default": argparse.SUPPRESS}
        if action.nargs == 0:  # store_true / store_const
            kwargs["action"] = "store_const"
            kwargs["const"] = action.const
        else:
            kwargs["nargs"] = action.nargs
        probe.add_argument(*action.option_strings, **kwargs)
    seen, _ = probe.parse_known_args(argv)
    return set(vars(seen))


def apply_preset(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]) -> Preset | None:
    """Fill ``args`` from ``args.preset`` wherever ``argv`` did not give the flag explicitly.

    Returns the preset (None without ``--preset``); an unknown preset is a :class:`PresetError`.
    """
    name = getattr(args, "preset", None)
    if name is None:
        return None
    preset = get_preset(name)
    given = explicit_flags(parser, argv)
    for dest, value in preset.values().items():
        if dest not in given:
            setattr(args, dest, value)
    return preset


def check_preset_fits(preset: Preset | None, path: Path, shape: tuple[int, int, int], gridsize: int, neighbor_count: int) -> None:
    """Raise :class:`PresetError` when the data ``shape`` (n, N, N) of ``path`` does not fit ``preset``.

    The pattern size must be the preset's ``N``; the scan must have at least ``min_positions``
    positions, and enough to form groups for the resolved ``gridsize``.
    """
    if preset is None:
        return
    n_positions, size = int(shape[0]), int(shape[-1])
    if preset.N is not None and size != preset.N:
        raise PresetError(
            f"--preset {preset.name}: made for {preset.N} x {preset.N} patterns, but {path} has {size} x {size}"
        )
    needed = max(preset.min_positions, gridsize**2, neighbor_count if gridsize > 1 else 1)
    if n_positions < needed:
        why = f"gridsize {gridsize} groups" if gridsize > 1 else "training"
        raise PresetError(
            f"--preset {preset.name}: needs at least {needed} scan positions for {why}, but {path} has {n_positions}"
        )
