"""Alert delivery: from a run's fired and resolved triggers to webhook notifications.

Alertmanager's model, one module per part (nothing is imported here, so naming one part does not
load the others: ``harness --help`` and the run's start stay fast):

- ``routes``: ``alerts/routes.yaml`` validated: which route takes an alert, which sinks it
  reaches, grouping and repeat intervals (route -> receiver);
- ``payloads``: the message bodies (Alertmanager v4 JSON, Slack) rendered from the templates,
  size-bounded per sink;
- ``webhooks``: one message sent: Standard Webhooks signature, retries with backoff, no secret
  in any error or log line;
- ``schema``: the delivery tables of the history database (SQL only, one migration);
- ``delivery_state``: those tables read and written: notification log, outbox, silences,
  events;
- ``delivery``: ``after_run``, the one call a run makes: route, deduplicate, queue in the
  outbox, flush.
"""
