"""Deliver one webhook message: Standard Webhooks signature, retries with backoff, no leaks.

A message is sent as-is (its body was rendered and stored in the outbox before any attempt),
signed per Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) with a
fresh timestamp on every attempt and the same id throughout: the id is the receiver's
idempotency key, so a message retried by a later flush is recognisably the same message.

Connection errors, 408, 429 and 5xx are retried with exponential backoff and jitter, honouring
``Retry-After``; any other 4xx (and a redirect) is final. The URL and the secret are never put
into a returned error, an exception or a log line: errors are built from the failure's kind, and
everything that leaves this module passes through a redactor that knows both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests

from harness import __version__

log = logging.getLogger("harness.alerts.webhooks")

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
SECRET_PREFIX = "whsec_"
USER_AGENT = f"ptycho-harness/{__version__}"
_BODY_SNIPPET = 200


# -- Standard Webhooks signing -----------------------------------------------------------------


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64, optionally prefixed ``whsec_``
    (padding optional, as the reference implementation accepts)."""
    encoded = secret.strip()
    if encoded.startswith(SECRET_PREFIX):
        encoded = encoded[len(SECRET_PREFIX):]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:  # binascii.Error is a ValueError
        raise ValueError("the signing secret is not base64 (expected whsec_<base64>)") from None
    if not key:
        raise ValueError("the signing secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` (Standard Webhooks, symmetric)."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Space-separated signatures, one per secret: several secrets let a receiver rotate keys."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def split_secrets(value: str | None) -> list[str]:
    """A secret variable may hold several secrets separated by spaces (key rotation)."""
    return [part for part in (value or "").split() if part]


# -- keeping the URL and the secret out of everything ------------------------------------------


class Redactor:
    """Replaces every registered sensitive string (URL, its path and query, credentials, secrets)
    with ``<redacted>``. One process-wide instance also filters urllib3's debug log, which
    prints request paths (a Slack webhook's path is its secret)."""

    MIN_LENGTH = 6

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add_url(self, url: str) -> None:
        parts = urlsplit(url)
        values = [url, url.rstrip("/")]
        path_query = parts.path + (f"?{parts.query}" if parts.query else "")
        if parts.path.strip("/"):
            values += [path_query, parts.path]
        if parts.query:
            values.append(parts.query)
        if parts.username:
            values.append(parts.username)
        if parts.password:
            values.append(parts.password)
        self.add(*values)

    def add_secret(self, secret: str) -> None:
        values = [secret]
        for part in split_secrets(secret):
            values.append(part)
            if part.startswith(SECRET_PREFIX):
                values.append(part[len(SECRET_PREFIX):])
        self.add(*values)

    def add(self, *values: str) -> None:
        with self._lock:
            self._values.update(v for v in values if v and len(v) >= self.MIN_LENGTH)

    def redact(self, text: str | None) -> str | None:
        if not text:
            return text
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, "<redacted>")
        return text


REDACTOR = Redactor()


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to fix
            return True
        cleaned = REDACTOR.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = _RedactingFilter()
for _name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "urllib3.poolmanager",
              "urllib3.response", "requests", "harness.alerts.webhooks", "harness.alerts.delivery"):
    logging.getLogger(_name).addFilter(_FILTER)


# -- delivery ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one delivery tries before the message goes back to the outbox."""

    max_attempts: int = 4
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 60.0
    connect_timeout_s: float = 5.0
    timeout_s: float = 10.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with jitter: half fixed, half random, capped."""
        base = min(self.backoff_max_s, self.backoff_initial_s * (2 ** max(0, attempt - 1)))
        return base / 2 + rng.uniform(0, base / 2)


@dataclass
class Attempt:
    at: str
    status: int | None
    error: str | None
    waited_s: float = 0.0


@dataclass
class DeliveryResult:
    """What happened to one message. ``error`` is safe to store and print (redacted)."""

    delivered: bool
    status: int | None = None
    error: str | None = None
    permanent: bool = False
    retry_at: float | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def attempt_count(self) -> int:
        return len(self.attempts)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def _describe_exception(exc: requests.RequestException, policy: RetryPolicy) -> str:
    """The failure's kind in words; never ``str(exc)``, which carries the URL."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connection timed out after {policy.connect_timeout_s:g} s"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"no response within {policy.timeout_s:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake or certificate error"
    if isinstance(exc, requests.exceptions.ProxyError):
        return "proxy error"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection failed (refused, reset or host unreachable)"
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema, requests.exceptions.URLRequired)):
        return "the URL in the sink's environment variable is not a valid http(s) URL"
    return f"request failed ({type(exc).__name__})"


