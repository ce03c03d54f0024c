"""Pictures in the summary: a selector's recorded PNGs are copied into the run directory (thumbnail
beside the full size), shown in ``summary.html`` (this run beside the previous one) and on the
dashboard, listed in ``summary.md``; the page is self-contained (it still shows them when the run
directory is moved) and headless Chromium renders the images."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_dashboard import _chromium_argv, chromium  # noqa: F401 - the session fixture installing Chromium
from sample_projects import RULES, harness_main

from harness.report_images import label_of

MAGENTA = (255, 0, 255)

WRITER = '''\
from PIL import Image

def _picture(path, size, shade):
    image = Image.new("RGB", size, (255, 0, 255))
    for x in range(0, size[0], 8):
        for y in range(size[1]):
            image.putpixel((x, y), (shade, shade, shade))
    image.save(path)

def test_run_pytorch_train_save_load_infer(tmp_path, record_property):
    shade = int(open("shade.txt").read())  # the project root is the working directory
    for name, size in (("amplitude_png", (600, 560)), ("phase_png", (64, 60))):
        path = tmp_path / f"reconstruction_{name[:-4]}.png"
        _picture(path, size, shade)
        record_property(name, str(path))
    record_property("note_png", "not/a/file.png")  # a recorded path that does not exist: left out
'''

CATALOG = f"""\
version = 1
root = "."
rules = "{RULES.as_posix()}"

[selectors.integration]
title = "Integration workflow (pictures)"
owner = "TEST-PYTORCH-001"
args = ["tests/test_integration.py"]
[selectors.integration.runtime]
critical_s = 90

[cadences.pr]
selectors = ["integration"]
"""


@pytest.fixture
def two_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> tuple[Path, Path, Path]:
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_integration.py").write_text(WRITER, encoding="utf-8")
    (project / "catalog.toml").write_text(CATALOG, encoding="utf-8")
    reports = tmp_path / "reports"
    runs = []
    for shade in ("0", "200"):
        (project / "shade.txt").write_text(shade)
        code = harness_main("run", "--cadence", "pr", "--catalog", str(project / "catalog.toml"), "--reports-dir",
                            str(reports), "--history", str(tmp_path / "history.sqlite"), "--progress", "none")
        capsys.readouterr()
        assert code == 0
        runs.append(max(p for p in reports.glob("*-pr")))
        if shade == "0":
            import time

            time.sleep(1.1)  # run directory names carry the second
    return reports, runs[0], runs[1]


def _refs(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(images/[^"]+)"', html)


def test_labels() -> None:
    assert label_of("ground_truth_amplitude_png") == "ground truth amplitude"
    assert label_of("phase_png") == "phase"


def test_images_are_copied_shown_beside_the_previous_run_and_listed(two_runs: tuple[Path, Path, Path],
                                                                    tmp_path: Path) -> None:
    reports, first, second = two_runs
    index = json.loads((second / "images" / "index.json").read_text())
    entry = index["selectors"]["integration"]
    assert [i["label"] for i in entry["current"]] == ["amplitude", "phase"]  # the missing note_png is left out
    assert entry["previous_run"] == first.name and len(entry["previous"]) == 2
    amplitude = entry["current"][0]
    assert amplitude["file"] == "images/integration/amplitude.png" and (amplitude["width"], amplitude["height"]) == (600, 560)
    assert amplitude["thumbnail"] == "images/integration/amplitude.thumb.png"  # 600 px > 2 x 240: a real thumbnail
    assert entry["current"][1]["thumbnail"] == entry["current"][1]["file"]  # 64 px: the image itself, scaled by the page
    from PIL import Image

    with Image.open(second / amplitude["thumbnail"]) as thumb:
        assert max(thumb.size) == 240
    with Image.open(second / "images/integration/previous/amplitude.png") as previous, \
            Image.open(second / amplitude["file"]) as current:
        assert previous.getpixel((0, 0)) == (0, 0, 0) and current.getpixel((0, 0)) == (200, 200, 200)

    # self-contained: every image the page names is inside the run directory, even once it is moved
    moved = shutil.copytree(second, tmp_path / "elsewhere" / second.name, symlinks=True)
    html = (moved / "summary.html").read_text()
    refs = _refs(html)
    assert len(refs) == 8  # 2 images x (link + thumbnail) x (this run + previous)
    assert all((moved / ref).is_file() for ref in refs)
    assert f"Previous run <code>{first.name}</code>" in html
    markdown = (second / "summary.md").read_text()
    assert "## Images" in markdown and "[amplitude](images/integration/amplitude.png)" in markdown
    assert f"previous run `{first.name}`" in markdown

    dashboard = (reports / "index.html").read_text()
    assert 'id="reconstructions"' in dashboard
    for ref in re.findall(r'(?:src|href)="([^"]+/images/[^"]+)"', dashboard):
        assert (reports / ref).is_file(), ref
    assert f'{second.name}/images/integration/amplitude.thumb.png' in dashboard
    assert f'{second.name}/images/integration/previous/amplitude.png' in dashboard


def test_summary_shows_the_images_in_chromium(two_runs: tuple[Path, Path, Path], chromium: str,  # noqa: F811
                                              tmp_path: Path) -> None:
    _, _, second = two_runs
    shot = tmp_path / "summary.png"
    done = subprocess.run([*_chromium_argv(chromium, tmp_path / "profile"), "--hide-scrollbars",
                           "--window-size=1200,1400", f"--screenshot={shot}", (second / "summary.html").as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    import numpy as np
    from PIL import Image

    with Image.open(shot) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    magenta = int(((rgb[..., 0] > 225) & (rgb[..., 1] < 40) & (rgb[..., 2] > 225)).sum())
    # four pictures drawn (about 240x224 + 64x60 each, half of it magenta): a broken image draws none
    assert magenta > 40_000, magenta


def test_the_job_summary_links_the_images_to_the_run_artifact(two_runs: tuple[Path, Path, Path],
                                                              tmp_path: Path) -> None:
    """A relative link leads nowhere in GitHub's job summary: there it points at the run's artifacts."""
    import io

    from harness import github

    _, _, second = two_runs
    step_summary = tmp_path / "step-summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(step_summary), "GITHUB_SERVER_URL": "https://github.example",
           "GITHUB_REPOSITORY": "lab/ptycho", "GITHUB_RUN_ID": "4242"}
    assert github.publish(None, second, env=env, out=io.StringIO())
    text = step_summary.read_text()
    assert ('[amplitude](https://github.example/lab/ptycho/actions/runs/4242#artifacts '
            '"images/integration/amplitude.png in the run directory artifact")') in text
    assert "](images/" not in text
