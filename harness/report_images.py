"""Pictures a run's tests recorded (reconstruction amplitude and phase, the ground truth beside
them), gathered into the run directory so its pages are self-contained.

A test names an image with ``record_property(name, path)`` where the path ends in ``.png`` (the
integration workflow's ``amplitude_png``/``phase_png``, the quality selector's reconstruction and
ground truth). Each is copied to ``images/<selector>/<name>.png`` with a thumbnail beside it, and
the same selector's images of the previous run that had any are copied to
``images/<selector>/previous/``, so a page shows the latest reconstruction beside the one before.
``images/index.json`` lists them (the dashboard reads it). A file that is missing or not a PNG
is left out here; the artifact rules (ARTIF-002) already report it.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.report_model import RunReport

IMAGES_DIR = "images"
INDEX_NAME = "index.json"
PREVIOUS_DIR = "previous"
STAGING_DIR = ".staging"  # harness.run_directory.STAGING: a run is written there, then renamed
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
THUMBNAIL_PX = 240
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # a page is no place for bigger files; they stay in tmp/
MAX_IMAGES_PER_SELECTOR = 24


@dataclass
class ReportImage:
    property: str
    label: str
    nodeid: str
    file: str  # relative to the run directory
    thumbnail: str  # relative to the run directory (the file itself when small)
    width: int | None = None
    height: int | None = None


@dataclass
class SelectorImages:
    selector: str
    current: list[ReportImage] = field(default_factory=list)
    previous_run: str | None = None
    previous: list[ReportImage] = field(default_factory=list)


def label_of(prop: str) -> str:
    """``ground_truth_amplitude_png`` -> ``ground truth amplitude``."""
    return re.sub(r"[_\s]*png$", "", prop, flags=re.IGNORECASE).replace("_", " ").strip() or prop


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text).strip(".-")[:80] or "image"


def final_directory(directory: Path, run_id: str) -> Path:
    """Where ``directory`` (the staging folder while a run is written) will be once published."""
    return directory.parent.parent / run_id if directory.parent.name == STAGING_DIR else directory


def reports_root(directory: Path) -> Path:
    return directory.parent.parent if directory.parent.name == STAGING_DIR else directory.parent


def _source(value: str, directory: Path, final: Path, root: Path) -> Path:
    """A recorded path as a file to read now: paths into the published directory are still in staging."""
    path = Path(value)
    if not path.is_absolute():
        path = root / path
    for published in {final, final.resolve()} if final.exists() else {final}:
        try:
            return directory / path.relative_to(published)
        except ValueError:
            continue
    return path


def _png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the IHDR chunk; None when the file is not a PNG."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
    except OSError:
        return None
    if len(head) < 24 or not head.startswith(PNG_MAGIC) or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _thumbnail(source: Path, target: Path, size: tuple[int, int]) -> bool:
    """A PNG at most THUMBNAIL_PX on its longer side; False (use the image itself, scaled by the
    page) when it is at most twice that already (a reconstruction of 272 px gains nothing from a
    240 px copy) or Pillow cannot read it."""
    if max(size) <= 2 * THUMBNAIL_PX:
        return False
    try:
        from PIL import Image

        with Image.open(source) as image:
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            image.save(target, format="PNG")
        return True
    except Exception:  # noqa: BLE001 - a page without a thumbnail shows the image scaled instead
        target.unlink(missing_ok=True)
        return False


def _copy_image(source: Path, directory: Path, folder: str, stem: str, *, prop: str, nodeid: str) -> ReportImage | None:
    size = _png_size(source)
    try:
        if size is None or source.stat().st_size > MAX_IMAGE_BYTES:
            return None
    except OSError:
        return None
    target_dir = directory / folder
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{stem}.png"
    try:
        shutil.copyfile(source, target)
    except OSError:
        return None
    thumb = target_dir / f"{stem}.thumb.png"
    relative = target.relative_to(directory).as_posix()
    thumbnail = thumb.relative_to(directory).as_posix() if _thumbnail(target, thumb, size) else relative
    return ReportImage(property=prop, label=label_of(prop), nodeid=nodeid, file=relative, thumbnail=thumbnail,
                       width=size[0], height=size[1])


def _recorded(report: RunReport) -> dict[str, list[tuple[str, str, str]]]:
    """selector -> [(property, nodeid, path)] of every ``*.png`` path a test recorded."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for result in report.selectors:
        for test in result.tests:
            for prop, value in test.user_properties.items():
                if isinstance(value, str) and value.lower().endswith(".png"):
                    found.setdefault(result.name, []).append((prop, test.nodeid, value))
    return found


def read_index(run_dir: Path) -> dict[str, SelectorImages]:
    """A run directory's ``images/index.json`` (empty when absent or unreadable)."""
    try:
        data = json.loads((run_dir / IMAGES_DIR / INDEX_NAME).read_text(encoding="utf-8"))
        return {name: SelectorImages(selector=name, current=[ReportImage(**i) for i in entry.get("current", [])],
                                     previous_run=entry.get("previous_run"),
                                     previous=[ReportImage(**i) for i in entry.get("previous", [])])
                for name, entry in data.get("selectors", {}).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _previous_run(reports: Path, run_id: str, selector: str) -> tuple[str, list[ReportImage]] | None:
    """The newest earlier run directory with images of ``selector``."""
    try:
        names = sorted((p.name for p in reports.iterdir() if p.is_dir() and not p.name.startswith(".")
                        and p.name < run_id), reverse=True)
    except OSError:
        return None
    for name in names:
        index = read_index(reports / name)
        if selector in index and index[selector].current:
            return name, index[selector].current
    return None


def gather_images(report: RunReport, directory: Path) -> list[SelectorImages]:
    """Copy the run's recorded images (and the previous run's, for comparison) into ``directory``
    and write ``images/index.json``; returns what a page shows, selector by selector."""
    directory = Path(directory)
    final = final_directory(directory, report.run.id)
    root = Path(report.run.root)
    gathered: list[SelectorImages] = []
    for selector, recorded in _recorded(report).items():
        entry = SelectorImages(selector=selector)
        taken: set[str] = set()
        for prop, nodeid, value in recorded[:MAX_IMAGES_PER_SELECTOR]:
            stem = _slug(re.sub(r"[_-]?png$", "", prop, flags=re.IGNORECASE) or prop)
            if stem in taken:  # the same property from several tests: keep them apart
                stem = _slug(f"{stem}-{nodeid.rsplit('::', 1)[-1]}")
            taken.add(stem)
            image = _copy_image(_source(value, directory, final, root), directory, f"{IMAGES_DIR}/{_slug(selector)}",
                                stem, prop=prop, nodeid=nodeid)
            if image is not None:
                entry.current.append(image)
        if not entry.current:
            continue
        previous = _previous_run(reports_root(directory), report.run.id, selector)
        if previous is not None:
            run_name, images = previous
            entry.previous_run = run_name
            for old in images:
                copied = _copy_image(reports_root(directory) / run_name / old.file, directory,
                                     f"{IMAGES_DIR}/{_slug(selector)}/{PREVIOUS_DIR}", Path(old.file).stem,
                                     prop=old.property, nodeid=old.nodeid)
                if copied is not None:
                    entry.previous.append(copied)
        gathered.append(entry)
    if gathered:
        index = {"run": report.run.id, "selectors": {
            e.selector: {"current": [asdict(i) for i in e.current], "previous_run": e.previous_run,
                         "previous": [asdict(i) for i in e.previous]} for e in gathered}}
        (directory / IMAGES_DIR / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return gathered
