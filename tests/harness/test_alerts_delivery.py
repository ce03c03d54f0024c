"""Notifications after a run (harness/alerts/delivery.py): outbox, dedupe, resolved, silences, size bounds.

Runs are recorded through the core's real HistoryStore (which decides what resolved), then
handed to ``delivery.after_run`` exactly as the run pipeline does; a real HTTP receiver on
127.0.0.1 plays the webhook endpoints.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import standardwebhooks
from webhook_receiver import Receiver, Reply, closed_port_url

from harness.alerts import delivery
from harness.alerts.delivery_state import AlertStore, now_utc
from harness.history import HistoryStore
from harness.report_model import (Alert, Counts, Gate, GitInfo, HostInfo, RunInfo, RunReport, SelectorResult, StageTimes,
                                  TestRecord)

REPO = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"delivery-test-signing-key-32byte").decode()
NODE = "tests/test_integration.py::test_run_pytorch_train_save_load_infer"

ROUTES = """
version: 1
repeat_interval: {{nightly: {nightly}, manual: 0s}}
sinks:
  team:
    kind: webhook
    url_env: T_TEAM_URL
    secret_env: T_TEAM_SECRET
    max_attempts: 2
    backoff_initial_s: 0.01
    backoff_max_s: 0.02
    timeout_s: 2
    {team_extra}
  chat:
    kind: slack
    url_env: T_CHAT_URL
    min_interval_s: 0
    max_attempts: 2
    backoff_initial_s: 0.01
routes:
  - name: critical-chat
    min_severity: critical
    sinks: [chat]
    continue: true
  - name: team
    match: {{owner: [TEST-PYTORCH-001]}}
    sinks: [team]
default:
  sinks: [team]
