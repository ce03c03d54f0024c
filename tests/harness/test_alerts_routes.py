"""alerts/routes.yaml: the shipped routing of the brief's triggers, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.alerts.routes import AlertLabels, load_routes, owners_of, parse_duration, parse_routes

REPO = Path(__file__).resolve().parents[2]
ROUTES = REPO / "alerts" / "routes.yaml"

MINIMAL = """
version: 1
sinks:
  team: {kind: webhook, url_env: TEAM_URL, secret_env: TEAM_SECRET}
routes:
  - name: team
    match: {owner: [TEST-PYTORCH-001]}
    sinks: [team]
default:
  sinks: [team]
"""


def _labels(trigger: str, severity: str, owner: str, cadence: str = "nightly") -> AlertLabels:
    return AlertLabels(trigger=trigger, severity=severity, owners=owners_of(owner), selector="integration",
                       cadence=cadence)


def _targets(config, trigger, severity, owner, cadence="nightly"):
    return [(t.route, t.sink.name) for t in config.targets(_labels(trigger, severity, owner, cadence))]


def test_shipped_routes_send_each_trigger_to_its_owners_per_the_brief():
    config = load_routes(ROUTES)
    rules_owner = {  # brief §3.4: trigger -> (severity, notification target as alerts/rules.yaml writes it)
        "FAIL-001": ("critical", "TEST-PYTORCH-001 + INTEGRATE-PYTORCH-001"),
        "RT-001": ("critical", "TEST-PYTORCH-001"),
        "RT-002": ("warning", "TEST-PYTORCH-001"),
        "RT-003": ("warning", "INTEGRATE-PYTORCH-001"),
        "POLICY-001": ("high", "Developer + TEST-PYTORCH-001"),
        "FORMAT-001": ("medium", "INTEGRATE-PYTORCH-001"),
    }
    got = {trigger: _targets(config, trigger, sev, owner) for trigger, (sev, owner) in rules_owner.items()}
    assert got["FAIL-001"] == [("page-channel", "ci-slack"), ("test-pytorch-001", "test-pytorch-001"),
                               ("integrate-pytorch-001", "integrate-pytorch-001")]
    assert got["RT-001"] == [("page-channel", "ci-slack"), ("test-pytorch-001", "test-pytorch-001")]
    assert got["RT-002"] == [("test-pytorch-001", "test-pytorch-001")]
    assert got["RT-003"] == [("integrate-pytorch-001", "integrate-pytorch-001")]
    assert got["POLICY-001"] == [("page-channel", "ci-slack"), ("test-pytorch-001", "test-pytorch-001")]
    assert got["FORMAT-001"] == [("integrate-pytorch-001", "integrate-pytorch-001")]
    # an owner no route names still reaches someone
    assert _targets(config, "FLAKY-001", "warning", "unassigned") == [("default", "test-pytorch-001")]


def test_shipped_routes_name_environment_variables_not_values():
    config = load_routes(ROUTES)
    for sink in config.sinks.values():
        assert sink.url_env.isupper() and "://" not in sink.url_env
    assert "http" not in ROUTES.read_text(encoding="utf-8").split("sinks:")[1]


def test_repeat_interval_depends_on_the_cadence():
    config = load_routes(ROUTES)
    [pr] = config.targets(_labels("RT-002", "warning", "TEST-PYTORCH-001", "pr"))
    [nightly] = config.targets(_labels("RT-002", "warning", "TEST-PYTORCH-001", "nightly"))
    assert (pr.repeat_interval_s, nightly.repeat_interval_s) == (4 * 3600, 20 * 3600)


def test_first_match_wins_unless_continue():
    config = parse_routes(MINIMAL.replace("routes:\n", "routes:\n  - {name: all, sinks: [team]}\n"), Path("r.yaml"))
    assert _targets(config, "RT-001", "critical", "TEST-PYTORCH-001") == [("all", "team")]


def test_globs_severity_floor_and_cadence_match():
    text = MINIMAL.replace(
        "routes:\n",
        "routes:\n  - {name: fails, match: {trigger: ['FAIL-*'], cadence: [pr]}, min_severity: high, sinks: [team]}\n",
    )
    config = parse_routes(text, Path("r.yaml"))
    assert _targets(config, "FAIL-002", "critical", "X", "pr") == [("fails", "team")]
    assert _targets(config, "FAIL-002", "critical", "X", "nightly") == [("default", "team")]
    assert _targets(config, "FAIL-002", "medium", "X", "pr") == [("default", "team")]
    assert _targets(config, "RT-001", "critical", "X", "pr") == [("default", "team")]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t.replace("sinks: [team]\ndefault", "sinks: [nope]\ndefault"), "r.yaml: routes.0.sinks: unknown sink 'nope'"),
        (lambda t: t.replace("url_env: TEAM_URL", "url_env: https://hooks.example/abc"),
         "r.yaml: sinks.team.url_env: 'https://hooks.example/abc' is not an environment variable name"),
        (lambda t: t.replace("kind: webhook", "kind: email"), "r.yaml: sinks.team.kind: Input should be 'webhook' or 'slack'"),
        (lambda t: t.replace("version: 1", "version: 1\nrepeat_interval: {nightly: 4 hours}"),
         "r.yaml: repeat_interval.nightly: '4 hours' is not a duration"),
        (lambda t: t.replace("match: {owner", "matchh: {owner"), "r.yaml: routes.0.matchh: Extra inputs are not permitted"),
        (lambda t: t.replace("match: {owner: [TEST-PYTORCH-001]}", "match: {severity: [urgent]}"),
         "r.yaml: routes.0.match.severity.0: Input should be"),
        (lambda t: t.split("default:")[0], "r.yaml: default: required"),
        (lambda t: t.replace("    sinks: [team]\ndefault", "    sinks: []\ndefault"), "r.yaml: routes.0.sinks: Tuple should have at least 1 item"),
        (lambda t: t.replace("version: 1", "version: 1\ngroup_by: [branch]"), "r.yaml: group_by: unknown label 'branch'"),
        (lambda t: t.replace("secret_env: TEAM_SECRET}", "secret_env: TEAM_SECRET, timeout_s: -1}"),
         "r.yaml: sinks.team.timeout_s: Input should be greater than 0"),
        (lambda t: t + "  - oops: [", "r.yaml: not valid YAML (line"),
    ],
)
def test_invalid_routes_name_the_file_and_field(change, expected):
    with pytest.raises(ConfigError) as caught:
        parse_routes(change(MINIMAL), Path("r.yaml"))
    assert str(caught.value).startswith(expected) or expected in str(caught.value), str(caught.value)


def test_missing_routes_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"routes\.yaml: routes file not found"):
        load_routes(tmp_path / "routes.yaml")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("15m", 900), ("4h", 14400), ("1d12h", 129600),
                                                ("1w", 604800), ("500ms", 0.5), ("0", 0), (90, 90)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_owners_of_splits_the_brief_s_both_initiatives_owner():
    assert owners_of("TEST-PYTORCH-001 + INTEGRATE-PYTORCH-001") == ["TEST-PYTORCH-001", "INTEGRATE-PYTORCH-001"]
    assert owners_of("Developer + TEST-PYTORCH-001") == ["TEST-PYTORCH-001"]
    assert owners_of("INTEGRATE-PYTORCH-001-D1C") == ["INTEGRATE-PYTORCH-001-D1C"]
    assert owners_of("unassigned") == ["unassigned"]
