"""TensorFlow is imported with oneDNN's kernels on (unless the user says otherwise) and without
import-time chatter on stderr when TF_CPP_MIN_LOG_LEVEL asks for quiet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parents[2]
PROBE = "from ptycho.tf_backend.runtime import tf; import os; print(os.environ['TF_ENABLE_ONEDNN_OPTS'], float(tf.reduce_sum(tf.ones(3))))"


def _run(**env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS",)}
    env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", **env_extra)
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_onednn_on_by_default_and_import_is_quiet():
    proc = _run()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "3.0"]
    assert proc.stderr == "", proc.stderr


def test_users_choice_is_kept():
    proc = _run(TF_ENABLE_ONEDNN_OPTS="0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "3.0"]
