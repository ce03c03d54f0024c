"""A loopback HTTP server answering like the GitHub REST API for the endpoints the harness uses.

Issue comments (list, create, edit), check runs (list for a commit, create, update, list
annotations). Listings are paginated with ``per_page``/``page`` and RFC 8288 ``Link`` headers
(``rel="next"``, ``rel="last"``), as GitHub does. It checks the bearer token (401 otherwise),
refuses more than 50 annotations in one request (422, as GitHub), and appends annotations on
update (as GitHub). ``refuse`` queues answers (status, headers, body) served before the next
requests, for rate limits and errors. The only stand-in of the tests: at the network boundary.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

TOKEN = "ghs_loopbackTokenNeverToBeLogged0123456789"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str | None


@dataclass
class GitHubState:
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # PR number -> comments
    check_runs: list[dict[str, Any]] = field(default_factory=list)
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    queued: list[tuple[int, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    next_id: int = 1000


class FakeGitHub:
    """``FakeGitHub().start()``; ``api_url`` for GITHUB_API_URL; ``stop()`` when done."""

    def __init__(self, repository: str = "lab/ptycho", token: str = TOKEN) -> None:
        self.repository = repository
        self.token = token
        self.state = GitHubState()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                return

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                body = json.loads(raw) if raw else None
                request = Request(method, split.path, query, body, self.headers.get("Authorization"))
                with fake.lock:
                    fake.state.requests.append(request)
                    status, headers, payload = fake.answer(request)
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_PATCH(self) -> None:  # noqa: N802
                self._handle("PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def api_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/api/v3"  # a GitHub Enterprise Server style root, like GITHUB_API_URL there

    def start(self) -> FakeGitHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def refuse(self, status: int, headers: dict[str, str] | None = None, message: str = "refused") -> None:
        self.state.queued.append((status, headers or {}, {"message": message}))

    def seed_comments(self, pr: int, bodies: list[str]) -> None:
        for body in bodies:
            self.state.comments.setdefault(pr, []).append(self._comment(pr, body))

    # -- routing ------------------------------------------------------------------------------

    def _id(self) -> int:
        self.state.next_id += 1
        return self.state.next_id

    def _comment(self, pr: int, body: str) -> dict[str, Any]:
        cid = self._id()
        return {"id": cid, "body": body, "user": {"login": "github-actions[bot]"},
                "html_url": f"https://github.example/{self.repository}/pull/{pr}#issuecomment-{cid}"}

    def _page(self, request: Request, items: list[Any], wrap: str | None = None) -> tuple[int, dict[str, str], Any]:
        per_page = min(100, int(request.query.get("per_page", "30")))
        page = int(request.query.get("page", "1"))
        chunk = items[(page - 1) * per_page: page * per_page]
        last = max(1, -(-len(items) // per_page))
        headers: dict[str, str] = {}
        links = []
        base = f"{self.api_url}{request.path.removeprefix('/api/v3')}"
        keep = {k: v for k, v in request.query.items() if k not in ("page",)}
        if page < last:
            links.append(f'<{base}?{urlencode({**keep, "page": page + 1})}>; rel="next"')
            links.append(f'<{base}?{urlencode({**keep, "page": last})}>; rel="last"')
        if links:
            headers["Link"] = ", ".join(links)
        return 200, headers, ({"total_count": len(items), wrap: chunk} if wrap else chunk)

    def answer(self, request: Request) -> tuple[int, dict[str, str], Any]:
        if request.authorization != f"Bearer {self.token}":
            return 401, {}, {"message": "Bad credentials"}
        if self.state.queued:
            return self.state.queued.pop(0)
        path = request.path.removeprefix("/api/v3")
        repo = re.escape(self.repository)
        if m := re.fullmatch(rf"/repos/{repo}/issues/(\d+)/comments", path):
            pr = int(m.group(1))
            if request.method == "GET":
                return self._page(request, self.state.comments.get(pr, []))
            if request.method == "POST":
                comment = self._comment(pr, request.body["body"])
                self.state.comments.setdefault(pr, []).append(comment)
                return 201, {}, comment
        if (m := re.fullmatch(rf"/repos/{repo}/issues/comments/(\d+)", path)) and request.method == "PATCH":
            for comment in (c for comments in self.state.comments.values() for c in comments):
                if comment["id"] == int(m.group(1)):
                    comment["body"] = request.body["body"]
                    return 200, {}, comment
            return 404, {}, {"message": "Not Found"}
        if (m := re.fullmatch(rf"/repos/{repo}/commits/([0-9a-f]+)/check-runs", path)) and request.method == "GET":
            runs = [r for r in self.state.check_runs if r["head_sha"] == m.group(1)
                    and ("check_name" not in request.query or r["name"] == request.query["check_name"])]
            return self._page(request, runs, wrap="check_runs")
        if path == f"/repos/{self.repository}/check-runs" and request.method == "POST":
            annotations = (request.body.get("output") or {}).get("annotations") or []
            if len(annotations) > 50:
                return 422, {}, {"message": "Only 50 annotations are allowed per request"}
            run = {"id": self._id(), **{k: v for k, v in request.body.items() if k != "output"},
                   "output": {k: v for k, v in request.body["output"].items() if k != "annotations"},
                   "html_url": f"https://github.example/{self.repository}/runs/{self.state.next_id}"}
            self.state.check_runs.append(run)
            self.state.annotations[run["id"]] = list(annotations)
            return 201, {}, run
        if m := re.fullmatch(rf"/repos/{repo}/check-runs/(\d+)", path):
            run = next((r for r in self.state.check_runs if r["id"] == int(m.group(1))), None)
            if run is None or request.method != "PATCH":
                return 404, {}, {"message": "Not Found"}
            output = request.body.get("output") or {}
            annotations = output.get("annotations") or []
            if len(annotations) > 50:
                return 422, {}, {"message": "Only 50 annotations are allowed per request"}
            run.update({k: v for k, v in request.body.items() if k != "output"})
            run["output"] = {k: v for k, v in output.items() if k != "annotations"}
            self.state.annotations[run["id"]].extend(annotations)  # GitHub appends annotations on update
            return 200, {}, run
        if (m := re.fullmatch(rf"/repos/{repo}/check-runs/(\d+)/annotations", path)) and request.method == "GET":
            return self._page(request, self.state.annotations.get(int(m.group(1)), []))
        return 404, {}, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
