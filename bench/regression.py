"""The logic of ``bench check``: compare the latest results with a committed baseline, and write baselines.

Baseline file (JSON, written by ``bench check --update``; keys in this order)::

    {
      "format": "segkd-bench-baseline/1",
      "created": "2026-01-31T12:00:00+00:00",      # when the baseline was written (UTC)
      "torch": "2.13.0",                           # torch version that produced it
      "tolerance": {"dice": 0.01, "hd95": 1.0},    # tolerance hints; --tolerance overrides them one by one
      "entries": [                                 # one per (dataset, preset, model, kd), sorted by that key
        {"dataset": "synthetic", "preset": "smoke", "model": "lcovnet", "kd": "ca",
         "seeds": [0, 1],                          # the seeds averaged; a check needs a run for each of them
         "runs": ["synthetic__lcovnet__kd-ca__t-unet3d__s0__3f2a9c1b", "..."],
         "latency_device": "cpu (2 threads)",
         "metrics": {"params": 1020000, "gmacs": 12.5, "dice_mean": 0.7204, "hd95_mean": 7.58,
                     "latency_ms_median": 28.0}}
      ]
    }

Each metric is the mean over the entry's seeds of the latest run (latest ``created``) per (key, seed); a metric may
be null (not recorded), in which case it is not checked. The rules (``RULES``): ``params`` must match exactly and
``gmacs`` to 1e-6 relative; ``dice_mean`` (higher is better) must not drop by more than the ``dice`` tolerance;
``hd95_mean`` (lower is better) must not rise by more than the ``hd95`` tolerance (mm); ``latency_ms_median`` is
checked only with ``--latency-ratio R`` (now / baseline <= R) and only on the same latency device. Tolerances come
from ``--tolerance``, else the baseline's hints, else the defaults in ``RULES``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.store import atomic_write_json

FORMAT = "segkd-bench-baseline/1"
ENTRY_KEY = ("dataset", "preset", "model", "kd")


@dataclass(frozen=True)
class MetricRule:
    """How one summary metric is compared: ``exact`` (relative ``tolerance``), ``tolerance`` (absolute, in the
    metric's bad direction) or ``ratio`` (now / baseline, only with ``--latency-ratio``)."""

    metric: str
    alias: str
    higher_is_better: bool | None
    mode: str
    tolerance: float


RULES: tuple[MetricRule, ...] = (
    MetricRule("params", "params", None, "exact", 0.0),
    MetricRule("gmacs", "gmacs", None, "exact", 1e-6),
    MetricRule("dice_mean", "dice", True, "tolerance", 0.01),
    MetricRule("hd95_mean", "hd95", False, "tolerance", 1.0),
    MetricRule("latency_ms_median", "latency", False, "ratio", math.nan),
)
TOLERANCE_ALIASES = {r.alias: r for r in RULES if r.mode == "tolerance"}


def parse_tolerance(text: str) -> dict[str, float]:
    """``"dice=0.01,hd95=1.0"`` -> ``{"dice": 0.01, "hd95": 1.0}``; unknown names or bad numbers are usage errors."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in TOLERANCE_ALIASES:
            raise BenchError(f"--tolerance takes NAME=VALUE pairs with NAME in {', '.join(TOLERANCE_ALIASES)} "
                             f"(e.g. dice=0.01,hd95=1.0), got {text!r}")
        try:
            number = float(value)
        except ValueError:
            raise BenchError(f"--tolerance {name} must be a number, got {value.strip()!r}") from None
        if not math.isfinite(number) or number < 0:
            raise BenchError(f"--tolerance {name} must be a finite number >= 0, got {value.strip()!r}")
        out[name] = number
    return out


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _mean(values: list[Any]) -> float | int | None:
    """Mean of the recorded values (None when none is); integer counts such as params stay integers when equal."""
    numbers = [n for n in (_number(v) for v in values) if n is not None]
    if not numbers:
        return None
    if all(type(v) is int for v in values) and len(set(values)) == 1:
        return values[0]
    return sum(numbers) / len(numbers)


def _key(summary: dict) -> tuple[str, ...]:
    return tuple("-" if summary.get(k) is None else str(summary[k]) for k in ENTRY_KEY)


def key_text(key: tuple[str, ...] | dict) -> str:
    """``synthetic/smoke/lcovnet/kd=ca``."""
    values = [key[k] for k in ENTRY_KEY] if isinstance(key, dict) else list(key)
    return f"{values[0]}/{values[1]}/{values[2]}/kd={values[3]}"


def latest_runs(summaries: list[dict]) -> dict[tuple[str, ...], dict[Any, dict]]:
    """Per (dataset, preset, model, kd): seed -> the summary with the latest ``created`` (ISO strings compare)."""
    out: dict[tuple[str, ...], dict[Any, dict]] = {}
    for summary in sorted(summaries, key=lambda s: (str(s.get("created") or ""), str(s.get("run_id")))):
        out.setdefault(_key(summary), {})[summary.get("seed")] = summary
    return out


def _entry(key: tuple[str, ...], by_seed: dict[Any, dict]) -> dict[str, Any]:
    seeds = sorted(by_seed, key=lambda s: (s is None, s if isinstance(s, (int, float)) else 0, str(s)))
    runs = [by_seed[s] for s in seeds]
    devices = sorted({str(r["latency_device"]) for r in runs if r.get("latency_device")})
    return {
        **dict(zip(ENTRY_KEY, key)),
        "seeds": seeds,
        "runs": [r.get("run_id") for r in runs],
        "latency_device": ", ".join(devices) or None,
        "metrics": {rule.metric: _mean([r.get(rule.metric) for r in runs]) for rule in RULES},
    }


def build_baseline(summaries: list[dict], tolerance: dict[str, float], torch_version: str | None) -> dict[str, Any]:
    """A baseline holding every (dataset, preset, model, kd) of ``summaries``; see the module docstring."""
    latest = latest_runs(summaries)
    return {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch_version,
        "tolerance": {**{a: r.tolerance for a, r in TOLERANCE_ALIASES.items()}, **tolerance},
        "entries": [_entry(key, latest[key]) for key in sorted(latest)],
    }


def write_baseline(path: Path, baseline: dict[str, Any]) -> None:
    atomic_write_json(path, baseline)


def load_baseline(path: Path) -> dict[str, Any]:
    """Read and validate a baseline file; any problem is a usage error naming the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        hint = f"create it with `bench check --baseline {path} --update`"
        raise BenchError(f"baseline {path} does not exist; {hint}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BenchError(f"cannot read baseline {path}: {err}") from None
    except ValueError as err:
        raise BenchError(f"baseline {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BenchError(f"baseline {path} is not a {FORMAT} file (its \"format\" field is missing or different)")
    entries = data.get("entries")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ENTRY_KEY) and isinstance(e.get("metrics"), dict)
        for e in entries
    ):
        raise BenchError(f"baseline {path}: \"entries\" must be a list of objects with {', '.join(ENTRY_KEY)} "
                         "and metrics")
    hints = data.get("tolerance") or {}
    if not isinstance(hints, dict) or any(k not in TOLERANCE_ALIASES or _number(v) is None for k, v in hints.items()):
        raise BenchError(f"baseline {path}: \"tolerance\" must map {', '.join(TOLERANCE_ALIASES)} to numbers")
    return data


@dataclass
class Comparison:
    """One row of the check table; ``failed`` marks a regression."""

    key: str
    metric: str
    baseline: Any
    now: Any
    delta: str
    allowed: str
    status: str
    failed: bool


@dataclass
class CheckResult:
    rows: list[Comparison]
    missing: list[str]
    not_in_baseline: list[str]

    @property
    def regressions(self) -> list[Comparison]:
        return [r for r in self.rows if r.failed]


def _compare(rule: MetricRule, key: str, base: float, now: float | None, tolerance: float,
             latency_ratio: float | None, same_device: bool) -> Comparison:
    def row(delta: str, allowed: str, status: str, failed: bool) -> Comparison:
        return Comparison(key, rule.metric, base, now, delta, allowed, status, failed)

    if now is None:
        return row("-", "-", "missing", True)
    if rule.mode == "exact":
        ok = now == base if tolerance == 0 else abs(now - base) <= tolerance * abs(base)
        allowed = "== baseline" if tolerance == 0 else f"rel {tolerance:g}"
        return row(f"{now - base:+.6g}", allowed, "ok" if ok else "CHANGED", not ok)
    if rule.mode == "ratio":
        if latency_ratio is None:
            return row("-", "-", "not checked", False)
        if not same_device:
            return row("-", "-", "other device", False)
        if base <= 0:
            return row("-", "-", "not checked", False)
        ratio = now / base
        return row(f"x{ratio:.3f}", f"<= x{latency_ratio:g}", "ok" if ratio <= latency_ratio else "SLOWER",
                   ratio > latency_ratio)
    worse = (base - now) if rule.higher_is_better else (now - base)
    eps = 1e-12 * max(1.0, abs(base))
    if worse > tolerance + eps:
        status, failed = "REGRESSED", True
    else:
        status, failed = ("improved" if -worse > tolerance + eps else "ok"), False
    bound = f">= {base - tolerance:.6g}" if rule.higher_is_better else f"<= {base + tolerance:.6g}"
    return row(f"{now - base:+.6g}", bound, status, failed)


def effective_tolerance(baseline: dict[str, Any], override: dict[str, float]) -> dict[str, float]:
    """Defaults, then the baseline's hints, then ``--tolerance``."""
    hints = {k: float(v) for k, v in (baseline.get("tolerance") or {}).items()}
    return {**{a: r.tolerance for a, r in TOLERANCE_ALIASES.items()}, **hints, **override}


def compare(baseline: dict[str, Any], summaries: list[dict], tolerance: dict[str, float],
            latency_ratio: float | None = None) -> CheckResult:
    """Check the latest results against every baseline entry. ``tolerance`` is by alias (``dice``, ``hd95``)."""
    latest = latest_runs(summaries)
    rows: list[Comparison] = []
    missing: list[str] = []
    for entry in baseline["entries"]:
        key = tuple(entry[k] for k in ENTRY_KEY)
        by_seed = latest.get(key, {})
        seeds = entry.get("seeds") or list(by_seed)
        absent = [s for s in seeds if s not in by_seed]
        if not by_seed or absent:
            missing.append(f"{key_text(key)} (seeds {', '.join(map(str, absent or seeds))})")
            continue
        current = _entry(key, {s: by_seed[s] for s in seeds})
        same_device = entry.get("latency_device") == current["latency_device"] or not entry.get("latency_device")
        for rule in RULES:
            base = _number(entry["metrics"].get(rule.metric))
            if base is None:
                continue
            tol = tolerance.get(rule.alias, rule.tolerance) if rule.mode == "tolerance" else rule.tolerance
            rows.append(_compare(rule, key_text(key), base, _number(current["metrics"][rule.metric]), tol,
                                 latency_ratio, same_device))
    known = {tuple(e[k] for k in ENTRY_KEY) for e in baseline["entries"]}
    return CheckResult(rows, missing, [key_text(k) for k in sorted(latest) if k not in known])
