"""PtychoPINN: physics-informed reconstruction of ptychographic data (the shared layer; the TensorFlow
backend is the subpackage :mod:`ptycho.tf_backend`, the PyTorch one the package ``ptycho_torch``).

Importing ``ptycho`` imports neither TensorFlow nor torch; the backends load on use. It does check
(by looking them up, not importing them) that the library's own dependencies are installed: they
come with the ``ptycho`` extra, which the harness alone (``pip install .``) leaves out.
"""

from __future__ import annotations

import importlib.util

__version__ = "0.1.0"

EXTRA = "ptycho"
# import name -> distribution of the `ptycho` extra (pyproject.toml) that provides it
REQUIREMENTS = {"numpy": "numpy", "scipy": "scipy", "skimage": "scikit-image", "tensorflow": "tensorflow-cpu"}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # an import hook that blocks the name: as good as not installed
        return False


def require_extra(package: str, requirements: dict[str, str]) -> None:
    """Raise an ImportError naming the extra to install when any of ``requirements`` (import name ->
    distribution) is missing, instead of a bare ModuleNotFoundError deep inside the library later."""
    missing = [distribution for module, distribution in requirements.items() if not _installed(module)]
    if missing:
        raise ImportError(
            f"{package} needs the '{EXTRA}' extra of ptychopinn (not installed: {', '.join(missing)}): "
            f"pip install 'ptychopinn[{EXTRA}]', or from a checkout pip install -e '.[{EXTRA}]'. "
            f"`pip install .` alone installs only the harness."
        )


require_extra("ptycho", REQUIREMENTS)