def _body_snippet(response: requests.Response) -> str:
    try:
        text = response.text[:_BODY_SNIPPET]
    except Exception:  # noqa: BLE001 - undecodable body: no snippet
        return ""
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return f": {text}" if text else ""


def deliver(
    url: str,
    body: bytes,
    msg_id: str,
    *,
    secret: str | None = None,
    policy: RetryPolicy = RetryPolicy(),
    headers: dict[str, str] | None = None,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
    only_200: bool = False,
) -> DeliveryResult:
    """POST ``body`` to ``url`` until it is accepted (2xx), a final error, or attempts run out.

    Never raises for a delivery problem: the result says what happened. A ``Retry-After``
    longer than ``policy.max_retry_after_s`` is not waited for here; ``retry_at`` tells the
    outbox when the receiver wants to hear from us again. ``only_200``: the receiver answers
    exactly 200 on success and anything else is a failure (Slack's incoming webhooks).
    """
    REDACTOR.add_url(url)
    if secret:
        REDACTOR.add_secret(secret)
    secrets = split_secrets(secret)
    rng = rng or random.Random()
    own_session = session is None
    session = session or requests.Session()
    result = DeliveryResult(delivered=False)
    waited = 0.0
    try:
        for attempt in range(1, policy.max_attempts + 1):
            timestamp = int(clock())
            request_headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                **(headers or {}),
            }
            if secrets:
                request_headers["webhook-signature"] = signature_header(secrets, msg_id, timestamp, body)
            retry_after = None
            try:
                response = session.post(
                    url,
                    data=body,
                    headers=request_headers,
                    timeout=(policy.connect_timeout_s, policy.timeout_s),
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                status, error = None, _describe_exception(exc, policy)
                final = isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                                         requests.exceptions.InvalidSchema, requests.exceptions.URLRequired))
            else:
                status = response.status_code
                if status == 200 or (200 <= status < 300 and not only_200):
                    response.close()
                    result.attempts.append(Attempt(at=_iso(clock()), status=status, error=None, waited_s=waited))
                    result.delivered, result.status, result.error = True, status, None
                    return result
                if 200 <= status < 300:
                    error, final = f"HTTP {status}: this receiver answers 200 on success", True
                elif 300 <= status < 400:
                    error, final = f"HTTP {status}: redirect not followed (point the sink at the final URL)", True
                else:
                    error = f"HTTP {status}{_body_snippet(response)}"
                    final = status not in RETRY_STATUSES
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"), clock())
                response.close()
            error = REDACTOR.redact(error)
            result.attempts.append(Attempt(at=_iso(clock()), status=status, error=error, waited_s=waited))
            result.status, result.error = status, error
            if final:
                result.permanent = True
                log.warning("webhook %s rejected: %s (not retried)", msg_id, error)
                return result
            if attempt == policy.max_attempts:
                break
            if retry_after is not None and retry_after > policy.max_retry_after_s:
                result.retry_at = clock() + retry_after
                log.warning("webhook %s: %s; Retry-After %.0f s is beyond %g s, left in the outbox",
                            msg_id, error, retry_after, policy.max_retry_after_s)
                return result
            wait = retry_after if retry_after is not None else policy.backoff(attempt, rng)
            log.info("webhook %s attempt %d failed: %s; retrying in %.2f s", msg_id, attempt, error, wait)
            sleep(wait)
            waited = wait
        log.warning("webhook %s not delivered after %d attempts: %s", msg_id, len(result.attempts), result.error)
        return result
    finally:
        if own_session:
            session.close()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
