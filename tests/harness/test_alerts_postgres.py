"""Alert delivery on the PostgreSQL history store (``--history-url``): the same guarantees as SQLite.

Uses the throwaway server of test_history_postgres.py (skipped, with the reason, where none starts).
"""

from __future__ import annotations

from test_alerts_delivery import World, alert
from test_history_postgres import pg_url, postgres_server  # noqa: F401 - pytest fixtures
from webhook_receiver import Receiver, closed_port_url

from harness.alerts.delivery_state import AlertStore, now_utc
from harness.history import HistoryStore
from harness.history_backend import HistoryURL


def test_outbox_dedupe_resolved_and_silences_on_postgresql(tmp_path, pg_url):  # noqa: F811
    receiver = Receiver.start()
    try:
        world = World(tmp_path, receiver)
        world.history = HistoryURL(pg_url)
        world.env["T_TEAM_URL"] = closed_port_url("/team")
        first = world.run([alert(), alert("RT-002", "warning", nodeid=None)])
        assert first.planned.queued_messages == 3 and first.flushed.remaining == 2  # chat got its one
        world.env["T_TEAM_URL"] = receiver.url("/team")
        _, flushed, _ = world.flush()
        assert flushed.delivered == 2 and flushed.ok
        _, again, _ = world.flush()
        assert again.messages == []
        second = world.run([alert("RT-002", "warning", nodeid=None)])
        assert second.planned.deduplicated == 1 and second.planned.resolved == 2
        with HistoryStore.open(world.history) as history:
            store = AlertStore(history)
            silence = store.add_silence("RT-*", None, 3600, "pg", "bob", now_utc())
            assert [s.id for s in store.silences(now_utc())] == [silence.id]
            assert store.expire_silence(silence.id[:4], now_utc()).expired_at
        team = world.bodies("/team")
        assert [b["status"] for b in team] == ["firing", "firing", "resolved"]
        ids = [r.headers["webhook-id"] for r in receiver.requests]
        assert len(ids) == len(set(ids))
    finally:
        receiver.stop()
