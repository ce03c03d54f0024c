"""The training and inference flags, defined once for every command line that takes them
(``ptycho-train``/``ptycho-infer`` and ``python -m ptycho_torch.train``/``.inference``), so the
backends cannot drift apart, and the error a misused flag raises. Free of torch and TensorFlow:
``--help`` stays instant."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_training_arguments", "add_inference_arguments", "parse_training_args", "check_preset", "UsageError"]


class UsageError(ValueError):
    """A user's mistake on the command line (exit 2, one line, no traceback)."""


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="a named configuration from ptycho/presets.toml (e.g. nightly-quality, quick); flags given explicitly override its values")
    p.add_argument("--train_data_file", type=Path, required=True, help="NPZ scan to train on")
    p.add_argument("--test_data_file", type=Path, default=None, help="NPZ scan for validation (optional)")
    p.add_argument("--output_dir", type=Path, required=True, help="model directory to write")
    p.add_argument("--max_epochs", "--nepochs", dest="max_epochs", type=int, default=50, help="training epochs (default 50)")
    p.add_argument("--n_images", type=int, default=None, help="train on a seeded subset of this many groups (default: all)")
    p.add_argument("--gridsize", type=int, default=1, help="patches per group side; 2 turns the overlap constraint on (default 1)")
    p.add_argument("--batch_size", type=int, default=16, help="groups per batch, a power of two (default 16)")
    p.add_argument("--learning_rate", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--n_filters_scale", type=int, default=1, help="network width multiplier (default 1: widths 8-16-32)")
    p.add_argument("--neighbor_count", type=int, default=4, help="nearest neighbours a group is drawn from (default 4)")
    p.add_argument("--nll_weight", type=float, default=1.0, help="weight of the Poisson NLL (default 1)")
    p.add_argument("--mae_weight", type=float, default=0.0, help="weight of the amplitude MAE (default 0)")
    p.add_argument("--accelerator", default="cpu", help="cpu (default), cuda/gpu, or auto (a visible GPU, else cpu)")
    p.add_argument("--devices", type=int, default=1, help="number of devices/processes (default 1; tensorflow: 1 only)")
    p.add_argument("--strategy", default="auto", help="auto (default), ddp or ddp_spawn (pytorch only)")
    p.add_argument("--seed", type=int, default=42, help="seed of weights, subset and data order (default 42)")
    p.add_argument("--num_threads", type=int, default=1, help="CPU threads for training (default 1; 0: the backend's default)")
    p.add_argument("--val_images", type=int, default=64, help="validation groups per epoch from --test_data_file (default 64; 0: none)")
    p.add_argument("--csv_logger", action="store_true", help="log per-epoch metrics to {output_dir}/logs as CSV")
    p.add_argument("--debug", action="store_true", help="write {output_dir}/train_debug.log (per-epoch loss, intensity scale, learning rate, timings, data shapes, configuration)")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto", help="progress (auto: only on a terminal)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def parse_training_args(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse the training flags and fill in ``--preset``'s values where no flag was given; an
    unknown preset or a broken presets file exits 2 with the valid names (argparse's one line).
    ``args.preset_config`` is the resolved preset (None without one)."""
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    args.preset_config = None
    if args.preset is None:
        return args
    from ptycho.presets import PresetError, apply_preset  # pydantic: only when a preset is asked for

    try:
        args.preset_config = apply_preset(args, p, argv)
    except PresetError as exc:
        p.error(str(exc))
    return args


def check_preset(args: argparse.Namespace, shape: tuple[int, int, int]) -> None:
    """A ``--preset`` that does not fit the training data ``shape`` (n, N, N) is a UsageError
    naming the preset and the file (pattern size, too few positions for its gridsize)."""
    preset = getattr(args, "preset_config", None)
    if preset is None:
        return
    from ptycho.presets import PresetError, check_preset_fits

    try:
        check_preset_fits(preset, args.train_data_file, shape, args.gridsize, args.neighbor_count)
    except PresetError as exc:
        raise UsageError(str(exc)) from None


def add_inference_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model_path", type=Path, required=True,
                   help="training output directory (tensorflow: wts.h5.zip; pytorch: manifest.json + checkpoints/last.ckpt) or the archive/.ckpt itself")
    p.add_argument("--test_data", "--test_data_file", dest="test_data", type=Path, required=True, help="NPZ scan to reconstruct")
    p.add_argument("--output_dir", type=Path, required=True, help="where reconstruction.npz and the PNGs go")
    p.add_argument("--n_images", type=int, default=None, help="reconstruct only a seeded subset of this many groups (default: all)")
    p.add_argument("--accelerator", default="cpu", help="cpu (default), cuda/gpu, or auto (a visible GPU, else cpu)")
    p.add_argument("--batch_size", type=int, default=256, help="groups per forward pass (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset selection (default 0)")
    p.add_argument("--num_threads", type=int, default=1, help="CPU threads (default 1; 0: the backend's default)")
    p.add_argument("--flip_x", action="store_true", help="mirror the scan positions along x")
    p.add_argument("--flip_y", action="store_true", help="mirror the scan positions along y")
    p.add_argument("--transpose", action="store_true", help="transpose every predicted patch before stitching")
    p.add_argument("--M", type=int, default=None, help="square canvas side (default: the ground truth's shape, else the scan's extent)")
    p.add_argument("--no_deviance", action="store_true", help="skip the Poisson deviance of the model on the data")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
