"""Webhook delivery (harness/alerts/webhooks.py) against a real HTTP server on 127.0.0.1.

Signatures are checked with the Standard Webhooks reference implementation (the
``standardwebhooks`` package) and the published test vector; retries use tiny backoffs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time

import pytest
import standardwebhooks
from webhook_receiver import Reply, closed_port_url

from harness.alerts import webhooks
from harness.alerts.webhooks import RetryPolicy, deliver, retry_after_seconds, sign

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

FAST = RetryPolicy(max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05, max_retry_after_s=2,
                   connect_timeout_s=1, timeout_s=1)
SECRET = "whsec_" + base64.b64encode(b"a-test-signing-key-of-32-bytes!!").decode()


def verify_reference(secret: str, body: bytes, headers: dict[str, str]) -> object:
    """The Standard Webhooks team's own verifier (raises on a bad signature or stale timestamp)."""
    return standardwebhooks.Webhook(secret).verify(body, headers)


def test_sign_reproduces_the_published_test_vector():
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


def test_signature_matches_a_from_the_spec_hmac_and_the_reference_library():
    key = base64.b64decode(VECTOR_SECRET.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{VECTOR_ID}.{VECTOR_TS}.".encode() + VECTOR_BODY, hashlib.sha256).digest()
    ).decode()
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == f"v1,{expected}"
    from datetime import UTC, datetime

    reference = standardwebhooks.Webhook(VECTOR_SECRET).sign(
        VECTOR_ID, datetime.fromtimestamp(VECTOR_TS, UTC), VECTOR_BODY.decode()
    )
    assert reference == VECTOR_SIG


