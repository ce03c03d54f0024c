"""``harness serve``: self-hosted scheduling for labs that run GPU CI on their own machines.

Runs each cadence that has a ``schedule`` (cron, UTC) in the catalog, and serves the reports
folder (the dashboard ``index.html``, each run's summary) on localhost. Each run is a
``harness run`` subprocess, so a crash in one run never takes the scheduler down.

Runs are serialized: two cadences due together run one after the other (they would compete
for the same CPUs or GPU and distort each other's runtimes). A cadence whose previous firing is
still queued or running skips the new one (logged), like Kubernetes' ``concurrencyPolicy:
Forbid``. SIGTERM or SIGINT: the run in flight gets SIGTERM (it stops its pytest children and
still publishes a report marked interrupted), the HTTP server stops, the process exits 0.
"""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from harness import process_tree
from harness.terminal_text import one_line
from harness.catalog import Catalog

RUN_STOP_GRACE_S = 60.0  # how long a stopped run may take to write its interrupted report
# What the HTTP server hands out: pages and the files a run directory holds, nothing else
# (never the history database, never the hidden staging folders).
SERVED_SUFFIXES = {".html", ".json", ".md", ".txt", ".log", ".png", ".svg", ".css"}


def utc_now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class ScheduledCadence:
    name: str
    cron: str
    next_at: datetime
    last_started: str | None = None
    last_exit: int | None = None
    runs: int = 0
    skipped: int = 0

    def advance(self, after: datetime) -> None:
        from croniter import croniter

        self.next_at = croniter(self.cron, after).get_next(datetime)


