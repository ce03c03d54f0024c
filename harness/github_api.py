"""A small GitHub REST client: typed payloads, ``Link``-header pagination, rate limits waited out.

Plain ``requests`` with pydantic models for the few endpoints the harness uses (issue comments,
check runs and their annotations). The token travels only in the ``Authorization`` header of
requests to ``GITHUB_API_URL``; it is never part of a message, a log line or an exception text
(every error text passes through ``_redact`` as a second guard).

Rate limits (GitHub's REST documentation): a 403 or 429 with ``Retry-After`` (seconds) says how
long to wait; ``x-ratelimit-remaining: 0`` with ``x-ratelimit-reset`` (epoch seconds) says until
when; a secondary limit without either asks for at least a minute. The client waits within
``max_wait_s`` over its whole life, then gives up with ``RateLimited`` — the caller reports it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field

API_VERSION = "2022-11-28"
USER_AGENT = "ptycho-harness"
SECONDARY_LIMIT_WAIT_S = 60.0  # GitHub: "wait for at least one minute" when it gives no header
SERVER_ERROR_RETRIES = 2
MAX_ATTEMPTS = 6


class GitHubError(Exception):
    """A request GitHub refused or that never got an answer; the text names the endpoint."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(GitHubError):
    """GitHub's rate limit outlasted the time the harness may wait."""


# -- typed payloads ------------------------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    """GitHub answers with many more fields than the harness reads: keep the known ones."""

    model_config = ConfigDict(extra="ignore")


class Annotation(_Payload):
    path: str
    start_line: int = Field(ge=1)
    end_line: int = Field(ge=1)
    annotation_level: Literal["notice", "warning", "failure"]
    message: str = Field(max_length=64 * 1024)
    title: str | None = Field(default=None, max_length=255)

    def key(self) -> tuple[str, int, int, str, str]:
        return (self.path, self.start_line, self.end_line, self.annotation_level, self.message)


class CheckRunOutput(_Payload):
    title: str = Field(max_length=1024)
    summary: str = Field(max_length=65535)
    text: str | None = Field(default=None, max_length=65535)
    annotations: list[Annotation] = Field(default_factory=list, max_length=50)


Conclusion = Literal["success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required"]


class CheckRunCreate(_Payload):
    name: str
    head_sha: str
    status: Literal["completed"] = "completed"
    conclusion: Conclusion
    started_at: str | None = None
    completed_at: str | None = None
    external_id: str | None = None
    details_url: str | None = None
    output: CheckRunOutput


class CheckRunUpdate(_Payload):
    name: str | None = None
    status: Literal["completed"] | None = None
    conclusion: Conclusion | None = None
    started_at: str | None = None
    completed_at: str | None = None
    external_id: str | None = None
    details_url: str | None = None
    output: CheckRunOutput


class CheckRun(_Response):
    id: int
    name: str
    head_sha: str
    external_id: str | None = None
    html_url: str | None = None
    conclusion: str | None = None


class CheckRunList(_Response):
    total_count: int = 0
    check_runs: list[CheckRun] = Field(default_factory=list)


class ExistingAnnotation(_Response):
    path: str
    start_line: int
    end_line: int
    annotation_level: str | None = None
    message: str | None = None

    def key(self) -> tuple[str, int, int, str, str]:
        return (self.path, self.start_line, self.end_line, self.annotation_level or "", self.message or "")


class CommentBody(_Payload):
    body: str = Field(max_length=65536)


class IssueComment(_Response):
    id: int
    body: str | None = ""
    html_url: str | None = None


# -- the client ----------------------------------------------------------------------------------


class _Bearer(requests.auth.AuthBase):
    """The token as an auth object: requests then never consults ~/.netrc (which would replace
    the header), and the object's repr does not show it."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(***)"


def _wait_from_headers(response: requests.Response, now: float) -> tuple[float, str] | None:
    """How long a 403/429 asks the client to wait, and which header said so; None for a 403 that
    is not a rate limit (missing permissions, a fork's read-only token)."""
    if response.status_code not in (403, 429):
        return None
    headers = response.headers
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after)), "Retry-After"
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(retry_after)
                return max(0.0, moment.timestamp() - now), "Retry-After"
            except (TypeError, ValueError):
                pass
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - now), "x-ratelimit-reset"
        except ValueError:
            pass
    if response.status_code == 429 or "rate limit" in response.text[:2000].lower():
        return SECONDARY_LIMIT_WAIT_S, "secondary rate limit"
    return None


