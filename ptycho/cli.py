"""``ptycho-train`` and ``ptycho-infer``: one command line for both backends (``--backend``).

The flags, outputs and errors are those of the torch CLIs (``python -m ptycho_torch.train`` /
``python -m ptycho_torch.inference``). ``--backend pytorch`` hands the remaining arguments to them
unchanged; ``--backend tensorflow`` (the default) runs the same workflow on the Keras model and
writes the same files, with ``wts.h5.zip`` in place of ``checkpoints/last.ckpt`` + ``manifest.json``:

- train: ``{output_dir}/wts.h5.zip`` and ``{output_dir}/train_summary.json``;
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
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

__all__ = ["main", "train_main", "infer_main", "train_parser", "infer_parser", "UsageError"]

BACKENDS = ("tensorflow", "pytorch")
EPILOG = (
    "Exit codes: 0 success, 2 a usage or input error (one line on stderr), 1 an internal error. "
    "--backend pytorch runs python -m ptycho_torch.{cmd} with the other arguments."
)


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


def train_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m ptycho_torch.train``, plus ``--backend``."""
    p = argparse.ArgumentParser(
        prog="ptycho-train",
        description="Train a PtychoPINN model (TensorFlow or PyTorch backend) on a ptychography NPZ scan.",
        epilog=EPILOG.format(cmd="train"),
    )
    _add_backend(p)
    add_training_arguments(p)
    return p


def infer_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m ptycho_torch.inference``, plus ``--backend``."""
    p = argparse.ArgumentParser(
        prog="ptycho-infer",
        description="Reconstruct an object with a trained PtychoPINN model (TensorFlow or PyTorch backend).",
        epilog=EPILOG.format(cmd="inference"),
    )
    _add_backend(p)
    add_inference_arguments(p)
    return p


def _split_backend(argv: list[str], full_parser: Callable[[], argparse.ArgumentParser]) -> tuple[str, list[str]]:
    """``--backend`` and the remaining arguments; ``--help`` shows the unified help."""
    pre = argparse.ArgumentParser(prog=full_parser().prog, add_help=False)
    _add_backend(pre)
    known, rest = pre.parse_known_args(argv)  # an invalid --backend exits 2 with argparse's one line
    if any(a in ("-h", "--help") for a in rest):
        full_parser().parse_args(["--help"])
    return known.backend, rest


def _torch_cli(prog: str, module: str) -> Callable[[list[str]], int]:
    """The torch CLI's ``main``, or the POLICY-001 message (exit 2) when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        from ptycho.workflows.backend_selector import TORCH_UNAVAILABLE_MESSAGE

        raise UsageError(" ".join(TORCH_UNAVAILABLE_MESSAGE.splitlines()))
    return importlib.import_module(module).main


def _tensorflow_device(accelerator: str) -> str:
    """The TensorFlow device for ``--accelerator``; asking for a GPU that is not visible is an error."""
    if accelerator not in ("cpu", "cuda", "gpu", "auto"):
        raise UsageError(f"--accelerator: invalid value {accelerator!r}; expected cpu, cuda, gpu or auto")
    if accelerator == "cpu":
        return "/CPU:0"
    from ptycho.tf_runtime import tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return "/GPU:0"
    if accelerator == "auto":
        return "/CPU:0"
    raise UsageError(
        f"--accelerator: {accelerator!r} requested but TensorFlow sees no GPU "
        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')!r})"
    )


def _tensorflow_threads(count: int) -> None:
    """``--num_threads``: TensorFlow's intra- and inter-op pools (before its runtime starts; 0 keeps
    TensorFlow's default of every core). One thread by default, as the torch CLIs: on a shared
    machine more threads mostly contend."""
    from ptycho.tf_runtime import tf

    if not count or tf.config.threading.get_intra_op_parallelism_threads() == count:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(count)
        tf.config.threading.set_inter_op_parallelism_threads(count)
    except RuntimeError:
        # Called in a process whose TensorFlow runtime already started (the CLI's main used as a
        # library): its thread pools are fixed; run with them rather than fail.
        print(f"note: TensorFlow already initialised; --num_threads {count} not applied", file=sys.stderr)


def _show_progress(choice: str) -> bool:
    if choice != "auto":
        return choice == "on"
    return sys.stderr.isatty() and not os.environ.get("CI")


