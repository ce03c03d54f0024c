"""pytest plugin the harness loads into each selector's process (``-p harness_pytest_plugin``).

pytest-json-report leaves ``environment`` empty with pytest-metadata >= 3; this fills it with
what the history needs, read from package metadata so nothing heavy is imported.

Standard library and pytest only, no harness import: it runs in the environment under test, which
need not have the harness installed (``harness.runner.with_plugin_path`` puts this folder on the
child's PYTHONPATH).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

_PACKAGES = ("pytest", "torch", "lightning", "tensorflow", "tensorflow-cpu", "numpy")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def pytest_configure(config) -> None:  # noqa: ANN001 - pytest's own type
    """Register the hook only when pytest-json-report is active (it declares the hookspec)."""
    if config.pluginmanager.hasplugin("pytest_jsonreport"):
        config.pluginmanager.register(_EnvironmentRecorder(), "harness-environment")


class _EnvironmentRecorder:
    def pytest_json_modifyreport(self, json_report: dict) -> None:
        json_report["environment"] = {
            "python": platform.python_version(),
            "executable": sys.executable,
            "platform": platform.platform(),
            "pid": os.getpid(),
            "selector": os.environ.get("HARNESS_SELECTOR"),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "packages": {name: _version(name) for name in _PACKAGES},
        }