@dataclass
class ServeState:
    """What /healthz reports; guarded by ``lock``."""

    started_at: str
    url: str = ""
    running: dict[str, Any] | None = None
    queue: list[str] = field(default_factory=list)
    completed: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def schedules(catalog: Catalog, only: list[str] | None = None,
              overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Cadence name -> cron expression: the catalog's, replaced by ``overrides``, narrowed to ``only``."""
    from croniter import croniter

    from harness.errors import HarnessError

    table = {name: cadence.schedule for name, cadence in catalog.cadences.items() if cadence.schedule}
    for name, cron in (overrides or {}).items():
        catalog.cadence(name)  # a ConfigError naming the valid cadences
        if not croniter.is_valid(cron):
            raise HarnessError(f"--schedule {name}={cron}: not a cron expression (e.g. '17 3 * * *')")
        table[name] = cron
    if only:
        for name in only:
            catalog.cadence(name)
            if name not in table:
                raise HarnessError(f"--cadence {name}: no schedule in {catalog.path} (add schedule = \"...\" "
                                   f"under [cadences.{name}], or pass --schedule {name}=CRON)")
        table = {name: table[name] for name in only}
    if not table:
        raise HarnessError(f"{catalog.path}: no cadence has a schedule (add schedule = \"17 3 * * *\" to one, "
                           "or pass --schedule CADENCE=CRON)")
    return table


def loopback_host_names(host: str, port: int) -> frozenset[str] | None:
    """The Host header values a server bound to ``host``:``port`` accepts: the loopback names
    with and without the port when ``host`` is a loopback address; None (any) otherwise, where
    the server is reachable by whatever name the network gives it."""
    import ipaddress

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        return None
    names = {"localhost", "127.0.0.1", "[::1]", host if ":" not in host else f"[{host}]"}
    return frozenset({*names, *(f"{name}:{port}" for name in names)})


class ReportsHandler(http.server.SimpleHTTPRequestHandler):
    """Static files from the reports folder, restricted to report files; ``/healthz`` as JSON."""

    state: ServeState
    log_stream: TextIO
    history: Any = None  # a Path or HistoryURL for /metrics; None: no history, /metrics answers 404
    # The Host names a request may carry (None: any). On a loopback address only loopback names
    # are accepted: a web page whose own name was rebound to 127.0.0.1 (DNS rebinding) sends its
    # own name as Host and gets 403, so it cannot read the reports through the visitor's browser.
    allowed_hosts: frozenset[str] | None = None

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        host = self.headers.get("Host")
        if self.allowed_hosts is not None and host is not None and host.lower() not in self.allowed_hosts:
            self.send_error(403, "unexpected Host header (harness serve answers only to its own address)")
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?", 1)[0] == "/metrics":
            self._metrics()
            return
        if self.path.split("?", 1)[0] == "/healthz":
            with self.state.lock:
                body = json.dumps({
                    "started_at": self.state.started_at, "running": self.state.running,
                    "queue": list(self.state.queue), "completed": self.state.completed[-50:],
                    "schedules": getattr(self.server, "schedule_view", lambda: {})(),
                }, indent=2).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def _metrics(self) -> None:
        """The OpenMetrics text of the history, read afresh on every scrape."""
        from harness.metrics import CONTENT_TYPE, render_from_history

        if self.history is None:
            self.send_error(404, "no history (serve runs with --no-history)")
            return
        try:
            body = render_from_history(self.history).encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - a scrape error is the scraper's to see, not a crash
            self.send_error(503, f"history not readable: {type(exc).__name__}")
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_head(self):  # type: ignore[override]
        path = Path(self.translate_path(self.path))
        root = Path(self.directory).resolve()
        try:
            relative = path.resolve().relative_to(root)
        except ValueError:
            relative = None
        if relative is None or any(part.startswith(".") for part in relative.parts):
            self.send_error(404, "not found")
            return None
        if path.is_dir():
            if not (path / "index.html").is_file() and not (path / "summary.html").is_file():
                self.send_error(404, "no page here")
                return None
            if (path / "summary.html").is_file() and not (path / "index.html").is_file() and self.path.endswith("/"):
                self.send_response(302)
                self.send_header("Location", self.path + "summary.html")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
        elif path.suffix.lower() not in SERVED_SUFFIXES:
            self.send_error(404, "not served")
            return None
        return super().send_head()

    def list_directory(self, path):  # type: ignore[override]
        self.send_error(404, "no listing")
        return None

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        # The request line is the client's text: shown, never acted on by the terminal.
        self.log_stream.write(f"{_stamp(utc_now())} http {self.address_string()} {one_line(format % args)}\n")
        self.log_stream.flush()


class Server:
    """The scheduler loop, the run worker and the HTTP server of ``harness serve``."""

    def __init__(self, catalog: Catalog, table: dict[str, str], run_args: list[str], reports_dir: Path,
                 host: str = "127.0.0.1", port: int = 8765, log: TextIO | None = None,
                 python: str | None = None, env: dict[str, str] | None = None, history: Any = None) -> None:
        self.catalog = catalog
        self.history = history  # what /metrics reads (a Path, a HistoryURL, or None)
        self.run_args = run_args
        self.reports_dir = Path(reports_dir)
        self.host, self.port = host, port
        self.log_stream = log or sys.stderr
        self.python = python or sys.executable
        self.env = env  # the runs' environment (None: inherited); carries a history URL, not argv
        self.stop = threading.Event()
        self.wake = threading.Condition()
        self.pending: deque[str] = deque()
        self.process: subprocess.Popen | None = None
        now = utc_now()
        self.cadences = {name: ScheduledCadence(name=name, cron=cron, next_at=now) for name, cron in table.items()}
        for item in self.cadences.values():
            item.advance(now)
        self.state = ServeState(started_at=_stamp(now))

    def log(self, message: str) -> None:
        self.log_stream.write(f"{_stamp(utc_now())} {one_line(message)}\n")
        self.log_stream.flush()

    # -- HTTP -----------------------------------------------------------------------------------

    def _schedule_view(self) -> dict[str, Any]:
        return {name: {"cron": c.cron, "next_at": _stamp(c.next_at), "runs": c.runs, "skipped": c.skipped,
                       "last_started": c.last_started, "last_exit": c.last_exit}
                for name, c in self.cadences.items()}

    def start_http(self) -> http.server.ThreadingHTTPServer:
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        handler = type("Handler", (ReportsHandler,), {"state": self.state, "log_stream": self.log_stream,
                                                      "history": self.history})

        def factory(*args: Any, **kwargs: Any) -> ReportsHandler:
            return handler(*args, directory=str(self.reports_dir), **kwargs)

        httpd = http.server.ThreadingHTTPServer((self.host, self.port), factory)
        httpd.daemon_threads = True
        httpd.schedule_view = self._schedule_view  # type: ignore[attr-defined]
        host, port = httpd.server_address[:2]
        handler.allowed_hosts = loopback_host_names(host, port)
        self.state.url = f"http://{host}:{port}/"
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                         name="harness-serve-http").start()
        return httpd

    # -- scheduling -----------------------------------------------------------------------------

    def _due(self, now: datetime) -> None:
        for item in self.cadences.values():
            if item.next_at > now:
                continue
            with self.state.lock:
                busy = item.name in self.pending or (self.state.running or {}).get("cadence") == item.name
            if busy:
                item.skipped += 1
                self.log(f"skip   {item.name}: the previous firing is still queued or running")
            else:
                with self.wake:
                    self.pending.append(item.name)
                    with self.state.lock:
                        self.state.queue = list(self.pending)
                    self.wake.notify_all()
                self.log(f"due    {item.name} ({item.cron})")
            item.advance(now)

    def _scheduler(self) -> None:
        while not self.stop.is_set():
            now = utc_now()
            self._due(now)
            upcoming = min(item.next_at for item in self.cadences.values())
            self.stop.wait(max(0.05, min(1.0, (upcoming - utc_now()).total_seconds())))

    def _worker(self) -> None:
        while True:
            with self.wake:
                while not self.pending and not self.stop.is_set():
                    self.wake.wait()
                if self.stop.is_set():
                    return
                name = self.pending.popleft()
                with self.state.lock:
                    self.state.queue = list(self.pending)
            self._run(name)

    def _run(self, cadence: str) -> None:
        argv = [self.python, "-m", "harness", "run", "--cadence", cadence, "--progress", "plain", *self.run_args]
        item = self.cadences[cadence]
        started = utc_now()
        item.last_started = _stamp(started)
        try:
            # If serve itself is killed (even with SIGKILL), the run gets SIGTERM from the kernel and
            # stops its selectors' process trees as on any SIGTERM, writing its interrupted report.
            self.process = subprocess.Popen(  # noqa: S603 - argv list
                argv, stdin=subprocess.DEVNULL, env=self.env,
                preexec_fn=process_tree.parent_death_preexec(signal.SIGTERM))  # noqa: PLW1509 - no locks taken
        except OSError as exc:
            self.log(f"error  {cadence}: cannot start harness run: {exc.strerror or exc}")
            item.last_exit = 3
            return
        with self.state.lock:
            self.state.running = {"cadence": cadence, "pid": self.process.pid, "started_at": item.last_started}
        self.log(f"start  {cadence} (pid {self.process.pid})")
        code = self.process.wait()
        item.runs += 1
        item.last_exit = code
        with self.state.lock:
            self.state.running = None
            self.state.completed.append({"cadence": cadence, "started_at": item.last_started,
                                         "finished_at": _stamp(utc_now()), "exit_code": code,
                                         "pid": self.process.pid})
        self.process = None
        self.log(f"done   {cadence}: exit {code} in {(utc_now() - started).total_seconds():.1f} s")

    # -- lifecycle ------------------------------------------------------------------------------

    def request_stop(self, signum: int, frame: object = None) -> None:
        if not self.stop.is_set():
            self.log(f"stop   {signal.Signals(signum).name} received")
        self.stop.set()
        with self.wake:
            self.wake.notify_all()

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT/SIGHUP; returns the exit code (0 after a clean stop)."""
        previous = {s: signal.signal(s, self.request_stop) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        httpd = None
        try:
            httpd = self.start_http()
            self._refresh_dashboard()
            print(f"harness: serving {self.state.url} (reports {self.reports_dir})", file=self.log_stream, flush=True)
            for item in self.cadences.values():
                self.log(f"plan   {item.name}: {item.cron} (UTC), next {_stamp(item.next_at)}")
            worker = threading.Thread(target=self._worker, name="harness-serve-worker", daemon=True)
            worker.start()
            scheduler = threading.Thread(target=self._scheduler, name="harness-serve-scheduler", daemon=True)
            scheduler.start()
            while not self.stop.is_set():
                self.stop.wait(0.5)
            self._stop_run_in_flight()
            worker.join(timeout=RUN_STOP_GRACE_S + 10)
            scheduler.join(timeout=5)
        finally:
            if httpd is not None:
                httpd.shutdown()
                httpd.server_close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.log("stopped")
        return 0

    def _stop_run_in_flight(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        self.log(f"stop   the run in flight (pid {process.pid}) gets SIGTERM and writes its interrupted report")
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=RUN_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.log(f"kill   pid {process.pid}: no exit {RUN_STOP_GRACE_S:.0f} s after SIGTERM")
            process.kill()
            process.wait()

    def _refresh_dashboard(self) -> None:
        """The page exists before the first scheduled run, when there is history to show."""
        if (self.reports_dir / "index.html").exists():
            return
        argv = [self.python, "-m", "harness", "dashboard", *self._dashboard_args()]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,  # noqa: S603
                              env=self.env)
        if done.returncode != 0:
            self.log(f"note   no dashboard yet ({(done.stderr.strip().splitlines() or ['?'])[-1]})")

    def _dashboard_args(self) -> list[str]:
        """The run arguments that ``harness dashboard`` also takes (catalog, reports, history)."""
        keep = {"--catalog", "--reports-dir", "--history"}
        args, items = [], list(self.run_args)
        for i, value in enumerate(items):
            if value in keep and i + 1 < len(items):
                args += [value, items[i + 1]]
        return args

