"""``ptycho-train`` and ``ptycho-infer``: one command line for both backends (``--backend``).

One workflow per command, written once over :class:`ptycho.backend_interface.Backend`: the
backend's adapter comes from the dispatcher (:mod:`ptycho.workflows.backend_selector`), which first
syncs ``params.cfg`` (CONFIG-001) and refuses ``--backend pytorch`` without torch (POLICY-001).
``python -m ptycho_torch.train`` / ``python -m ptycho_torch.inference`` are these commands with the
backend fixed to pytorch. Both backends write the same files, with the model in its own format:

- train: the model (tensorflow ``wts.h5.zip``; pytorch ``checkpoints/last.ckpt`` + ``manifest.json``)
  and ``train_summary.json`` in ``--output_dir``;
- infer: ``reconstruction.npz``, ``reconstruction_amplitude.png``, ``reconstruction_phase.png`` and
  ``inference_summary.json`` in ``--output_dir``.

The TensorFlow path never imports torch. Exit codes: 0 success; 2 a user's mistake (bad flag or
value, missing or invalid file, a model of the other backend, the selected backend not installed),
one line on stderr; 1 an unexpected internal error (with traceback).
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

__all__ = ["main", "train_main", "infer_main", "run_train", "run_infer", "train_parser", "infer_parser", "UsageError"]

BACKENDS = ("tensorflow", "pytorch")
ACCELERATORS = ("cpu", "cuda", "gpu", "auto")
STRATEGIES = ("auto", "ddp", "ddp_spawn")
EPILOG = "Exit codes: 0 success, 2 a usage or input error (one line on stderr), 1 an internal error."


from ptycho.cli_arguments import (  # noqa: E402
    UsageError,
    add_inference_arguments,
    add_training_arguments,
    check_preset,
    parse_training_args,
)
from ptycho.run_summary import finish, inference_line, train_line, write_inference_summary  # noqa: E402


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend", choices=BACKENDS, default="tensorflow",
        help="tensorflow (default) or pytorch; the same flags and outputs for both",
    )


def train_parser(prog: str = "ptycho-train", *, backend: bool = True) -> argparse.ArgumentParser:
    """The training flags; with ``backend``, ``--backend`` too (the torch module's CLI has none)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Train a PtychoPINN model (TensorFlow or PyTorch backend) on a ptychography NPZ scan." if backend
            else "Train a PyTorch Lightning PtychoPINN model on a ptychography NPZ scan."
        ),
        epilog=EPILOG,
    )
    if backend:
        _add_backend(p)
    add_training_arguments(p)
    return p


