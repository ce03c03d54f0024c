"""The library needs the ``ptycho`` extra; without it, importing ``ptycho`` or ``ptycho_torch`` says so.

Each case runs in a subprocess whose import system hides some of the extra's distributions (as if
`pip install .` had installed the harness alone): the true boundary, nothing else replaced.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

HIDE = """
import sys


class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {hidden!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)
        return None


sys.meta_path.insert(0, _Hide())
"""


def run_hidden(tmp_path: Path, hidden: set[str], code: str) -> subprocess.CompletedProcess:
    shadow = tmp_path / "shadow"
    shadow.mkdir(exist_ok=True)
    (shadow / "sitecustomize.py").write_text(HIDE.format(hidden=hidden))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), str(REPO)])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120, check=False)


EVERYTHING = {"scipy", "skimage", "tensorflow", "torch", "lightning"}


@pytest.mark.parametrize("hidden, module, package, missing", [
    (EVERYTHING, "ptycho", "ptycho", "scipy, scikit-image, tensorflow-cpu"),
    (EVERYTHING, "ptycho_torch", "ptycho", "scipy, scikit-image, tensorflow-cpu"),  # the shared layer it imports first
    ({"lightning"}, "ptycho_torch", "ptycho_torch", "lightning"),
])
def test_importing_the_library_without_its_extra_names_the_extra(tmp_path, hidden, module, package, missing):
    done = run_hidden(tmp_path, hidden, f"import {module}")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and f"{package} needs the 'ptycho' extra" in last, done.stderr
    assert f"(not installed: {missing})" in last and "pip install 'ptychopinn[ptycho]'" in last


def test_torch_alone_missing_keeps_the_brief_policy_001_error(tmp_path):
    done = run_hidden(tmp_path, {"torch"}, "import ptycho_torch")
    assert done.returncode != 0 and "RuntimeError: PyTorch backend selected but torch module unavailable." in done.stderr
    assert "'ptycho' extra" not in done.stderr
