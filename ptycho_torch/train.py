"""``python -m ptycho_torch.train``: train a PyTorch PtychoPINN model and save it.

Writes ``{output_dir}/checkpoints/last.ckpt`` (Lightning checkpoint with the four configuration
groups as hyperparameters), ``{output_dir}/manifest.json`` (backend "pytorch") and
``{output_dir}/train_summary.json`` (history, timings, settings).

Exit codes: 0 success; 2 a user's mistake (missing or invalid file, bad value), one line on stderr;
1 an unexpected internal error (with traceback).
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from ptycho.cli_arguments import UsageError, check_preset  # noqa: E402
from ptycho.run_summary import finish, train_line  # noqa: E402

__all__ = ["main", "build_configs"]


def _parser(prog: str = "python -m ptycho_torch.train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train a PyTorch Lightning PtychoPINN model on a ptychography NPZ scan.",
        epilog="Exit codes: 0 success, 2 a usage or input error (one line on stderr), 1 an internal error.",
    )
    from ptycho.cli_arguments import add_training_arguments

    add_training_arguments(p)
    return p


def build_configs(args: argparse.Namespace):
    """The TrainingConfig and TorchExecution the arguments describe (ValueError names the field)."""
    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho_torch.workflows.components import TorchExecution

    model = ModelConfig(N=args.N, gridsize=args.gridsize, n_filters_scale=args.n_filters_scale)
    config = TrainingConfig(
        model=model,
        train_data_file=args.train_data_file,
        test_data_file=args.test_data_file,
        batch_size=args.batch_size,
        nepochs=args.max_epochs,
        learning_rate=args.learning_rate,
        nll_weight=args.nll_weight,
        mae_weight=args.mae_weight,
        n_groups=args.n_images,
        neighbor_count=args.neighbor_count,
        output_dir=args.output_dir,
        backend="pytorch",
    )
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    execution = TorchExecution(
        accelerator=args.accelerator, devices=args.devices, strategy=args.strategy, seed=args.seed,
        progress_bar=progress, csv_logger=args.csv_logger, val_images=args.val_images if args.test_data_file else 0,
        num_threads=args.num_threads, debug=args.debug,
    )
    return config, execution


def _preflight(args: argparse.Namespace) -> None:
    """Cheap checks before the multi-second imports: files, shapes, values."""
    from ptycho.config.config import ModelConfig, TrainingConfig  # noqa: F401 - light
    from ptycho.raw_data import diffraction_shape

    shape = diffraction_shape(args.train_data_file)  # DataContractError names file and key
    args.N = int(shape[-1])
    check_preset(args, shape)
    if args.test_data_file is not None:
        test_shape = diffraction_shape(args.test_data_file)
        if test_shape[-1] != args.N:
            raise UsageError(
                f"--test_data_file: {args.test_data_file}: {test_shape[-1]} x {test_shape[-1]} patterns, "
                f"but the training data have {args.N} x {args.N}"
            )
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise UsageError(f"--output_dir: {args.output_dir} exists and is not a directory")
    if args.strategy in ("ddp", "ddp_spawn") and args.devices < 2:
        raise UsageError(f"--strategy {args.strategy}: needs --devices >= 2")
    # Validates every value (gridsize, batch size, epochs, ...) with messages naming the field.
    try:
        import types

        build_configs_light = types.SimpleNamespace(**vars(args))
        _validate_without_torch(build_configs_light)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _validate_without_torch(args: Any) -> None:
    from ptycho.config.config import ModelConfig, TrainingConfig

    model = ModelConfig(N=args.N, gridsize=args.gridsize, n_filters_scale=args.n_filters_scale)
    TrainingConfig(
        model=model, batch_size=args.batch_size, nepochs=args.max_epochs, learning_rate=args.learning_rate,
        nll_weight=args.nll_weight, mae_weight=args.mae_weight, n_groups=args.n_images,
        neighbor_count=args.neighbor_count, output_dir=args.output_dir, backend="pytorch",
    )
    if args.accelerator not in ("cpu", "cuda", "gpu", "auto"):
        raise ValueError(f"--accelerator: invalid value {args.accelerator!r}; expected cpu, cuda, gpu or auto")
    if args.devices < 1:
        raise ValueError(f"--devices: invalid value {args.devices}; expected an integer >= 1")
    if args.strategy not in ("auto", "ddp", "ddp_spawn"):
        raise ValueError(f"--strategy: invalid value {args.strategy!r}; expected auto, ddp or ddp_spawn")
    if args.seed < 0:
        raise ValueError(f"--seed: invalid value {args.seed}; expected an integer >= 0")
    if args.val_images < 0:
        raise ValueError(f"--val_images: invalid value {args.val_images}; expected an integer >= 0")
    if args.num_threads < 0:
        raise ValueError(f"--num_threads: invalid value {args.num_threads}; expected an integer >= 0")


def run(args: argparse.Namespace) -> dict[str, Any]:
    timings: dict[str, float] = {}
    t = time.perf_counter()
    from ptycho.raw_data import RawData
    from ptycho_torch.workflows import components

    import lightning.pytorch  # noqa: F401 - counted here, not inside the training phase

    timings["imports"] = time.perf_counter() - t
    try:
        config, execution = build_configs(args)
        execution.resolved_accelerator()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    t = time.perf_counter()
    train_raw = RawData.from_file(args.train_data_file)
    test_raw = RawData.from_file(args.test_data_file) if args.test_data_file else None
    timings["data"] = time.perf_counter() - t
    try:
        results = components.train_cdi_model_torch(train_raw, test_raw, config, execution)
    except components.GroupingError as exc:
        raise UsageError(str(exc)) from None
    timings["data"] += results["timings"].pop("grouping")
    timings.update(results["timings"])
    trainer = results["trainer"]
    summary = {
        "backend": "pytorch",
        "output_dir": str(args.output_dir),
        "checkpoint": str(results["checkpoint_path"]),
        "epochs": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "n_groups": int(len(results["train_container"].X)),
        "accelerator": execution.resolved_accelerator(),
        "devices": execution.devices,
        "strategy": execution.strategy,
        "history": results["history"],
        "preset": getattr(args, "preset", None),
    }
    if trainer.is_global_zero:
        timings["total"] = time.perf_counter() - _T_START
        summary["timings_s"] = {k: round(v, 4) for k, v in timings.items()}
        (args.output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    summary["is_global_zero"] = bool(trainer.is_global_zero)
    return summary


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``prog``: the command the user typed (``ptycho-train`` when it handed over), for errors."""
    from ptycho.cli_arguments import parse_training_args

    parser = _parser(prog) if prog else _parser()
    args = parse_training_args(parser, argv)

    def work() -> dict[str, Any] | None:
        _preflight(args)
        summary = run(args)
        return summary if summary.pop("is_global_zero") else None  # only rank zero reports

    return finish(parser.prog, work, train_line, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