def infer_parser(prog: str = "ptycho-infer", *, backend: bool = True) -> argparse.ArgumentParser:
    """The inference flags; with ``backend``, ``--backend`` too."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Reconstruct an object with a trained PtychoPINN model (TensorFlow or PyTorch backend)." if backend
            else "Reconstruct an object with a trained PyTorch PtychoPINN model."
        ),
        epilog=EPILOG,
    )
    if backend:
        _add_backend(p)
    add_inference_arguments(p)
    return p


def _select(config: Any) -> Any:
    """The backend adapter from the dispatcher; its POLICY-001 error (torch missing) is the user's
    to fix: one line, exit 2."""
    from ptycho.backend_interface import TORCH_UNAVAILABLE_MESSAGE
    from ptycho.workflows.backend_selector import select_backend

    try:
        return select_backend(config)
    except RuntimeError as exc:
        if not str(exc).startswith(TORCH_UNAVAILABLE_MESSAGE):
            raise
        raise UsageError(" ".join(str(exc).splitlines())) from None


def _check_counts(args: argparse.Namespace, at_least_0: tuple[str, ...], at_least_1: tuple[str, ...] = ()) -> None:
    for name in at_least_0:
        if getattr(args, name) < 0:
            raise UsageError(f"--{name}: invalid value {getattr(args, name)}; expected an integer >= 0")
    for name in at_least_1:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name}: invalid value {value}; expected an integer >= 1")


# --------------------------------------------------------------------------- train


def training_config_from_args(args: argparse.Namespace):
    """The TrainingConfig the parsed training flags (presets applied) describe."""
    from ptycho.config.config import ModelConfig, TrainingConfig

    model = ModelConfig(N=args.N, gridsize=args.gridsize, n_filters_scale=args.n_filters_scale)
    return TrainingConfig(
        model=model, train_data_file=args.train_data_file, test_data_file=args.test_data_file,
        batch_size=args.batch_size, nepochs=args.max_epochs, learning_rate=args.learning_rate,
        nll_weight=args.nll_weight, mae_weight=args.mae_weight, n_groups=args.n_images,
        neighbor_count=args.neighbor_count, output_dir=args.output_dir, backend=args.backend,
    )


def training_options_from_args(args: argparse.Namespace):
    """The TrainingOptions (devices, seed, threads, progress) the parsed training flags describe."""
    from ptycho.backend_interface import TrainingOptions

    return TrainingOptions(
        accelerator=args.accelerator, devices=args.devices, strategy=args.strategy, seed=args.seed,
        progress={"auto": None, "on": True, "off": False}[args.progress], csv_logger=args.csv_logger,
        val_images=args.val_images if args.test_data_file else 0, num_threads=args.num_threads, debug=args.debug,
    )


def _train_preflight(args: argparse.Namespace) -> Any:
    """Cheap checks before a framework loads: files, shapes, values (each names its flag or file).
    Returns the TrainingConfig."""
    from ptycho.raw_data import diffraction_shape

    shape = diffraction_shape(args.train_data_file)
    args.N = int(shape[-1])
    check_preset(args, shape)
    if args.test_data_file is not None:
        test_n = diffraction_shape(args.test_data_file)[-1]
        if test_n != args.N:
            raise UsageError(
                f"--test_data_file: {args.test_data_file}: {test_n} x {test_n} patterns, "
                f"but the training data have {args.N} x {args.N}"
            )
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise UsageError(f"--output_dir: {args.output_dir} exists and is not a directory")
    _check_counts(args, ("seed", "val_images", "num_threads"), ("devices",))
    if args.accelerator not in ACCELERATORS:
        raise UsageError(f"--accelerator: invalid value {args.accelerator!r}; expected cpu, cuda, gpu or auto")
    if args.strategy not in STRATEGIES:
        raise UsageError(f"--strategy: invalid value {args.strategy!r}; expected auto, ddp or ddp_spawn")
    # What the backends support differs in these two flags only.
    if args.backend == "tensorflow":
        if args.devices != 1:
            raise UsageError(f"--devices: invalid value {args.devices} for the tensorflow backend; expected 1 (use --backend pytorch for multi-device training)")
        if args.strategy != "auto":
            raise UsageError(f"--strategy: {args.strategy!r} is a pytorch-backend option; the tensorflow backend trains on one device")
    elif args.strategy in ("ddp", "ddp_spawn") and args.devices < 2:
        raise UsageError(f"--strategy {args.strategy}: needs --devices >= 2")
    try:
        return training_config_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _train(args: argparse.Namespace) -> dict[str, Any] | None:
    """The training command's work; the summary (None on the other ranks of a multi-process run)."""
    config = _train_preflight(args)
    options = training_options_from_args(args)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    backend = _select(config)
    for module in getattr(backend, "training_imports", ()):  # counted here, not as training time
        importlib.import_module(module)
    timings["imports"] = time.perf_counter() - t
    from ptycho.raw_data import RawData
    from ptycho.workflows.backend_selector import train_with_backend
    from ptycho.workflows.grouping import GroupingError

    t = time.perf_counter()
    train_raw = RawData.from_file(args.train_data_file)
    test_raw = RawData.from_file(args.test_data_file) if args.test_data_file else None
    timings["data"] = time.perf_counter() - t
    try:
        results = train_with_backend(train_raw, test_raw, config, options)
    except GroupingError as exc:
        raise UsageError(str(exc)) from None
    timings["data"] += results["timings"].pop("grouping")
    timings.update(results["timings"])
    if not results["is_global_zero"]:
        return None  # only rank zero reports
    summary = {
        "backend": results["backend"],
        "output_dir": str(args.output_dir),
        "checkpoint": str(results["checkpoint_path"]),
        "epochs": int(results["epochs"]),
        "global_step": int(results["global_step"]),
        "n_groups": int(len(results["train_container"].X)),
        "accelerator": results["accelerator"],
        "devices": results["devices"],
        "strategy": results["strategy"],
        "history": results["history"],
        "preset": args.preset,
    }
    timings["total"] = time.perf_counter() - _T_START
    summary["timings_s"] = {k: round(v, 4) for k, v in timings.items()}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def run_train(argv: list[str] | None = None, *, prog: str = "ptycho-train", backend: str | None = None) -> int:
    """The training command: ``backend`` None reads ``--backend``; a backend given fixes it (the
    torch module's CLI) and the parser has no ``--backend``."""
    parser = train_parser(prog, backend=backend is None)
    args = parse_training_args(parser, argv)
    if backend is not None:
        args.backend = backend
    return finish(parser.prog, lambda: _train(args), train_line, as_json=args.json)


