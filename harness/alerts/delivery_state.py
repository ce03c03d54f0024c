"""Alert delivery state in the history database: notification log, outbox, silences, events.

Alertmanager keeps a notification log (what each receiver was told, when) to deduplicate and
to send ``resolved`` only where ``firing`` went; silences mute matching alerts for a while.
This module holds the same state in the tables of migration 2 (``harness/alerts/schema.py``),
on top of the core's ``HistoryStore`` (one SQLite file, WAL, ``BEGIN IMMEDIATE`` writes).

Outbox rows are claimed before sending (``pending`` -> ``sending`` in one UPDATE), so two
flushing processes never send the same message; a claim left by a dead process is taken over.
A message is claimed only when every earlier message of its sink is settled, so concurrent
flushers keep each sink's order.
"""

from __future__ import annotations

import fnmatch
import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from harness.history import HistoryStore
from harness.process_tree import pid_alive

# A 'sending' claim older than this is abandoned (a delivery takes at most a few minutes).
CLAIM_TIMEOUT_S = 15 * 60


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def now_utc() -> datetime:
    return datetime.now(UTC)


def new_message_id() -> str:
    """A Standard Webhooks message id (``msg_`` + 32 hex digits)."""
    return f"msg_{uuid.uuid4().hex}"


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Silence:
    id: str
    trigger: str
    selector: str | None
    reason: str
    created_by: str | None
    created_at: str
    ends_at: str
    expired_at: str | None = None

    def active(self, now: datetime) -> bool:
        return self.expired_at is None and parse_iso(self.ends_at) > now

    def matches(self, trigger: str, selector: str | None) -> bool:
        if not fnmatch.fnmatchcase(trigger, self.trigger):
            return False
        return self.selector is None or self.selector == selector

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id, "trigger": self.trigger, "selector": self.selector, "reason": self.reason,
            "created_by": self.created_by, "created_at": self.created_at, "ends_at": self.ends_at,
            "expired_at": self.expired_at, "active": self.active(now),
        }


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    message_id: str
    created_at: str
    run_key: str | None
    route: str
    sink: str
    kind: str
    status: str
    group_key: str
    fingerprints: list[str]
    body: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: str | None
    delivered_at: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> OutboxMessage:
        return cls(
            id=row["id"], message_id=row["message_id"], created_at=row["created_at"], run_key=row["run_key"],
            route=row["route"], sink=row["sink"], kind=row["kind"], status=row["status"],
            group_key=row["group_key"], fingerprints=json.loads(row["fingerprints"]), body=row["body"],
            state=row["state"], attempts=row["attempts"], last_status=row["last_status"],
            last_error=row["last_error"], next_attempt_at=row["next_attempt_at"], delivered_at=row["delivered_at"],
        )

    def to_json(self, with_body: bool = False) -> dict[str, Any]:
        data = {
            "id": self.id, "message_id": self.message_id, "created_at": self.created_at, "run": self.run_key,
            "route": self.route, "sink": self.sink, "kind": self.kind, "status": self.status,
            "group_key": self.group_key, "fingerprints": self.fingerprints, "state": self.state,
            "attempts": self.attempts, "last_status": self.last_status, "last_error": self.last_error,
            "next_attempt_at": self.next_attempt_at, "delivered_at": self.delivered_at,
        }
        if with_body:
            data["body"] = json.loads(self.body)
        return data


@dataclass(frozen=True)
class NotificationLogEntry:
    fingerprint: str
    route: str
    sink: str
    status: str
    trigger: str
    state: dict[str, Any]
    first_sent_at: str
    last_sent_at: str
    last_message_id: str
    send_count: int


