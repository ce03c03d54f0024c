"""The environment a selector's pytest process gets: only what the tests need, never a secret.

The harness's own environment holds webhook URLs, signing secrets and CI tokens; a test that
prints its environment would put them into ``stdout.log``, which ``harness serve`` serves and CI
uploads. So a selector does not inherit that environment. It gets:

1. the usual process variables (``PROCESS_VARIABLES``: PATH, HOME, locale, temp folder, ...);
2. the documented pass-through (``PASS_THROUGH``: the interpreter's, the numeric libraries' and
   the frameworks' own settings, ``CI``, the project's ``PTYCHO_*``), plus the catalog's
   ``pass_env`` names and patterns;
3. the catalog's ``env`` for the selector, and ``HARNESS_SELECTOR`` / ``HARNESS_RUN_ID``;

minus every variable that the alert routes file names (a sink's ``url_env`` / ``secret_env``,
the links' ``*_env``), even where a pass-through pattern would match it.

What the selectors wrote (logs, pytest's JSON) is checked for those values all the same, before
anything is parsed or published: a test could still read a secret from elsewhere (a file, a
credential helper). Each occurrence is replaced by ``[redacted: NAME]`` and the run's notes say
where (``redact_secrets``).

The interpreter that runs pytest is the environment under test end to end: its ``bin/`` comes
first on ``PATH`` (so ``python``, ``pytest`` and console scripts started by tests are that
environment's) and ``VIRTUAL_ENV`` (a venv) or ``CONDA_PREFIX`` (a conda environment) names it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from harness.locations import REPO_ROOT

PROCESS_VARIABLES: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "HOSTNAME", "LANG", "LANGUAGE", "LC_*", "TZ",
    "TMPDIR", "TEMP", "TMP", "TERM", "COLUMNS", "NO_COLOR", "FORCE_COLOR",
    "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR",
    "LD_LIBRARY_PATH", "SYSTEMROOT",
)
PASS_THROUGH: tuple[str, ...] = (
    # The interpreter's own settings (PYTHONPATH also carries the harness's pytest plugins).
    "PYTHONPATH", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "PYTHONWARNINGS", "PYTHONFAULTHANDLER",
    "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONPYCACHEPREFIX", "PYTHONUNBUFFERED",
    # Threads, devices and logging of the numeric stack and the two frameworks.
    "OMP_*", "MKL_*", "OPENBLAS_*", "KMP_*", "NUMEXPR_*", "CUDA_*", "NVIDIA_*", "CUBLAS_*", "CUDNN_*",
    "TF_*", "XLA_*", "TORCH_*", "PYTORCH_*", "MPLBACKEND", "MPLCONFIGDIR",
    # The project under test and the CI it runs in (never a CI token: those are not listed).
    "PTYCHO_*", "CI", "COVERAGE_*",
)
# Keys of the routes file whose value is the name of an environment variable.
_ROUTE_VARIABLE = re.compile(r"\b\w*_env\s*:\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)")
DEFAULT_ROUTES = REPO_ROOT / "alerts" / "routes.yaml"


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def route_variable_names(environ: Mapping[str, str]) -> set[str]:
    """The variables the routes file in force (``$HARNESS_ROUTES``, else ``alerts/routes.yaml``)
    names. Read as text, not validated (that happens when alerts are sent): a cheap scan that can
    only withhold too much, and an unreadable file withholds nothing beyond the allow-list."""
    path = Path(environ["HARNESS_ROUTES"]) if environ.get("HARNESS_ROUTES") else DEFAULT_ROUTES
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return set(_ROUTE_VARIABLE.findall(text))


def interpreter_prefix(python: str) -> tuple[Path, Path | None, str | None]:
    """``(bin folder, environment prefix, kind)`` of an interpreter path, not resolving links
    (a venv's ``bin/python`` links to its base interpreter; resolving it would lose the venv).
    kind is ``"venv"``, ``"conda"`` or None (a system interpreter)."""
    bin_dir = Path(os.path.abspath(python)).parent
    prefix = bin_dir.parent
    if (prefix / "pyvenv.cfg").is_file():
        return bin_dir, prefix, "venv"
    if (prefix / "conda-meta").is_dir():
        return bin_dir, prefix, "conda"
    return bin_dir, None, None


def build_environment(
    selector_env: Mapping[str, str],
    selector_name: str,
    run_id: str,
    *,
    python: str | None = None,
    explicit_python: bool = False,
    pass_env: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables for one selector's process (see the module docstring).

    ``python`` is the interpreter that runs pytest; with ``explicit_python`` (the catalog named
    it) its ``bin/`` always leads ``PATH``, otherwise only when it is a virtual or conda
    environment (the harness's own ``/usr/bin/python3`` must not reorder a system PATH).
    """
    source = os.environ if environ is None else environ
    allowed = (*PROCESS_VARIABLES, *PASS_THROUGH, *pass_env)
    withheld = route_variable_names(source)
    env = {name: value for name, value in source.items() if _matches(name, allowed) and name not in withheld}
    if python:
        bin_dir, prefix, kind = interpreter_prefix(python)
        if explicit_python or kind is not None:
            entries = [entry for entry in env.get("PATH", os.defpath).split(os.pathsep) if entry and entry != str(bin_dir)]
            env["PATH"] = os.pathsep.join([str(bin_dir), *entries])
        if kind == "venv":
            env["VIRTUAL_ENV"] = str(prefix)
        elif kind == "conda":
            env["CONDA_PREFIX"] = str(prefix)
    env.update(selector_env)
    env["HARNESS_SELECTOR"] = selector_name
    env["HARNESS_RUN_ID"] = run_id
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def interpreter_environment(python: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables for asking ``python`` about itself (``env.txt``): what a selector's process
    gets, without the selector's own settings, so that the answer describes the tests' view and
    no secret reaches that interpreter (its ``sitecustomize`` or ``.pth`` files run there)."""
    env = build_environment({}, "", "", python=python, environ=environ)
    env.pop("HARNESS_SELECTOR", None)
    env.pop("HARNESS_RUN_ID", None)
    return env


# Besides the routes file's variables, names that hold credentials by convention.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|API_KEY|ACCESS_KEY", re.IGNORECASE)
# Shorter values are too likely to occur by chance ("1", "true", a port number).
MIN_SECRET_LENGTH = 8
# The files a selector's process writes itself; tmp/ (test artifacts, checkpoints) is not scanned.
SCANNED_FILES = ("stdout.log", "stderr.log", "pytest.json")


def secret_values(environ: Mapping[str, str]) -> dict[str, str]:
    """``{name: value}`` of the harness's secrets: the routes file's variables and credential-like names."""
    names = route_variable_names(environ) | {name for name in environ if _SECRET_NAME.search(name)}
    return {name: environ[name] for name in sorted(names)
            if len(environ.get(name, "")) >= MIN_SECRET_LENGTH}


class SecretRedactor:
    """Replaces the harness's secret values (``secret_values``) in bytes and files with
    ``[redacted: NAME]``, and remembers which variables it found. Used on everything a selector's
    process writes: its logs and pytest's JSON in a run, ``failure.log``, ``pytest.json`` and
    ``env.txt`` in an escalation."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        secrets = secret_values(os.environ if environ is None else environ)
        # The value as written, and as JSON writes it (quotes, backslashes, non-ASCII escaped).
        self.needles = [(name, form) for name, value in secrets.items()
                        for form in dict.fromkeys((value.encode("utf-8"), json.dumps(value)[1:-1].encode("ascii")))]

    def __bool__(self) -> bool:
        return bool(self.needles)

    def redact(self, data: bytes) -> tuple[bytes, list[str]]:
        """``data`` with every secret value replaced, and the names of the variables found in it."""
        found = list(dict.fromkeys(name for name, needle in self.needles if needle in data))
        for name, needle in self.needles:
            if name in found:
                data = data.replace(needle, f"[redacted: {name}]".encode())
        return data, found

    def redact_file(self, path: Path) -> list[str]:
        """Redact ``path`` in place (rewritten only when a value was found); the names found."""
        try:
            data = path.read_bytes()
        except OSError:
            return []
        cleaned, found = self.redact(data)
        if found:
            path.write_bytes(cleaned)
        return found


def redaction_notes(found: Iterable[str], relative: str) -> list[str]:
    """One note per variable found in a file, naming both, never the value."""
    return [f"secret value of {name} found in {relative}; redacted" for name in found]


def redact_secrets(selectors_dir: Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """Replace every secret value found in the selectors' own files under ``selectors_dir``
    (``<name>/stdout.log``, ``stderr.log``, ``pytest.json``); one note per file and variable."""
    redactor = SecretRedactor(environ)
    if not redactor or not selectors_dir.is_dir():
        return []
    notes = []
    for path in sorted(p for name in SCANNED_FILES for p in selectors_dir.glob(f"*/{name}")):
        notes.extend(redaction_notes(redactor.redact_file(path), path.relative_to(selectors_dir.parent).as_posix()))
    return notes
