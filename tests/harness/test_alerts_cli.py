"""``harness alerts ...`` and the notification step of ``harness run``, as a user runs them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import standardwebhooks
from sample_projects import harness, harness_env, make_project
from webhook_receiver import Reply

from harness.cli import main

REPO = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"cli-test-signing-key-0123456789!").decode()
ROUTES = """
version: 1
sinks:
  team: {kind: webhook, url_env: T_TEAM_URL, secret_env: T_TEAM_SECRET, max_attempts: 2, backoff_initial_s: 0.01}
  chat: {kind: slack, url_env: T_CHAT_URL, min_interval_s: 0, max_attempts: 1}
routes:
  - {name: team, match: {owner: [TEST-PYTORCH-001]}, sinks: [team]}
default:
  sinks: [chat]
"""


@pytest.fixture
def setup(tmp_path, receiver, monkeypatch):
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES, encoding="utf-8")
    monkeypatch.setenv("HARNESS_ROUTES", str(routes))
    monkeypatch.setenv("HARNESS_HISTORY", str(tmp_path / "history.sqlite"))
    monkeypatch.setenv("T_TEAM_URL", receiver.url("/team"))
    monkeypatch.setenv("T_TEAM_SECRET", SECRET)
    monkeypatch.setenv("T_CHAT_URL", receiver.url("/chat"))
    return tmp_path


def test_alerts_test_sends_a_marked_test_alert_to_every_route(setup, receiver, capsys):
    assert main(["alerts", "test"]) == 0
    out = capsys.readouterr().out
    assert "team/team: delivered (HTTP 200)" in out and "default/chat: delivered (HTTP 200)" in out
    team = next(r for r in receiver.requests if r.path == "/team")
    body = standardwebhooks.Webhook(SECRET).verify(team.body, team.headers)
    [item] = body["alerts"]
    assert item["labels"]["alertname"] == "HarnessTestAlert" and item["labels"]["test"] == "true"
    assert item["annotations"]["title"] == "TEST ALERT - no action needed"
    chat = json.loads(next(r for r in receiver.requests if r.path == "/chat").body)
    assert chat["text"].startswith(":test_tube: [TEST:1] HarnessTestAlert")


def test_alerts_test_of_one_route_reports_a_failing_sink_and_is_not_retried_later(setup, receiver, capsys):
    receiver.answer(Reply(403, body="invalid_token"))
    assert main(["alerts", "test", "--route", "team", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["rejected"] == 1 and result["messages"][0]["error"] == "HTTP 403: invalid_token"
    assert main(["alerts", "flush"]) == 0  # the failed test message is not in the outbox's queue
    assert len(receiver.requests) == 1


def test_unknown_route_is_a_one_line_error(setup, capsys):
    assert main(["alerts", "test", "--route", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no route 'nope' (valid: default, team)" in err and len(err.strip().splitlines()) == 1


def test_silence_list_and_expire(setup, capsys):
    assert main(["alerts", "silence", "RT-002", "--selector", "integration", "--for", "2h",
                 "--reason", "runner migration", "--json"]) == 0
    silence = json.loads(capsys.readouterr().out)
    assert silence["trigger"] == "RT-002" and silence["active"] and silence["reason"] == "runner migration"
    assert main(["alerts", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{silence['id']}  RT-002" in out and "runner migration" in out and "[active]" in out
    assert main(["alerts", "expire", silence["id"][:5]]) == 0
    capsys.readouterr()
    assert main(["alerts", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["silences"] == []
    assert main(["alerts", "list", "--all", "--json"]) == 0
    [ended] = json.loads(capsys.readouterr().out)["silences"]
    assert ended["expired_at"] and not ended["active"]


@pytest.mark.parametrize(("argv", "message"), [
    (["alerts", "silence", "RT-9", "--for", "1h", "--reason", "x"], "TRIGGER: 'RT-9' matches no trigger"),
    (["alerts", "silence", "RT-002", "--for", "soon", "--reason", "x"], "--for: 'soon' is not a duration"),
    (["alerts", "silence", "RT-002", "--selector", "nope", "--for", "1h", "--reason", "x"], "no selector 'nope'"),
    (["alerts", "silence", "RT-002", "--for", "1h", "--reason", " "], "--reason: say why"),
    (["alerts", "expire", "zzzz"], "no single silence with id 'zzzz'"),
])
def test_silence_mistakes_are_one_line_exit_2(setup, capsys, argv, message):
    if argv[1] == "expire":
        main(["alerts", "silence", "RT-002", "--for", "1h", "--reason", "make a database"])
        capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_routes_shows_which_variables_are_set_never_their_values(setup, capsys, monkeypatch):
    monkeypatch.delenv("T_CHAT_URL")
    assert main(["alerts", "routes"]) == 0
    out = capsys.readouterr().out
    assert "T_TEAM_URL set, T_TEAM_SECRET set" in out and "T_CHAT_URL NOT SET" in out
    assert "127.0.0.1" not in out and SECRET not in out


def test_harness_run_notifies_firing_then_resolved_through_the_shipped_routes(tmp_path, receiver):
    """The real pipeline: `harness run` on a tiny project, the repository's routes.yaml, real webhooks."""
    catalog = make_project(tmp_path / "project")
    reports = tmp_path / "reports"
    token = "/hooks/T0RUN/B0RUN/run-secret-token"
    env = harness_env(
        HARNESS_WEBHOOK_TEST_PYTORCH_001_URL=receiver.url("/test-pytorch" + token),
        HARNESS_WEBHOOK_TEST_PYTORCH_001_SECRET=SECRET,
        HARNESS_WEBHOOK_INTEGRATE_PYTORCH_001_URL=receiver.url("/integrate" + token),
        HARNESS_WEBHOOK_INTEGRATE_PYTORCH_001_SECRET=SECRET,
        HARNESS_SLACK_WEBHOOK_URL=receiver.url("/slack" + token),
    )
    args = ["run", "--cadence", "pr", "--catalog", str(catalog), "--reports-dir", str(reports), "--progress", "none"]
    failing = harness(*args, env={**env, "TINY_FAIL_INTEGRATION": "1"})
    assert failing.returncode == 1, failing.stderr
    assert "notifications: 2 message(s) queued (2 firing" in failing.stderr and "2 delivered" in failing.stderr
    passing = harness(*args, env=env)
    assert passing.returncode == 0, passing.stderr
    assert "notifications: 2 message(s) queued (0 firing, 2 resolved" in passing.stderr

    # PARITY-001 (high, INTEGRATE-PYTORCH-001): its owner's webhook and, being high, the shared channel
    assert sorted(r.path.split("/hooks")[0] for r in receiver.requests) == ["/integrate", "/integrate", "/slack", "/slack"]
    integrate = [r for r in receiver.requests if r.path.startswith("/integrate")]
    firing, resolved = (standardwebhooks.Webhook(SECRET).verify(r.body, r.headers) for r in integrate)
    assert firing["status"] == "firing" and resolved["status"] == "resolved"
    assert firing["alerts"][0]["labels"]["alertname"] == "PARITY-001"
    assert firing["alerts"][0]["fingerprint"] == resolved["alerts"][0]["fingerprint"]
    assert "decoder output shape mismatch" in firing["alerts"][0]["annotations"]["summary"]
    for text in [failing.stdout, failing.stderr, passing.stdout, passing.stderr,
                 *(p.read_text(errors="replace") for p in reports.rglob("*") if p.is_file() and p.suffix != ".sqlite")]:
        assert "run-secret-token" not in text and SECRET not in text
