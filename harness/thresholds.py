"""Runtime thresholds of a selector: the catalog's absolute seconds, or factors of a baseline.

In baseline mode the brief's factors apply (critical 2.5x, warning 1.7x, suspicious 0.55x)
to the baseline calibrated on this host (``harness calibrate``), falling back to the
catalog's ``baseline_s`` (measured on the brief's Ryzen 9 5950X).

Host mode (the default for a catalog in absolute mode, once the selector has ``HOST_MIN_RUNS``
runs on this host): the same factors of the host's rolling baseline, the median of its last
``HOST_WINDOW`` runtimes there. The brief's absolute critical and warning seconds stay a hard
ceiling (RT-001 still fires above 90 s anywhere); the absolute "suspiciously fast" floor does
not apply, because a host whose own history says 15 s is normal is not suspicious at 15 s.
With fewer runs the absolute thresholds apply and the report says how many runs are missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # annotations only: `harness run --help` quotes HOST_MIN_RUNS without loading pydantic
    from harness.catalog import RuntimeSpec

Mode = Literal["absolute", "baseline", "host"]
HOST_MIN_RUNS = 10
HOST_WINDOW = 20


@dataclass(frozen=True)
class Thresholds:
    mode: Mode
    critical: float | None
    warning: float | None
    suspicious: float | None
    baseline: float | None
    baseline_source: str | None

    def named(self, name: str) -> float | None:
        return {"critical": self.critical, "warning": self.warning, "suspicious": self.suspicious}[name]

    def as_dict(self) -> dict[str, float | str | None]:
        return {
            "mode": self.mode,
            "critical_s": self.critical,
            "warning_s": self.warning,
            "suspicious_below_s": self.suspicious,
            "baseline_s": self.baseline,
            "baseline_source": self.baseline_source,
        }


def resolve_thresholds(spec: RuntimeSpec, calibrated: float | None, mode: Mode | None = None) -> Thresholds:
    """The thresholds in force: ``mode`` (a CLI override) or the catalog's, with the best baseline."""
    chosen: Mode = mode or spec.mode
    if calibrated is not None:
        baseline, source = calibrated, "calibrated on this host"
    elif spec.baseline_s is not None:
        baseline, source = spec.baseline_s, "catalog baseline_s"
    else:
        baseline, source = None, None
    if chosen == "baseline" and baseline is not None:
        return Thresholds(
            mode="baseline",
            critical=round(baseline * spec.critical_factor, 3),
            warning=round(baseline * spec.warning_factor, 3),
            suspicious=round(baseline * spec.suspicious_factor, 3),
            baseline=baseline,
            baseline_source=source,
        )
    return Thresholds(
        mode="absolute",
        critical=spec.critical_s,
        warning=spec.warning_s,
        suspicious=spec.suspicious_below_s,
        baseline=baseline,
        baseline_source=source,
    )


def host_thresholds(spec: RuntimeSpec, recent: list[float]) -> Thresholds | None:
    """The host-relative thresholds from this host's recent runtimes (newest first), or None
    while there are fewer than ``HOST_MIN_RUNS`` of them."""
    values = sorted(v for v in recent[:HOST_WINDOW] if v is not None and v > 0)
    if len(values) < HOST_MIN_RUNS:
        return None
    middle = len(values) // 2
    baseline = values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2

    def capped(factor: float, ceiling: float | None) -> float:
        value = baseline * factor
        return round(min(value, ceiling) if ceiling is not None else value, 3)

    return Thresholds(
        mode="host",
        critical=capped(spec.critical_factor, spec.critical_s),
        warning=capped(spec.warning_factor, spec.warning_s),
        suspicious=round(baseline * spec.suspicious_factor, 3),
        baseline=round(baseline, 3),
        baseline_source=f"median of the last {len(values)} runs on this host",
    )