# --------------------------------------------------------------------------- train


def _training_config(args: argparse.Namespace):
    from ptycho.config.config import ModelConfig, TrainingConfig

    model = ModelConfig(N=args.N, gridsize=args.gridsize, n_filters_scale=args.n_filters_scale)
    return TrainingConfig(
        model=model, train_data_file=args.train_data_file, test_data_file=args.test_data_file,
        batch_size=args.batch_size, nepochs=args.max_epochs, learning_rate=args.learning_rate,
        nll_weight=args.nll_weight, mae_weight=args.mae_weight, n_groups=args.n_images,
        neighbor_count=args.neighbor_count, output_dir=args.output_dir, backend="tensorflow",
    )


def _train_preflight(args: argparse.Namespace) -> Any:
    """Cheap checks before TensorFlow loads: files, shapes, values (each names its flag or file)."""
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
    if args.devices != 1:
        raise UsageError(f"--devices: invalid value {args.devices} for the tensorflow backend; expected 1 (use --backend pytorch for multi-device training)")
    if args.strategy != "auto":
        raise UsageError(f"--strategy: {args.strategy!r} is a pytorch-backend option; the tensorflow backend trains on one device")
    for name in ("seed", "val_images", "num_threads"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name}: invalid value {getattr(args, name)}; expected an integer >= 0")
    if args.accelerator not in ("cpu", "cuda", "gpu", "auto"):
        raise UsageError(f"--accelerator: invalid value {args.accelerator!r}; expected cpu, cuda, gpu or auto")
    try:
        return _training_config(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _write_csv_log(output_dir: Path, train_loss: list[float], val_loss: list[float] | None) -> Path:
    path = output_dir / "logs" / "metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["epoch,train_loss,val_loss"]
    for i, loss in enumerate(train_loss):
        val = "" if not val_loss else repr(val_loss[i])
        rows.append(f"{i},{loss!r},{val}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _train_tensorflow(args: argparse.Namespace) -> dict[str, Any]:
    config = _train_preflight(args)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    from ptycho.tf_runtime import tf

    from ptycho.raw_data import RawData
    from ptycho.workflows import components

    timings["imports"] = time.perf_counter() - t
    _tensorflow_threads(args.num_threads)
    device = _tensorflow_device(args.accelerator)
    t = time.perf_counter()
    train_raw = RawData.from_file(args.train_data_file)
    test_raw = RawData.from_file(args.test_data_file) if args.test_data_file else None
    timings["data"] = time.perf_counter() - t

    progress = None
    if _show_progress(args.progress):
        def progress(epoch: int, total: int, loss: float, val: float | None, seconds: float) -> None:
            extra = f", val_loss {val:.5g}" if val is not None else ""
            print(f"epoch {epoch}/{total}: train_loss {loss:.5g}{extra} ({seconds:.1f} s)", file=sys.stderr, flush=True)

    with tf.device(device):
        results = components.train_cdi_model(
            train_raw, test_raw, config, seed=args.seed,
            val_images=args.val_images if args.test_data_file else 0, progress=progress, debug=args.debug,
        )
    timings["data"] += results["timings"].pop("grouping")
    timings.update(results["timings"])
    history = results["history"]
    if args.csv_logger:
        _write_csv_log(args.output_dir, history["train_loss"], history["val_loss"])
    timings["total"] = time.perf_counter() - _T_START
    summary = {
        "backend": "tensorflow",
        "output_dir": str(args.output_dir),
        "checkpoint": str(results["checkpoint_path"]),
        "epochs": int(results["epochs"]),
        "global_step": int(results["global_step"]),
        "n_groups": int(len(results["train_container"].X)),
        "accelerator": "gpu" if "GPU" in device else "cpu",
        "devices": 1,
        "strategy": "auto",
        "history": history,
        "preset": args.preset,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }
    (args.output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def _run_command(prog: str, argv: list[str] | None, parser: Callable[[], argparse.ArgumentParser], torch_module: str,
                 run_tensorflow: Callable[[argparse.Namespace], dict[str, Any]],
                 line: Callable[[dict[str, Any], argparse.Namespace], str],
                 parse: Callable[[argparse.ArgumentParser, list[str]], argparse.Namespace] | None = None) -> int:
    """One console script: pick the backend and run it (torch: its own CLI's ``main``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    backend, rest = _split_backend(argv, parser)
    if backend == "pytorch":
        try:
            torch_main = _torch_cli(prog, torch_module)
        except UsageError as exc:  # POLICY-001: torch is not installed
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        return torch_main(rest, prog=prog)  # errors name the command the user typed
    argv_full = ["--backend", backend, *rest]
    args = parse(parser(), argv_full) if parse else parser().parse_args(argv_full)
    return finish(prog, lambda: run_tensorflow(args), lambda summary: line(summary, args), as_json=args.json)


def train_main(argv: list[str] | None = None) -> int:
    """``ptycho-train``."""
    return _run_command("ptycho-train", argv, train_parser, "ptycho_torch.train", _train_tensorflow,
                        lambda summary, args: train_line(summary), parse=parse_training_args)


# --------------------------------------------------------------------------- infer


def _infer_preflight(args: argparse.Namespace) -> None:
    from ptycho.raw_data import npz_headers

    for name in ("n_images", "batch_size", "M"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name}: invalid value {value}; expected an integer >= 1")
    for name in ("seed", "num_threads"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name}: invalid value {getattr(args, name)}; expected an integer >= 0")
    if not args.model_path.exists():
        raise UsageError(f"--model_path: {args.model_path}: no such file or directory")
    npz_headers(args.test_data)  # DataContractError names the file when it is missing or not an NPZ
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise UsageError(f"--output_dir: {args.output_dir} exists and is not a directory")
    if args.accelerator not in ("cpu", "cuda", "gpu", "auto"):
        raise UsageError(f"--accelerator: invalid value {args.accelerator!r}; expected cpu, cuda, gpu or auto")
    from ptycho.model_manifest import require_backend

    require_backend(args.model_path, "tensorflow")  # BackendMismatchError names both backends, before TF loads


def _infer_tensorflow(args: argparse.Namespace) -> dict[str, Any]:
    _infer_preflight(args)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    from ptycho.tf_runtime import tf

    from ptycho import params
    from ptycho.config.config import update_legacy_dict
    from ptycho.raw_data import RawData
    from ptycho.workflows import components
    from ptycho.workflows.reconstruction import write_reconstruction

    timings["imports"] = time.perf_counter() - t
    _tensorflow_threads(args.num_threads)
    device = _tensorflow_device(args.accelerator)
    with tf.device(device):
        t = time.perf_counter()
        model, saved = components.load_inference_bundle(args.model_path)
        timings["load_model"] = time.perf_counter() - t
        update_legacy_dict(params.cfg, model.cfg)  # CONFIG-001: before grouping
        if "neighbor_count" in saved:  # grouping as at training time
            params.cfg["neighbor_count"] = saved["neighbor_count"]
        t = time.perf_counter()
        raw = RawData.from_file(args.test_data)
        timings["data"] = time.perf_counter() - t
        if raw.N != model.cfg.N:
            raise UsageError(
                f"--test_data: {args.test_data}: patterns are {raw.N} x {raw.N} but the model at {args.model_path} "
                f"was trained for N = {model.cfg.N}"
            )
        try:
            recon, _ = components.reconstruct(
                model, raw, n_images=args.n_images, seed=args.seed, batch_size=args.batch_size,
                flip_x=args.flip_x, flip_y=args.flip_y, transpose=args.transpose, M=args.M, timings=timings,
                with_deviance=not args.no_deviance,
            )
        except ValueError as exc:  # grouping or canvas limits the user's flags ran into
            raise UsageError(str(exc)) from None
    recon.metadata.update(
        backend="tensorflow",
        model_path=str(args.model_path),
        checkpoint=str(saved["manifest"].get("weights", "")),
        test_data=str(args.test_data),
        device=device,
    )
    paths = write_reconstruction(args.output_dir, recon, timings)
    timings["total"] = time.perf_counter() - _T_START
    return write_inference_summary(args.output_dir, backend="tensorflow", device="gpu" if "GPU" in device else "cpu",
                                   metadata=recon.metadata, paths=paths, timings=timings)


def infer_main(argv: list[str] | None = None) -> int:
    """``ptycho-infer``."""
    return _run_command("ptycho-infer", argv, infer_parser, "ptycho_torch.inference", _infer_tensorflow,
                        lambda summary, args: inference_line(summary, args.output_dir))


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
