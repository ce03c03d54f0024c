"""``harness serve``: runs a cadence on its cron schedule (here every 2 seconds), serves the
dashboard and the run reports on 127.0.0.1, and stops cleanly on SIGTERM, interrupting the run in
flight so that it still publishes its report."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sample_projects import REPO, harness, harness_env, make_project

from harness.catalog import load_catalog
from harness.errors import ConfigError


def _wait(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def served(tmp_path: Path):
    catalog = make_project(tmp_path / "project", nightly_schedule="* * * * * */2")
    reports = tmp_path / "reports"
    log = tmp_path / "serve.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "harness", "serve", "--catalog", str(catalog), "--reports-dir", str(reports),
             "--port", "0", "--jobs", "2"],
            stdout=handle, stderr=subprocess.STDOUT, cwd=REPO,
            # The first run is quick; later ones sleep in a test, so SIGTERM surely finds one in flight.
            env=harness_env(TINY_SLOW_AFTER_FIRST=str(tmp_path / "ran-once")),
        )
    try:
        match = _wait(lambda: re.search(r"serving http://127\.0\.0\.1:(\d+)/", log.read_text(errors="replace")),
                      60, "the serving line")
        yield process, int(match.group(1)), reports, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_runs_on_schedule_serves_the_dashboard_and_stops_on_sigterm(served) -> None:
    process, port, reports, log = served

    def health() -> dict:
        status, body = _get(port, "/healthz")
        assert status == 200
        return json.loads(body)

    # The cron schedule fires and a run completes.
    first = _wait(lambda: health()["completed"], 90, "a completed scheduled run")[0]
    assert first["cadence"] == "nightly" and first["exit_code"] == 0
    assert health()["schedules"]["nightly"]["cron"] == "* * * * * */2"

    # The dashboard the run regenerated, and the run's own summary, over HTTP.
    status, page = _get(port, "/")
    assert status == 200
    html = page.decode("utf-8")
    assert 'data-selector="backend_selection" data-state="passed"' in html
    run_link = re.search(r'href="(\d{8}T\d{6}Z-nightly(?:-\d+)?)/summary\.html"', html)
    assert run_link, "the dashboard links the scheduled run's summary"
    status, summary = _get(port, f"/{run_link.group(1)}/summary.html")
    assert status == 200 and b"backend_selection" in summary
    assert _get(port, f"/{run_link.group(1)}/report.json")[0] == 200

    # Only report files: never the history database, hidden staging folders or a listing.
    assert _get(port, "/history.sqlite")[0] == 404
    assert _get(port, "/.staging/")[0] == 404
    assert _get(port, "/../../../etc/passwd")[0] == 404
    assert _get(port, f"/{run_link.group(1)}/selectors/")[0] == 404

    # The next firing is in flight (its test is sleeping): SIGTERM stops it and the server.
    running = _wait(lambda: health()["running"], 60, "the next scheduled run to start")
    _wait(lambda: (reports.parent / "ran-once.sleeping").exists(), 60, "the in-flight run to reach its sleeping test")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    text = log.read_text(errors="replace")
    assert "stop   SIGTERM received" in text and text.rstrip().endswith("stopped")
    assert not _alive(running["pid"]), "the run in flight outlived the server"

    runs = sorted(path for path in reports.iterdir() if path.is_dir() and not path.name.startswith("."))
    assert len(runs) >= 2
    for run in runs:  # every run published a complete report, the interrupted one too
        assert (run / "report.json").is_file() and (run / "summary.html").is_file()
    assert f"the run in flight (pid {running['pid']}) gets SIGTERM" in text
    last = json.loads((runs[-1] / "report.json").read_text(encoding="utf-8"))
    assert last["run"]["interrupted"] is True and last["run"]["status"] == "interrupted"
    staging = reports / ".staging"
    assert not staging.exists() or not [p for p in staging.iterdir() if p.is_dir()]
    with pytest.raises(ConnectionError):
        _get(port, "/healthz")


def test_catalog_schedule_is_validated(tmp_path: Path) -> None:
    catalog = make_project(tmp_path, nightly_schedule="17 3 * * *")
    assert load_catalog(catalog).cadences["nightly"].schedule == "17 3 * * *"
    bad = make_project(tmp_path / "bad", nightly_schedule="61 3 * * *")
    with pytest.raises(ConfigError, match=r"cadences\.nightly\.schedule: '61 3 \* \* \*' is not a cron expression"):
        load_catalog(bad)


def test_serve_without_any_schedule_is_a_usage_error(tmp_path: Path) -> None:
    catalog = make_project(tmp_path)
    done = harness("serve", "--catalog", str(catalog), "--reports-dir", str(tmp_path / "r"), "--port", "0",
                   timeout=60)
    assert done.returncode == 2
    assert "no cadence has a schedule" in done.stderr and "Traceback" not in done.stderr
    done = harness("serve", "--catalog", str(catalog), "--port", "0", "--schedule", "hourly=* * * * *", timeout=60)
    assert done.returncode == 2 and "no cadence 'hourly'" in done.stderr