def _error_message(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason or ""
    if isinstance(data, dict):
        message = str(data.get("message") or "")
        errors = data.get("errors")
        if errors:
            message += f" ({str(errors)[:300]})"
        return message
    return str(data)[:200]


class GitHubClient:
    """Requests to one GitHub API root with one token. ``sleep`` and ``clock`` are injectable for
    tests only through the constructor; the defaults are ``time.sleep`` and ``time.time``."""

    def __init__(self, api_url: str, token: str, *, max_wait_s: float = 60.0, timeout_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> None:
        if not token:
            raise ValueError("a GitHub token is required")
        self.api_url = api_url.rstrip("/")
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self._token = token
        self._sleep, self._clock = sleep, clock
        self.waited_s = 0.0
        self.rate_limit_events: list[str] = []
        self.requests_made = 0
        self._session = requests.Session()
        self._session.auth = _Bearer(token)
        self._session.headers.update({
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
        })

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            if not path_or_url.startswith(self.api_url + "/"):
                # A Link header pointing elsewhere would carry the token off to another host.
                raise GitHubError(f"refusing to follow a link outside {self.api_url}: {path_or_url[:200]}")
            return path_or_url
        return f"{self.api_url}/{path_or_url.lstrip('/')}"

    def _wait(self, seconds: float, why: str, what: str, *, rate_limit: bool = True) -> None:
        if self.waited_s + seconds > self.max_wait_s:
            cause = "rate limited by GitHub" if rate_limit else "GitHub kept failing"
            message = (f"{what}: {cause} ({why} asks for {seconds:.0f} s); the harness waits at most "
                       f"{self.max_wait_s:.0f} s in all and has waited {self.waited_s:.0f} s: given up")
            self.rate_limit_events.append(message)
            raise (RateLimited if rate_limit else GitHubError)(message, status=429 if rate_limit else None)
        if rate_limit:
            self.rate_limit_events.append(f"{what}: rate limited by GitHub, waited {seconds:.1f} s ({why})")
        self._sleep(seconds)
        self.waited_s += seconds

    def request(self, method: str, path_or_url: str, *, json: Any = None,
                params: dict[str, Any] | None = None) -> requests.Response:
        """One API call, rate limits waited out and 5xx retried; a GitHubError for anything else."""
        url = self._url(path_or_url)
        what = f"{method} {url[len(self.api_url):].split('?', 1)[0] or '/'}"
        server_errors = 0
        for _attempt in range(MAX_ATTEMPTS):
            try:
                self.requests_made += 1
                response = self._session.request(method, url, json=json, params=params, timeout=self.timeout_s,
                                                 allow_redirects=False)
            except requests.RequestException as exc:
                raise GitHubError(self._redact(f"{what}: no answer from {self.api_url} ({type(exc).__name__})")) from None
            if response.status_code < 300:
                return response
            wait = _wait_from_headers(response, self._clock())
            if wait is not None:
                self._wait(wait[0], wait[1], what)
                continue
            if response.status_code >= 500 and server_errors < SERVER_ERROR_RETRIES:
                server_errors += 1
                self._wait(float(server_errors), f"HTTP {response.status_code}", what, rate_limit=False)
                continue
            raise GitHubError(self._redact(f"{what}: HTTP {response.status_code} {_error_message(response)}".strip()),
                              status=response.status_code)
        raise GitHubError(f"{what}: still refused after {MAX_ATTEMPTS} attempts")

    def json(self, method: str, path: str, *, payload: BaseModel | None = None,
             params: dict[str, Any] | None = None) -> Any:
        body = None if payload is None else payload.model_dump(mode="json", exclude_none=True)
        response = self.request(method, path, json=body, params=params)
        try:
            return response.json() if response.content else None
        except ValueError:
            raise GitHubError(f"{method} {path}: the answer is not JSON") from None

    def paginate(self, path: str, params: dict[str, Any] | None = None, *, items_key: str | None = None,
                 max_pages: int = 100) -> Iterator[Any]:
        """Every item of a listing, following ``Link: <...>; rel="next"`` page by page."""
        url: str | None = path
        query: dict[str, Any] | None = {"per_page": 100, **(params or {})}
        for _page in range(max_pages):
            if url is None:
                return
            response = self.request("GET", url, params=query)
            try:
                data = response.json()
            except ValueError:
                raise GitHubError(f"GET {path}: the answer is not JSON") from None
            items = data.get(items_key, []) if items_key and isinstance(data, dict) else data
            if not isinstance(items, list):
                raise GitHubError(f"GET {path}: expected a list{f' under {items_key!r}' if items_key else ''}")
            yield from items
            url = (response.links.get("next") or {}).get("url")
            query = None  # the next link carries its own query string


def utc_stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