def train_main(argv: list[str] | None = None) -> int:
    """``ptycho-train``."""
    return run_train(argv)


# --------------------------------------------------------------------------- infer


def _infer_preflight(args: argparse.Namespace) -> Any:
    """Cheap checks before a framework loads; returns the InferenceConfig the dispatcher routes."""
    from ptycho.config.config import InferenceConfig
    from ptycho.model_manifest import require_backend
    from ptycho.raw_data import npz_headers

    _check_counts(args, ("seed", "num_threads"), ("n_images", "batch_size", "M"))
    if not args.model_path.exists():
        raise UsageError(f"--model_path: {args.model_path}: no such file or directory")
    npz_headers(args.test_data)  # DataContractError names the file when it is missing or not an NPZ
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise UsageError(f"--output_dir: {args.output_dir} exists and is not a directory")
    if args.accelerator not in ACCELERATORS:
        raise UsageError(f"--accelerator: invalid value {args.accelerator!r}; expected cpu, cuda, gpu or auto")
    require_backend(args.model_path, args.backend)  # BackendMismatchError names both backends, before a framework loads
    return InferenceConfig(
        model_path=args.model_path, test_data_file=args.test_data, n_groups=args.n_images,
        output_dir=args.output_dir, backend=args.backend,
    )


def _infer(args: argparse.Namespace) -> dict[str, Any]:
    """The inference command's work; returns the summary."""
    config = _infer_preflight(args)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    _select(config)
    from ptycho.raw_data import RawData
    from ptycho.workflows.backend_selector import load_model_with_backend
    from ptycho.workflows.reconstruction import write_reconstruction

    timings["imports"] = time.perf_counter() - t
    t = time.perf_counter()
    backend, loaded = load_model_with_backend(config, args.accelerator, args.num_threads)
    timings["load_model"] = time.perf_counter() - t
    t = time.perf_counter()
    raw = RawData.from_file(args.test_data)
    timings["data"] = time.perf_counter() - t
    model_n = loaded.config.model.N
    if raw.N != model_n:
        raise UsageError(
            f"--test_data: {args.test_data}: patterns are {raw.N} x {raw.N} but the model at {args.model_path} "
            f"was trained for N = {model_n}"
        )
    try:
        recon, _ = backend.reconstruct(
            loaded.model, raw, neighbor_count=loaded.config.neighbor_count, n_images=args.n_images, seed=args.seed,
            batch_size=args.batch_size, flip_x=args.flip_x, flip_y=args.flip_y, transpose=args.transpose, M=args.M,
            timings=timings, with_deviance=not args.no_deviance, device=loaded.device,
        )
    except ValueError as exc:  # grouping or canvas limits the user's flags ran into
        raise UsageError(str(exc)) from None
    recon.metadata.update(
        backend=backend.name,
        model_path=str(args.model_path),
        checkpoint=str(loaded.checkpoint),
        test_data=str(args.test_data),
        device=str(loaded.device),
    )
    paths = write_reconstruction(args.output_dir, recon, timings)
    timings["total"] = time.perf_counter() - _T_START
    return write_inference_summary(args.output_dir, backend=backend.name, device=loaded.device_label,
                                   metadata=recon.metadata, paths=paths, timings=timings)


def run_infer(argv: list[str] | None = None, *, prog: str = "ptycho-infer", backend: str | None = None) -> int:
    """The inference command: ``backend`` None reads ``--backend``; a backend given fixes it."""
    parser = infer_parser(prog, backend=backend is None)
    args = parser.parse_args(argv)
    if backend is not None:
        args.backend = backend
    return finish(parser.prog, lambda: _infer(args), lambda summary: inference_line(summary, args.output_dir),
                  as_json=args.json)


def infer_main(argv: list[str] | None = None) -> int:
    """``ptycho-infer``."""
    return run_infer(argv)


def main(argv: list[str] | None = None) -> int:
    """``python -m ptycho.cli {train,infer} ...``: the console scripts without installing them."""
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = {"train": train_main, "infer": infer_main}
    if not argv or argv[0] not in commands:
        print("usage: python -m ptycho.cli {train,infer} [--backend {tensorflow,pytorch}] ... (see --help of each)", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