def test_a_tampered_body_or_wrong_secret_does_not_verify():
    now = int(time.time())
    signature = sign(SECRET, "msg_1", now, b'{"a": 1}')
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": signature}
    verify_reference(SECRET, b'{"a": 1}', headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verify_reference(SECRET, b'{"a": 2}', headers)
    other = "whsec_" + base64.b64encode(b"another-key-another-key-another!").decode()
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verify_reference(other, b'{"a": 1}', headers)


def test_rotation_sends_one_signature_per_secret_and_each_verifies(receiver):
    second = "whsec_" + base64.b64encode(b"the-new-key-after-rotation-0123!").decode()
    result = deliver(receiver.url(), b'{"x": 1}', "msg_rot", secret=f"{SECRET} {second}", policy=FAST)
    assert result.delivered
    got = receiver.requests[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    verify_reference(SECRET, got.body, got.headers)
    verify_reference(second, got.body, got.headers)


def test_success_posts_the_body_signed_with_standard_webhooks_headers(receiver):
    body = b'{"version":"4","status":"firing"}'
    result = deliver(receiver.url("/alerts"), body, "msg_ok", secret=SECRET, policy=FAST)
    assert result.delivered and result.status == 200 and result.attempt_count == 1
    [got] = receiver.requests
    assert got.path == "/alerts" and got.body == body
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-id"] == "msg_ok"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 10
    assert verify_reference(SECRET, got.body, got.headers) == {"version": "4", "status": "firing"}


def test_500_then_success_retries_with_the_same_id_and_a_fresh_signature(receiver):
    receiver.answer(Reply(500, body="boom"), Reply(503), Reply(200))
    waits: list[float] = []
    result = deliver(receiver.url(), b"{}", "msg_retry", secret=SECRET, policy=FAST,
                     sleep=lambda s: (waits.append(s), time.sleep(s)))
    assert result.delivered and result.attempt_count == 3
    assert [a.status for a in result.attempts] == [500, 503, 200]
    assert {r.headers["webhook-id"] for r in receiver.requests} == {"msg_retry"}
    for request in receiver.requests:
        verify_reference(SECRET, request.body, request.headers)
    # exponential backoff with jitter: attempt n waits in [base/2, base], base = initial * 2^(n-1)
    assert 0.005 <= waits[0] <= 0.01 and 0.01 <= waits[1] <= 0.02


def test_429_with_retry_after_is_honoured(receiver):
    receiver.answer(Reply(429, headers={"Retry-After": "1"}), Reply(200))
    waits: list[float] = []
    started = time.monotonic()
    result = deliver(receiver.url(), b"{}", "msg_429", policy=FAST, sleep=lambda s: (waits.append(s), time.sleep(s)))
    assert result.delivered and [a.status for a in result.attempts] == [429, 200]
    assert waits == [1.0]
    assert receiver.requests[1].at - receiver.requests[0].at >= 0.95
    assert time.monotonic() - started < 5


def test_retry_after_beyond_the_cap_leaves_the_message_for_later(receiver):
    receiver.answer(Reply(429, headers={"Retry-After": "3600"}))
    result = deliver(receiver.url(), b"{}", "msg_later", policy=FAST, sleep=lambda s: pytest.fail("must not wait"))
    assert not result.delivered and not result.permanent
    assert result.retry_at is not None and 3500 < result.retry_at - time.time() <= 3600
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_other_4xx_are_final_and_not_retried(receiver, status):
    receiver.answer(Reply(status, body="no such hook"))
    result = deliver(receiver.url(), b"{}", "msg_4xx", policy=FAST)
    assert not result.delivered and result.permanent
    assert len(receiver.requests) == 1
    assert result.error == f"HTTP {status}: no such hook"


def test_408_is_retried(receiver):
    receiver.answer(Reply(408), Reply(204))
    result = deliver(receiver.url(), b"{}", "msg_408", policy=FAST)
    assert result.delivered and [a.status for a in result.attempts] == [408, 204]


def test_a_redirect_is_not_followed(receiver):
    receiver.answer(Reply(302, headers={"Location": "http://127.0.0.1:9/elsewhere"}))
    result = deliver(receiver.url(), b"{}", "msg_302", policy=FAST)
    assert not result.delivered and result.permanent and len(receiver.requests) == 1
    assert "redirect not followed" in result.error


def test_connection_refused_is_retried_then_reported_without_the_url():
    url = closed_port_url("/services/T000/B000/secret-token-in-path")
    result = deliver(url, b"{}", "msg_down", policy=FAST)
    assert not result.delivered and not result.permanent
    assert result.attempt_count == FAST.max_attempts
    assert result.error == "connection failed (refused, reset or host unreachable)"


def test_a_slow_receiver_hits_the_request_timeout_and_is_retried(receiver):
    receiver.answer(Reply(200, delay_s=0.6), Reply(200))
    policy = RetryPolicy(max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.01, timeout_s=0.2)
    result = deliver(receiver.url(), b"{}", "msg_slow", policy=policy)
    assert result.delivered
    assert result.attempts[0].error == "no response within 0.2 s"


def test_url_and_secret_never_reach_errors_or_logs(receiver, caplog):
    token = "T0SECRET/B0SECRET/xoxb-do-not-leak-42"
    url = receiver.url(f"/services/{token}?key=querysecret123")
    # The receiver echoes the request path and the secret back in its error body.
    receiver.answer(*[Reply(500, body=f"bad request to /services/{token} with {SECRET}")] * 3)
    caplog.set_level(logging.DEBUG)  # urllib3 logs request lines (with the path) at DEBUG
    result = deliver(url, b"{}", "msg_leak", secret=SECRET, policy=FAST)
    assert not result.delivered
    texts = [result.error or "", *(a.error or "" for a in result.attempts), caplog.text]
    for text in texts:
        for secret_part in (token, "querysecret123", SECRET, SECRET.removeprefix("whsec_"), url):
            assert secret_part not in text
    assert "<redacted>" in result.error
    assert "POST <redacted>" in caplog.text  # the urllib3 line is there, cleaned


def test_retry_after_parses_seconds_and_http_dates():
    now = time.time()
    assert retry_after_seconds("7", now) == 7.0
    from email.utils import formatdate

    assert 28 <= retry_after_seconds(formatdate(now + 30, usegmt=True), now) <= 30
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_secret_key_accepts_unpadded_base64_like_the_reference_and_rejects_garbage():
    unpadded = SECRET.rstrip("=")
    assert webhooks.secret_key(unpadded) == webhooks.secret_key(SECRET)
    with pytest.raises(ValueError, match="not base64"):
        webhooks.secret_key("whsec_not*base64!")


def test_a_slack_style_receiver_accepts_only_200(receiver):
    receiver.answer(Reply(204), Reply(204))
    assert deliver(receiver.url(), b"{}", "msg_204", policy=FAST).delivered  # a generic receiver: any 2xx
    result = deliver(receiver.url(), b"{}", "msg_204s", policy=FAST, only_200=True)
    assert not result.delivered and result.permanent and len(receiver.requests) == 2
    assert result.error == "HTTP 204: this receiver answers 200 on success"
