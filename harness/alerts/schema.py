"""The alert-delivery tables of the history database (SQL only, so history_schema can import it).

``harness/history_schema.py`` appends this as one migration; ``harness/alerts/delivery_state.py``
reads and writes these tables. Times are ISO 8601 UTC strings with milliseconds (they sort as text).
"""

from __future__ import annotations

ALERT_DELIVERY_NAME = "alert delivery: dispatches, notification log, outbox, silences, events"

ALERT_DELIVERY_SQL = """
-- One row per run whose alerts were handed to delivery. planned_at stays NULL until the run's
-- notifications are queued; a run that could not be planned (bad routes.yaml) is planned by the
-- next `harness run` or `harness alerts flush`, in run order, from its report.json.
CREATE TABLE alert_dispatches (
    run_key TEXT PRIMARY KEY,
    cadence TEXT NOT NULL,
    report_path TEXT,
    created_at TEXT NOT NULL,
    planned_at TEXT,
    error TEXT
);

-- Alertmanager's notification log: what each (route, sink) was last told about a fingerprint.
-- Repeat-interval dedupe reads last_sent_at; a resolved message goes only where a firing one went.
CREATE TABLE alert_notifications (
    fingerprint TEXT NOT NULL,
    route TEXT NOT NULL,
    sink TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    trigger_id TEXT NOT NULL,
    state TEXT NOT NULL,                   -- JSON: labels, annotations, evidence, starts_at
    first_sent_at TEXT NOT NULL,
    last_sent_at TEXT NOT NULL,
    last_message_id TEXT NOT NULL,
    send_count INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (fingerprint, route, sink)
);

-- The durable outbox: every message is stored before the first attempt and stays until delivered.
-- message_id is the Standard Webhooks webhook-id (the receiver's idempotency key).
CREATE TABLE alert_outbox (
    id INTEGER PRIMARY KEY,                -- delivery order
    message_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    run_key TEXT,                          -- NULL for `harness alerts test`
    route TEXT NOT NULL,
    sink TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved', 'test')),
    group_key TEXT NOT NULL,
    fingerprints TEXT NOT NULL,            -- JSON list
    body TEXT NOT NULL,                    -- the exact JSON sent; signed afresh on each attempt
    -- rejected: a 4xx/redirect (resent by `flush --include-rejected` once fixed);
    -- abandoned: a `harness alerts test` message that failed (never resent).
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'sending', 'delivered', 'rejected', 'abandoned')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error TEXT,                       -- redacted: never the URL or the secret
    next_attempt_at TEXT,                  -- a Retry-After longer than the sink waits for
    claimed_at TEXT,
    claimed_by TEXT,                       -- host:pid of the process sending it
    delivered_at TEXT
);
CREATE INDEX alert_outbox_by_state ON alert_outbox (state, sink, id);

-- `harness alerts silence`: matching alerts are recorded, not sent, until ends_at.
CREATE TABLE alert_silences (
    id TEXT PRIMARY KEY,
    trigger_id TEXT NOT NULL,              -- a trigger id or a glob (FAIL-*)
    selector TEXT,                         -- NULL: any selector
    reason TEXT NOT NULL,
    created_by TEXT,
    created_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    expired_at TEXT                        -- ended early by `harness alerts expire`
);
CREATE INDEX alert_silences_by_end ON alert_silences (ends_at);

-- What delivery decided and did, per alert and sink: the audit trail `harness alerts list` shows.
CREATE TABLE alert_events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    run_key TEXT,
    fingerprint TEXT,
    trigger_id TEXT,
    route TEXT,
    sink TEXT,
    event TEXT NOT NULL,
    message_id TEXT,
    detail TEXT
);
CREATE INDEX alert_events_by_fingerprint ON alert_events (fingerprint, id);
CREATE INDEX alert_events_by_run ON alert_events (run_key);
"""