"""


def alert(trigger: str = "FAIL-001", severity: str = "critical", *, fingerprint: str | None = None,
          evidence: dict | None = None, nodeid: str | None = NODE, owner: str = "TEST-PYTORCH-001") -> Alert:
    return Alert(trigger=trigger, title=f"{trigger} title", severity=severity, owner=owner, sla="<2 hours",
                 fingerprint=fingerprint or f"fp-{trigger}-{nodeid}", selector="integration", nodeid=nodeid,
                 summary=f"{trigger}: integration failed", evidence=evidence or {"message": "RuntimeError: boom"})


class World:
    """A history, a routes file, report directories and the environment the sinks read."""

    def __init__(self, tmp_path: Path, receiver: Receiver, *, nightly: str = "1h", team_extra: str = "") -> None:
        self.tmp = tmp_path
        self.receiver = receiver
        self.history = tmp_path / "history.sqlite"
        self.routes = tmp_path / "routes.yaml"
        self.routes.write_text(ROUTES.format(nightly=nightly, team_extra=team_extra), encoding="utf-8")
        self.env = {"T_TEAM_URL": receiver.url("/team"), "T_TEAM_SECRET": SECRET, "T_CHAT_URL": receiver.url("/chat")}
        self.runs = 0

    def run(self, alerts: list[Alert], *, cadence: str = "nightly", state: str = "failed",
            skipped: bool = False) -> delivery.NotifyOutcome:
        self.runs += 1
        key = f"2025010{self.runs}T030000Z-{cadence}"
        report = RunReport(
            run=RunInfo(id=key, cadence=cadence, started_at=f"2025-01-0{self.runs}T03:00:00.000Z",
                        finished_at=f"2025-01-0{self.runs}T03:01:00.000Z", wall_s=60, status="failed" if alerts else "passed",
                        catalog="c.toml", rules="r.yaml", root=".", jobs=1, harness_version="0.1.0", git=GitInfo(),
                        host=HostInfo(hostname="h", host_key="h", platform="linux"), versions={}),
            gate=Gate(passed=not alerts, fail_on="high", exit_code=int(bool(alerts))),
            selectors=[SelectorResult(name="integration", title="I", owner="TEST-PYTORCH-001", argv=[], env={},
                                      state=state if alerts else "did_not_run" if skipped else "passed", runtime_s=30,
                                      counts=Counts(total=1, collected=1), tests=[self._test(alerts, skipped)])],
            alerts=alerts,
        )
        run_dir = self.tmp / "reports" / key
        run_dir.mkdir(parents=True)
        with HistoryStore.open(self.history) as store, store.recording(report) as resolved:
            report.resolved = resolved
            (run_dir / "report.json").write_text(report.to_json(), encoding="utf-8")
        return delivery.after_run(report, run_dir, self.history, environ=self.env, routes_file=self.routes)

    @staticmethod
    def _test(alerts: list[Alert], skipped: bool = False) -> TestRecord:
        """The selector's one test, executed unless ``skipped``: it failed in its call when an alert
        names it. Only a run whose tests executed can resolve an alert."""
        if skipped:
            return TestRecord(nodeid=NODE, outcome="skipped", durations=StageTimes(setup=0.01, teardown=0.01))
        failed = any(a.nodeid == NODE for a in alerts)
        return TestRecord(nodeid=NODE, outcome="failed" if failed else "passed",
                          failed_stage="call" if failed else None, durations=StageTimes(setup=0.1, call=25, teardown=0.1))

    def flush(self, **kwargs):
        return delivery.flush(self.history, self.routes, environ=self.env, **kwargs)

    def store(self) -> tuple[HistoryStore, AlertStore]:
        history = HistoryStore.open(self.history)
        return history, AlertStore(history)

    def bodies(self, path: str = "/team") -> list[dict]:
        return [json.loads(r.body) for r in self.receiver.requests if r.path == path]


@pytest.fixture
def world(tmp_path, receiver) -> World:
    return World(tmp_path, receiver)


def test_a_firing_alert_reaches_its_routes_as_signed_alertmanager_v4_and_slack(world):
    outcome = world.run([alert()])
    assert outcome.planned.queued_messages == 2 and outcome.flushed.delivered == 2, outcome.warnings
    team = [r for r in world.receiver.requests if r.path == "/team"]
    assert len(team) == 1
    payload = standardwebhooks.Webhook(SECRET).verify(team[0].body, team[0].headers)
    assert payload["version"] == "4" and payload["status"] == "firing" and payload["truncatedAlerts"] == 0
    assert payload["receiver"] == "team"
    assert payload["groupKey"] == 'team:{alertname="FAIL-001", cadence="nightly"}'
    [item] = payload["alerts"]
    assert item["labels"] == {"alertname": "FAIL-001", "severity": "critical", "selector": "integration",
                              "cadence": "nightly", "owner": "TEST-PYTORCH-001", "nodeid": NODE}
    assert item["annotations"]["summary"] == "FAIL-001: integration failed"
    assert item["annotations"]["evidence"] == "message: RuntimeError: boom"
    assert item["annotations"]["runbook_url"] == "docs/alerts.md#escalation-workflow"
    assert item["annotations"]["report_url"].endswith("20250101T030000Z-nightly/summary.html")
    assert item["fingerprint"] == "fp-FAIL-001-" + NODE and item["endsAt"] == "0001-01-01T00:00:00Z"
    assert item["startsAt"].startswith("20")  # when the core's history first saw it fire
    [chat] = world.bodies("/chat")
    assert chat["text"].startswith(":rotating_light: [FIRING:1] FAIL-001 on integration (nightly)")
    assert chat["blocks"][0]["type"] == "header" and "*FAIL-001* critical" in chat["blocks"][1]["text"]["text"]


def test_endpoint_down_keeps_the_message_and_flush_delivers_it_exactly_once(world):
    world.env["T_TEAM_URL"] = closed_port_url("/team")
    world.env.pop("T_CHAT_URL")
    outcome = world.run([alert()])
    assert outcome.flushed.delivered == 0 and outcome.flushed.remaining == 2
    assert any("connection failed" in w for w in outcome.warnings)
    assert any("T_CHAT_URL is not set" in w for w in outcome.warnings)
    history, store = world.store()
    with history:
        [stored] = [m for m in store.outbox(("pending",)) if m.sink == "team"]
        assert stored.attempts == 2 and stored.last_error.startswith("connection failed")
    world.env["T_TEAM_URL"] = world.receiver.url("/team")
    planned, flushed, warnings = world.flush()
    assert (flushed.delivered, flushed.failed) == (1, 1) and "T_CHAT_URL" in flushed.problems[0]
    world.env["T_CHAT_URL"] = world.receiver.url("/chat")
    planned, flushed, warnings = world.flush()
    assert (flushed.delivered, flushed.remaining) == (1, 0) and flushed.ok
    planned, flushed, warnings = world.flush()
    assert flushed.delivered == 0 and flushed.messages == []
    team = [r for r in world.receiver.requests if r.path == "/team"]
    assert [r.headers["webhook-id"] for r in team] == [stored.message_id]  # exactly once, its original id
    standardwebhooks.Webhook(SECRET).verify(team[0].body, team[0].headers)


def test_resolved_goes_where_firing_went_once_the_trigger_stops(world):
    world.run([alert(), alert("RT-002", "warning", nodeid=None)])
    world.receiver.requests.clear()
    outcome = world.run([alert("RT-002", "warning", nodeid=None)])  # FAIL-001 stopped firing
    assert outcome.planned.resolved == 2 and outcome.planned.deduplicated == 1  # RT-002 still firing, recent
    [team] = world.bodies("/team")
    assert team["status"] == "resolved"
    assert team["groupKey"] == 'team:{alertname="FAIL-001", cadence="nightly"}'
    [item] = team["alerts"]
    assert item["status"] == "resolved" and item["endsAt"] == "2025-01-02T03:01:00.000Z"
    assert item["fingerprint"] == "fp-FAIL-001-" + NODE
    [chat] = world.bodies("/chat")
    assert chat["text"].startswith(":white_check_mark: [RESOLVED:1] FAIL-001")
    world.receiver.requests.clear()
    outcome = world.run([alert("RT-002", "warning", nodeid=None)])
    assert world.receiver.requests == [] and outcome.planned.resolved == 0


def test_repeat_interval_deduplicates_then_resends(tmp_path, receiver):
    world = World(tmp_path, receiver, nightly="700ms")
    world.run([alert("RT-002", "warning")])
    outcome = world.run([alert("RT-002", "warning")])
    assert outcome.planned.deduplicated == 1 and outcome.planned.queued_messages == 0
    time.sleep(0.8)
    outcome = world.run([alert("RT-002", "warning")])
    assert outcome.planned.queued_messages == 1
    bodies = world.bodies()
    assert [b["status"] for b in bodies] == ["firing", "firing"]
    assert bodies[0]["alerts"][0]["startsAt"] == bodies[1]["alerts"][0]["startsAt"]  # one firing episode
    history, store = world.store()
    with history:
        events = [e["event"] for e in store.events(fingerprint=bodies[0]["alerts"][0]["fingerprint"])]
    assert events.count("deduplicated") == 1 and events.count("queued") == 2


def test_a_repeat_is_not_queued_while_the_previous_message_still_waits(tmp_path, receiver):
    world = World(tmp_path, receiver, nightly="0s")
    world.env["T_TEAM_URL"] = closed_port_url()
    world.env.pop("T_CHAT_URL")
    world.run([alert("RT-002", "warning")])
    outcome = world.run([alert("RT-002", "warning")])  # repeat interval 0, but the first is undelivered
    assert outcome.planned.deduplicated == 1 and outcome.planned.queued_messages == 0
    world.env["T_TEAM_URL"] = receiver.url("/team")
    world.flush()
    outcome = world.run([alert("RT-002", "warning")])  # delivered now: the repeat goes out
    assert outcome.planned.queued_messages == 1 and len(world.bodies()) == 2


def test_silenced_alerts_are_recorded_not_sent_and_flow_again_after_expiry(world):
    history, store = world.store()
    with history:
        silence = store.add_silence("FAIL-*", "integration", 3600, "known flake, fix in #12", "alice", now_utc())
    outcome = world.run([alert()])
    assert outcome.planned.silenced == 1 and world.receiver.requests == []
    history, store = world.store()
    with history:
        [event] = [e for e in store.events() if e["event"] == "silenced"]
        assert silence.id in event["detail"] and "known flake" in event["detail"]
        store.expire_silence(silence.id[:6], now_utc())
        assert store.silences(now_utc()) == []
    outcome = world.run([alert()])
    assert outcome.planned.silenced == 0 and len(world.bodies()) == 1


def test_a_silence_for_another_selector_does_not_apply(world):
    history, store = world.store()
    with history:
        store.add_silence("FAIL-001", "backend_selection", 3600, "other selector", None, now_utc())
    world.run([alert()])
    assert len(world.bodies()) == 1


def test_silences_expire_by_themselves(world):
    history, store = world.store()
    with history:
        store.add_silence("FAIL-001", None, 0.3, "short", None, now_utc())
        assert len(store.silences(now_utc())) == 1
        assert store.silences(now_utc() + timedelta(seconds=1)) == []


def test_a_resolved_alert_that_was_never_sent_sends_nothing(world):
    history, store = world.store()
    with history:
        store.add_silence("FAIL-001", None, 3600, "muted", None, now_utc())
    world.run([alert()])
    outcome = world.run([])
    assert outcome.planned.resolved == 0 and world.receiver.requests == []


def test_a_skipped_run_sends_no_resolved_the_next_executed_run_does(world):
    world.run([alert()])
    world.receiver.requests.clear()
    skipped = world.run([], skipped=True)
    assert skipped.planned.resolved == 0 and world.receiver.requests == []
    passed = world.run([])
    assert passed.planned.resolved == 2 and [b["status"] for b in world.bodies()] == ["resolved"]


def test_broken_routes_lose_nothing_the_next_flush_plans_in_run_order(world):
    good = world.routes.read_text(encoding="utf-8")
    world.routes.write_text(good.replace("sinks: [team]\ndefault", "sinks: [teem]\ndefault"), encoding="utf-8")
    first = world.run([alert()])
    second = world.run([])
    assert first.planned is None and "routes.1.sinks: unknown sink 'teem'" in first.warnings[0]
    assert second.planned is None and world.receiver.requests == []
    world.routes.write_text(good, encoding="utf-8")
    planned, flushed, warnings = world.flush()
    assert (planned.firing, planned.resolved) == (2, 2) and flushed.delivered == 4 and not warnings
    assert [b["status"] for b in world.bodies()] == ["firing", "resolved"]


def test_long_evidence_is_truncated_with_a_link_and_bodies_stay_within_the_limit(tmp_path, receiver):
    world = World(tmp_path, receiver, team_extra="max_payload_bytes: 6000")
    world.env["HARNESS_REPORT_URL"] = "https://ci.example/runs/{run}"
    evidence = {"longrepr": "E   AssertionError\n" + "x" * 50_000}
    world.run([alert(evidence=evidence)])
    [team] = [r for r in receiver.requests if r.path == "/team"]
    assert len(team.body) <= 6000
    text = json.loads(team.body)["alerts"][0]["annotations"]["evidence"]
    assert text.startswith("longrepr: E   AssertionError")
    assert "more characters truncated; full evidence: https://ci.example/runs/20250101T030000Z-nightly" in text
    [chat] = [r for r in receiver.requests if r.path == "/chat"]
    assert len(chat.body) <= 30_000
    assert all(len(b["text"]["text"]) <= 3000 for b in json.loads(chat.body)["blocks"] if b["type"] == "section")


def test_many_alerts_are_split_into_several_messages_none_dropped(world):
    alerts = [alert("FAIL-001", fingerprint=f"fp{i}", nodeid=f"tests/t.py::test_{i}") for i in range(100)]
    outcome = world.run(alerts)
    assert outcome.flushed.remaining == 0
    chats = world.bodies("/chat")
    assert len(chats) == 3 and all(len([b for b in c["blocks"] if b["type"] == "section"]) <= 45 for c in chats)
    teams = world.bodies("/team")
    got = [a["fingerprint"] for body in teams for a in body["alerts"]]
    assert sorted(got) == sorted(f"fp{i}" for i in range(100))


def test_a_4xx_is_kept_as_rejected_and_resent_on_request(world):
    world.receiver.answer(Reply(404, body="no such hook"))
    world.env.pop("T_CHAT_URL")
    outcome = world.run([alert("RT-002", "warning")])
    assert outcome.flushed.rejected == 1 and "HTTP 404: no such hook" in outcome.warnings[0]
    planned, flushed, _ = world.flush()
    assert flushed.messages == [] and not flushed.ok  # a rejected message is not retried by itself
    planned, flushed, _ = world.flush(include_rejected=True)
    assert flushed.delivered == 1 and flushed.ok
    ids = [r.headers["webhook-id"] for r in world.receiver.requests]
    assert len(ids) == 2 and ids[0] == ids[1]


def test_url_and_secret_appear_nowhere_in_history_or_outputs(world, capsys):
    token = "/services/T0LEAK/B0LEAK/xoxb-leaky-token"
    world.env["T_TEAM_URL"] = world.receiver.url(token)
    world.env["T_CHAT_URL"] = closed_port_url(token + "-chat")
    world.receiver.answer(*[Reply(500, body=f"cannot POST {token} signed with {SECRET}")] * 2)
    outcome = world.run([alert()])
    assert outcome.flushed.delivered == 0
    dump = "\n".join(sqlite3.connect(world.history).iterdump())
    reports = "\n".join(p.read_text() for p in (world.tmp / "reports").rglob("*.json"))
    delivery.print_outcome(outcome)
    printed = capsys.readouterr()
    for text in (dump, reports, printed.out, printed.err, *outcome.warnings):
        for secret in (token, "xoxb-leaky-token", SECRET, SECRET.removeprefix("whsec_")):
            assert secret not in text
    assert "<redacted>" in dump  # the echoed error body was kept, cleaned


def test_two_concurrent_flushes_send_each_message_once(world):
    world.env["T_TEAM_URL"] = closed_port_url()
    world.env.pop("T_CHAT_URL")
    world.run([alert(fingerprint=f"f{i}", trigger=f"RT-00{i}", severity="warning") for i in (1, 2, 3)])
    world.receiver.answer(*[Reply(200, delay_s=0.3)] * 6)
    env = {**world.env, "T_TEAM_URL": world.receiver.url("/team"), "T_CHAT_URL": world.receiver.url("/chat"),
           "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "harness", "alerts", "flush", "--history", str(world.history),
            "--routes", str(world.routes), "--json"]
    procs = [subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=60) for p in procs]
    delivered = sum(json.loads(out)["delivered"] for out, _ in results)
    ids = [r.headers["webhook-id"] for r in world.receiver.requests]
    assert delivered == 3 and len(ids) == 3 and len(set(ids)) == 3, results


def test_notifications_can_be_switched_off_and_need_history(world):
    world.env["HARNESS_NOTIFY"] = "off"
    outcome = world.run([alert()])
    assert outcome.planned is None and "disabled" in outcome.warnings[0]
    report = RunReport.model_validate_json(next((world.tmp / "reports").rglob("report.json")).read_text())
    outcome = delivery.after_run(report, None, None, environ={})
    assert "--no-history" in outcome.warnings[0]


def test_concurrent_flushes_keep_each_sinks_order_and_a_flush_left_nothing_to_do_exits_0(world):
    """The first message is answered 503 slowly (then retried); a second flusher started meanwhile
    must not send the next messages of the same sink before it, and has nothing left that is its
    to fail on."""
    world.env["T_TEAM_URL"] = closed_port_url()
    world.env.pop("T_CHAT_URL")
    world.run([alert(fingerprint="f1", trigger="RT-001", severity="warning")])
    world.run([alert(fingerprint="f2", trigger="RT-002", severity="warning")])
    world.run([alert(fingerprint="f3", trigger="RT-003", severity="warning")])
    history, store = world.store()
    with history:
        queued = [row[0] for row in store.db.execute(
            "SELECT message_id FROM alert_outbox WHERE sink = 'team' ORDER BY id").fetchall()]
    assert len(queued) >= 3
    world.receiver.answer(Reply(503, delay_s=1.5))
    env = {**world.env, "T_TEAM_URL": world.receiver.url("/team"), "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "harness", "alerts", "flush", "--history", str(world.history),
            "--routes", str(world.routes), "--json"]
    first = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not world.receiver.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    second = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = [(p.communicate(timeout=60), p.returncode) for p in (first, second)]
    ids = [r.headers["webhook-id"] for r in world.receiver.requests]
    accepted = ids[1:]  # the first request got the 503
    assert accepted == queued, results
    assert [code for _, code in results] == [0, 0], results
    assert sum(json.loads(out)["delivered"] for (out, _), _ in results) == len(queued)


# -- payload templates: the project's copy, else the defaults the harness package ships ----------------


def test_without_a_templates_folder_the_packaged_defaults_render_every_sink(world, monkeypatch):
    """An installed harness run for a project with no alerts/templates/ of its own."""
    from harness.alerts import payloads

    monkeypatch.setattr(payloads, "DEFAULT_TEMPLATES", world.tmp / "no-such-project-copy")
    outcome = world.run([alert()])
    assert outcome.flushed.delivered == 2 and not outcome.warnings, outcome.warnings
    [team], [chat] = world.bodies("/team"), world.bodies("/chat")
    assert team["version"] == "4" and team["alerts"][0]["labels"]["alertname"] == "FAIL-001"
    assert chat["text"].startswith(":rotating_light: [FIRING:1] FAIL-001 on integration (nightly)")


def test_a_project_overrides_one_template_and_keeps_the_defaults_for_the_rest(world):
    (world.tmp / "templates").mkdir()  # beside the routes file
    (world.tmp / "templates" / "slack.json.j2").write_text(
        '{"text": "our own: {{ alerts | length }} alert(s) {{ status }}"}\n', encoding="utf-8")
    outcome = world.run([alert()])
    assert outcome.flushed.delivered == 2, outcome.warnings
    assert world.bodies("/chat") == [{"text": "our own: 1 alert(s) firing"}]
    assert world.bodies("/team")[0]["version"] == "4"  # alertmanager_v4.json.j2 from the packaged defaults


def test_a_templates_setting_naming_no_folder_is_a_configuration_error(tmp_path):
    from harness.errors import ConfigError
    from harness.alerts.routes import load_routes

    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES.format(nightly="1h", team_extra="") + "templates: tempaltes\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="templates: no folder .*tempaltes"):
        load_routes(routes)


def test_the_packaged_default_templates_are_this_repositorys_configured_copy():
    """harness/templates/alerts/ ships in the package; alerts/templates/ is what this repository
    configures. They are the same files here: change both together."""
    from harness.alerts.payloads import DEFAULT_TEMPLATES, PACKAGED_TEMPLATES

    packaged = {p.name: p.read_bytes() for p in PACKAGED_TEMPLATES.iterdir()}
    configured = {p.name: p.read_bytes() for p in (REPO / "alerts" / "templates").iterdir()}
    assert DEFAULT_TEMPLATES == REPO / "alerts" / "templates"
    assert packaged == configured