class AlertStore:
    """Alert delivery tables, through the core's history connection."""

    def __init__(self, history: HistoryStore) -> None:
        self.history = history
        self.db = history.db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.history.transaction() as db:
            yield db

    # -- dispatches ---------------------------------------------------------------------------

    def add_dispatch(self, run_key: str, cadence: str, report_path: str | None, now: datetime) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO alert_dispatches (run_key, cadence, report_path, created_at) VALUES (?, ?, ?, ?)",
                (run_key, cadence, report_path, utc_iso(now)),
            )

    def unplanned_dispatches(self) -> list[sqlite3.Row]:
        return self.db.execute(
            "SELECT * FROM alert_dispatches WHERE planned_at IS NULL ORDER BY created_at, rowid"
        ).fetchall()

    def mark_planned(self, run_key: str, now: datetime, error: str | None = None) -> None:
        self.db.execute(
            "UPDATE alert_dispatches SET planned_at = ?, error = ? WHERE run_key = ?", (utc_iso(now), error, run_key)
        )

    def note_dispatch_error(self, run_key: str, error: str) -> None:
        with self.transaction():
            self.db.execute("UPDATE alert_dispatches SET error = ? WHERE run_key = ?", (error, run_key))

    # -- silences -----------------------------------------------------------------------------

    def add_silence(self, trigger: str, selector: str | None, duration_s: float, reason: str,
                    created_by: str | None, now: datetime) -> Silence:
        silence = Silence(
            id=uuid.uuid4().hex[:12], trigger=trigger, selector=selector, reason=reason, created_by=created_by,
            created_at=utc_iso(now), ends_at=utc_iso(now + timedelta(seconds=duration_s)),
        )
        with self.transaction():
            self.db.execute(
                "INSERT INTO alert_silences (id, trigger_id, selector, reason, created_by, created_at, ends_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (silence.id, silence.trigger, silence.selector, silence.reason, silence.created_by,
                 silence.created_at, silence.ends_at),
            )
        return silence

    def expire_silence(self, silence_id: str, now: datetime) -> Silence | None:
        """End a silence now; None when no silence has that id (or id prefix)."""
        with self.transaction():
            rows = self.db.execute(
                "SELECT * FROM alert_silences WHERE id LIKE ? || '%'", (silence_id,)
            ).fetchall()
            if len(rows) != 1:
                return None
            self.db.execute("UPDATE alert_silences SET expired_at = ? WHERE id = ?", (utc_iso(now), rows[0]["id"]))
        return self.silence(rows[0]["id"])

    def silence(self, silence_id: str) -> Silence | None:
        row = self.db.execute("SELECT * FROM alert_silences WHERE id = ?", (silence_id,)).fetchone()
        return None if row is None else self._silence(row)

    def silences(self, now: datetime, include_expired: bool = False) -> list[Silence]:
        rows = self.db.execute("SELECT * FROM alert_silences ORDER BY created_at, id").fetchall()
        found = [self._silence(row) for row in rows]
        return found if include_expired else [s for s in found if s.active(now)]

    def silence_for(self, trigger: str, selector: str | None, now: datetime) -> Silence | None:
        for silence in self.silences(now):
            if silence.matches(trigger, selector):
                return silence
        return None

    @staticmethod
    def _silence(row: sqlite3.Row) -> Silence:
        return Silence(
            id=row["id"], trigger=row["trigger_id"], selector=row["selector"], reason=row["reason"],
            created_by=row["created_by"], created_at=row["created_at"], ends_at=row["ends_at"],
            expired_at=row["expired_at"],
        )

    # -- notification log ---------------------------------------------------------------------

    def log_entry(self, fingerprint: str, route: str, sink: str) -> NotificationLogEntry | None:
        row = self.db.execute(
            "SELECT * FROM alert_notifications WHERE fingerprint = ? AND route = ? AND sink = ?",
            (fingerprint, route, sink),
        ).fetchone()
        return None if row is None else self._entry(row)

    def firing_entries(self, fingerprint: str) -> list[NotificationLogEntry]:
        rows = self.db.execute(
            "SELECT * FROM alert_notifications WHERE fingerprint = ? AND status = 'firing' ORDER BY route, sink",
            (fingerprint,),
        ).fetchall()
        return [self._entry(row) for row in rows]

    def all_firing(self) -> list[NotificationLogEntry]:
        rows = self.db.execute(
            "SELECT * FROM alert_notifications WHERE status = 'firing' ORDER BY last_sent_at DESC"
        ).fetchall()
        return [self._entry(row) for row in rows]

    def record_sent(self, fingerprint: str, route: str, sink: str, status: str, trigger: str,
                    state: dict[str, Any], message_id: str, now: datetime) -> None:
        """Upsert the log row (inside the caller's transaction)."""
        stamp = utc_iso(now)
        self.db.execute(
            """
            INSERT INTO alert_notifications (fingerprint, route, sink, status, trigger_id, state, first_sent_at,
                last_sent_at, last_message_id, send_count)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
            ON CONFLICT (fingerprint, route, sink) DO UPDATE SET
                status = excluded.status, trigger_id = excluded.trigger_id, state = excluded.state,
                first_sent_at = CASE WHEN alert_notifications.status = 'resolved' AND excluded.status = 'firing'
                                     THEN excluded.first_sent_at ELSE alert_notifications.first_sent_at END,
                last_sent_at = excluded.last_sent_at, last_message_id = excluded.last_message_id,
                send_count = alert_notifications.send_count + 1
            """,
            (fingerprint, route, sink, status, trigger, json.dumps(state, default=str), stamp, stamp, message_id),
        )

    @staticmethod
    def _entry(row: sqlite3.Row) -> NotificationLogEntry:
        return NotificationLogEntry(
            fingerprint=row["fingerprint"], route=row["route"], sink=row["sink"], status=row["status"],
            trigger=row["trigger_id"], state=json.loads(row["state"]), first_sent_at=row["first_sent_at"],
            last_sent_at=row["last_sent_at"], last_message_id=row["last_message_id"], send_count=row["send_count"],
        )

    # -- events -------------------------------------------------------------------------------

    def event(self, event: str, now: datetime, *, run_key: str | None = None, fingerprint: str | None = None,
              trigger: str | None = None, route: str | None = None, sink: str | None = None,
              message_id: str | None = None, detail: str | None = None) -> None:
        """Append to the audit trail (inside the caller's transaction, or on its own)."""
        self.db.execute(
            "INSERT INTO alert_events (at, run_key, fingerprint, trigger_id, route, sink, event, message_id, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (utc_iso(now), run_key, fingerprint, trigger, route, sink, event, message_id, detail),
        )

    def events(self, limit: int = 50, fingerprint: str | None = None, run_key: str | None = None) -> list[dict[str, Any]]:
        query, params = "SELECT * FROM alert_events", []
        clauses = []
        if fingerprint:
            clauses.append("fingerprint = ?")
            params.append(fingerprint)
        if run_key:
            clauses.append("run_key = ?")
            params.append(run_key)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [dict(row) for row in self.db.execute(query, params).fetchall()]

    # -- outbox -------------------------------------------------------------------------------

    def enqueue(self, *, message_id: str, run_key: str | None, route: str, sink: str, kind: str, status: str,
                group_key: str, fingerprints: list[str], body: bytes, now: datetime) -> int:
        """Store a message (inside the caller's transaction); returns its delivery-order id."""
        cursor = self.db.execute(
            """
            INSERT INTO alert_outbox (message_id, created_at, run_key, route, sink, kind, status, group_key,
                fingerprints, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            (message_id, utc_iso(now), run_key, route, sink, kind, status, group_key, json.dumps(fingerprints),
             body.decode("utf-8")),
        )
        return int(cursor.lastrowid)

    def deliverable(self, now: datetime, *, include_rejected: bool = False, ignore_retry_at: bool = False) -> list[OutboxMessage]:
        """Messages a flush should try, in delivery order: pending (and due), abandoned claims,
        and with ``include_rejected`` the ones a receiver refused (after the config was fixed)."""
        states = ["pending", "sending"] + (["rejected"] if include_rejected else [])
        rows = self.db.execute(
            f"SELECT * FROM alert_outbox WHERE state IN ({', '.join('?' * len(states))}) ORDER BY id",
            states,
        ).fetchall()
        found = []
        for row in rows:
            if row["state"] == "sending" and not self._claim_abandoned(row, now):
                continue
            if (not ignore_retry_at and row["state"] == "pending" and row["next_attempt_at"]
                    and parse_iso(row["next_attempt_at"]) > now):
                continue
            found.append(OutboxMessage.from_row(row))
        return found

    @staticmethod
    def _claim_abandoned(row: sqlite3.Row, now: datetime) -> bool:
        claimed_by, claimed_at = row["claimed_by"], row["claimed_at"]
        if not claimed_at:
            return True
        if (now - parse_iso(claimed_at)).total_seconds() > CLAIM_TIMEOUT_S:
            return True
        host, _, pid = (claimed_by or "").rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            return int(pid) != os.getpid() and not pid_alive(int(pid))
        return False

    def claim(self, message: OutboxMessage, now: datetime, *, in_order: bool = True) -> str:
        """Take a message for sending, in one write transaction. Returns ``claimed``; ``done``
        when it was delivered (or given up) meanwhile; ``busy`` when another live process is
        sending it or, with ``in_order``, an earlier message of the same sink is still waiting or
        being sent: per sink, messages leave in the order they were queued, so a "resolved"
        never overtakes its "firing"."""
        with self.transaction():
            row = self.db.execute("SELECT * FROM alert_outbox WHERE id = ?", (message.id,)).fetchone()
            if row is None or row["state"] not in ("pending", "sending", "rejected"):
                return "done"
            if row["state"] == "sending" and not self._claim_abandoned(row, now):
                return "busy"
            if in_order:
                earlier = self.db.execute(
                    "SELECT * FROM alert_outbox WHERE sink = ? AND id < ? AND state IN ('pending', 'sending')",
                    (row["sink"], row["id"]),
                ).fetchall()
                if earlier:
                    return "busy"
            self.db.execute(
                "UPDATE alert_outbox SET state = 'sending', claimed_at = ?, claimed_by = ? WHERE id = ?",
                (utc_iso(now), this_process(), message.id),
            )
        return "claimed"

    def held_elsewhere(self, row: sqlite3.Row, now: datetime) -> bool:
        """A 'sending' row another live process is working on."""
        return row["state"] == "sending" and row["claimed_by"] != this_process() and not self._claim_abandoned(row, now)

    def waiting(self) -> list[sqlite3.Row]:
        """Rows still to be delivered (pending or being sent), in delivery order."""
        return self.db.execute(
            "SELECT * FROM alert_outbox WHERE state IN ('pending', 'sending') ORDER BY id").fetchall()

    def finish(self, message: OutboxMessage, *, delivered: bool, rejected: bool, attempts: int,
               status: int | None, error: str | None, retry_at: datetime | None, now: datetime) -> None:
        """Record what a delivery attempt came to, with its event."""
        state = "delivered" if delivered else ("rejected" if rejected else "pending")
        with self.transaction():
            self.db.execute(
                """
                UPDATE alert_outbox SET state = ?, attempts = attempts + ?, last_status = ?, last_error = ?,
                    next_attempt_at = ?, claimed_at = NULL, claimed_by = NULL, delivered_at = ?
                WHERE id = ?
                """,
                (state, attempts, status, error, utc_iso(retry_at) if retry_at else None,
                 utc_iso(now) if delivered else None, message.id),
            )
            self.event(
                "delivered" if delivered else ("rejected" if rejected else "delivery_failed"), now,
                run_key=message.run_key, route=message.route, sink=message.sink, message_id=message.message_id,
                detail=None if delivered else error,
            )

    def message_waiting(self, message_id: str) -> bool:
        """Whether a message is still to be delivered (pending, or being sent)."""
        row = self.db.execute("SELECT state FROM alert_outbox WHERE message_id = ?", (message_id,)).fetchone()
        return row is not None and row[0] in ("pending", "sending")

    def outbox(self, states: tuple[str, ...] | None = None, limit: int = 100) -> list[OutboxMessage]:
        query, params = "SELECT * FROM alert_outbox", []
        if states:
            query += f" WHERE state IN ({', '.join('?' * len(states))})"
            params.extend(states)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [OutboxMessage.from_row(row) for row in self.db.execute(query, params).fetchall()]

    def outbox_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT state, COUNT(*) FROM alert_outbox GROUP BY state").fetchall()
        return {row[0]: int(row[1]) for row in rows}
