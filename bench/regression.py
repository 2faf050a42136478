"""The logic of ``bench check``: compare the latest results with a committed baseline, and write baselines.

Two kinds of checks, because training is chaotic and everything else is not:

* **exact** checks hold on any machine: ``params`` (equal), ``gmacs`` (1e-6 relative: fvcore counts are integers
  scaled to G) and the losses of each run's first training step (``first_step``: before any update the network,
  its seeded initialisation and the first batch are the same everywhere; only float32 kernel rounding differs,
  measured below 1e-6 relative across CPU kinds, so ``FIRST_STEP_REL`` = 1e-4 leaves 100x margin while a flipped
  or zeroed loss term moves these values by far more; a KD run's kd_loss and loss, which also depend on the trained
  teacher, get ``TEACHER_FIRST_STEP_REL`` or 4x their measured spread, whichever is wider). They catch a changed
  architecture, loss or label mapping without any training noise.
* **statistical** checks compare trained accuracy (``dice_mean``, ``hd95_mean``) with a tolerance derived from the
  measured noise: the baseline is written from several runs of each entry (seeds and CPU settings, pooled from
  one or more results stores), ``spread`` is their sample standard deviation and
  ``tolerance = max(floor, k * spread)`` (``NOISE_K`` = 4: a normally distributed noise exceeds 4 sigma with
  probability 6e-5). The floor keeps one lucky set of samples from making the gate stricter than the metric's
  own resolution.

Latency is informational: it is shown, and checked only with ``--latency-ratio R`` on the same latency device.

Baseline file (JSON, written by ``bench check --update``)::

    {
      "format": "segkd-bench-baseline/2",
      "created": "2026-12-02T12:00:00+00:00", "torch": "2.13.0+cpu",
      "noise": {"k": 4.0, "floor": {"dice": 0.01, "hd95": 2.0}, "first_step_rel": 1e-4,
                "sources": {"seeds": [0, 1, 2], "cpu_capability": ["AVX2", "AVX512", "DEFAULT"], "threads": [1, 2]}},
      "entries": [                                  # one per (dataset, preset, model, kd), sorted by that key
        {"dataset": "SegKDSynthAbdomen", "preset": "smoke", "model": "lcovnet", "kd": "ca",
         "seeds": [0, 1, 2], "runs": ["...", "..."], "latency_device": "cpu",
         "exact": {"params": 177732, "gmacs": 0.278,
                   "first_step": {"0": {"loss": 1.61, "seg_loss": 2.01, "kd_loss": 1.1e-05}, "1": {...}},
                   "first_step_rel": {"loss": 1e-3, "seg_loss": 1e-4, "kd_loss": 0.05}},
         "statistical": {"dice_mean": {"value": 0.81, "spread": 0.004, "tolerance": 0.016, "samples": 9},
                         "hd95_mean": {"value": 6.1, "spread": 0.3, "tolerance": 2.0, "samples": 9}},
         "informational": {"latency_ms_median": 46.2}}
      ]
    }

A check compares, per entry, the mean over the seeds the current results have (latest run per seed) with the
entry's ``value``; ``first_step`` is compared per seed. ``--tolerance dice=...`` overrides the derived tolerances.
Baselines of the older format ``segkd-bench-baseline/1`` (one value per metric, no measured noise) are refused with
a message saying how to write a new one.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_json
from bench.errors import BenchError
from bench.nesting import too_deep_as_error
from bench.run_summary import RunSummary

FORMAT = "segkd-bench-baseline/2"
FORMAT_V1 = "segkd-bench-baseline/1"
ENTRY_KEY = ("dataset", "preset", "model", "kd")
NOISE_K = 4.0
FLOORS = {"dice": 0.01, "hd95": 2.0, "gain": 0.01}
FIRST_STEP_REL = 1e-4
FIRST_STEP_ABS = 1e-7  # for a KD loss that is (numerically) zero at the first step
GMACS_REL = 1e-6
FIRST_STEP_KEYS = ("loss", "seg_loss", "kd_loss")
# Also measured at the first step (bench.training.trainer), checked where the baseline has them: the KD term's gradient
# norm on the student's weights (0 when the term is detached on its way into the loss) and the number of parameters
# the optimiser updates (a KD method's adapters left out of it lower the count).
PROBE_KEYS = ("kd_grad_norm", "optimized_params")
# A KD run's first-step kd_loss (and so its loss) depends on the teacher, which is trained and therefore not the same
# on every CPU. Measured on the smoke protocol, seed 0's teachers trained under AVX-512, AVX2 and generic kernels
# gave first-step kd_loss values up to 1.0% apart and losses up to 2.3e-4 apart (relative); a baseline from fewer
# kernel sets measures less than that. These floors leave 5x and 4x margin; a flipped or zeroed KD term still moves
# kd_loss by 100% or more.
TEACHER_FIRST_STEP_REL = {"loss": 1e-3, "kd_loss": 0.05, "kd_grad_norm": 0.05}


@dataclass(frozen=True)
class StatMetric:
    """A trained-accuracy metric checked against measured noise."""

    metric: str
    alias: str
    label: str
    higher_is_better: bool
    digits: int


STAT_METRICS: tuple[StatMetric, ...] = (
    StatMetric("dice_mean", "dice", "Dice", True, 4),
    StatMetric("hd95_mean", "hd95", "HD95", False, 2),
)
# A KD entry's gain: its Dice minus that of the same student without KD, paired by seed (and, when a baseline pools
# several CPU settings, by kernel set and thread count). It is what distillation does; the gate fails when it shrinks.
GAIN = StatMetric("kd_gain", "gain", "KD gain", True, 4)
TOLERANCE_ALIASES = {m.alias: m for m in (*STAT_METRICS, GAIN)}


def parse_tolerance(text: str) -> dict[str, float]:
    """``"dice=0.01,hd95=1.0"`` -> ``{"dice": 0.01, "hd95": 1.0}``; unknown names or bad numbers are usage errors."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in TOLERANCE_ALIASES:
            raise BenchError(
                f"--tolerance takes NAME=VALUE pairs with NAME in {', '.join(TOLERANCE_ALIASES)} "
                f"(e.g. dice=0.01,hd95=1.0), got {text!r}"
            )
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
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _key(summary: RunSummary) -> tuple[str, ...]:
    return tuple("-" if getattr(summary, k) is None else str(getattr(summary, k)) for k in ENTRY_KEY)


def key_text(key: tuple[str, ...] | dict) -> str:
    """``synthetic/smoke/lcovnet/kd=ca``."""
    values = [key[k] for k in ENTRY_KEY] if isinstance(key, dict) else list(key)
    return f"{values[0]}/{values[1]}/{values[2]}/kd={values[3]}"


def _seed_order(seed: Any) -> tuple:
    return (seed is None, seed if isinstance(seed, int | float) else 0, str(seed))


def latest_runs(summaries: list[RunSummary]) -> dict[tuple[str, ...], dict[Any, RunSummary]]:
    """Per (dataset, preset, model, kd): seed -> the summary with the latest ``created`` (ISO strings compare)."""
    out: dict[tuple[str, ...], dict[Any, RunSummary]] = {}
    for summary in sorted(summaries, key=lambda s: (s.created or "", s.run_id)):
        out.setdefault(_key(summary), {})[summary.seed] = summary
    return out


def _mean(values: list[Any]) -> float | None:
    numbers = [n for n in (_number(v) for v in values) if n is not None]
    return sum(numbers) / len(numbers) if numbers else None


def _first_step(summary: RunSummary) -> dict[str, float] | None:
    """The first-step values of a run: the three losses (None without them) and the probes it recorded."""
    raw = summary.first_step
    if not isinstance(raw, dict):
        return None
    values = {k: _number(raw.get(k)) for k in FIRST_STEP_KEYS}
    if any(v is None for v in values.values()):
        return None
    probes = {k: _number(raw.get(k)) for k in PROBE_KEYS}
    return {**values, **{k: v for k, v in probes.items() if v is not None}}  # type: ignore[dict-item]


def first_step_close(a: float, b: float, rel: float = FIRST_STEP_REL) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b)) + FIRST_STEP_ABS


# -- writing ------------------------------------------------------------------------------------------------------
def _stat_entry(values: list[float], floor: float, override: float | None) -> dict[str, Any] | None:
    if not values:
        return None
    spread = statistics.stdev(values) if len(values) > 1 else None
    return _stat(sum(values) / len(values), spread, len(values), floor, override)


def _stat(value: float, spread: float | None, samples: int, floor: float, override: float | None) -> dict[str, Any]:
    """A statistical entry; ``tolerance = max(floor, NOISE_K * spread)`` unless overridden."""
    derived = max(floor, NOISE_K * spread) if spread is not None else floor
    return {
        "value": value,
        "spread": spread,
        "tolerance": derived if override is None else override,
        "samples": samples,
    }


def _exact_first_steps(samples: list[RunSummary]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per seed, the first-step losses, and per loss the relative tolerance of the exact check.

    The tolerance is ``FIRST_STEP_REL`` (``TEACHER_FIRST_STEP_REL`` for a KD entry's teacher-dependent losses),
    widened to ``NOISE_K`` times the largest relative spread measured between runs of one seed: a KD loss at the
    first step depends on the teacher, itself trained and so not bitwise the same on every CPU, while the supervised
    loss depends only on the seeded initialisation and the first batch (spread 0).
    """
    by_seed: dict[str, list[dict[str, float]]] = {}
    for summary in samples:
        values = _first_step(summary)
        if values is not None:
            by_seed.setdefault(str(summary.seed), []).append(values)
    # a probe is kept for a seed only where every run of that seed recorded it (runs of older versions did not)
    shared = {seed: {k: v for k, v in runs[0].items() if all(k in r for r in runs)} for seed, runs in by_seed.items()}
    names = [*FIRST_STEP_KEYS, *(k for k in PROBE_KEYS if any(k in v for v in shared.values()))]
    taught = any(summary.kd not in (None, "none") for summary in samples)
    rel = {k: TEACHER_FIRST_STEP_REL.get(k, FIRST_STEP_REL) if taught else FIRST_STEP_REL for k in names}
    for runs in by_seed.values():
        for name in names:
            values = [r[name] for r in runs if name in r]
            scale = max((abs(v) for v in values), default=0.0)
            if scale > FIRST_STEP_ABS:
                rel[name] = max(rel[name], NOISE_K * (max(values) - min(values)) / scale)
    return dict(sorted(shared.items())), rel


def _pairing(summary: RunSummary) -> tuple:
    """What a KD run and its run without KD must share for their difference to be a gain: the seed and the CPU
    settings that decide the floating-point rounding."""
    numerics = summary.numerics if isinstance(summary.numerics, dict) else {}
    return str(summary.seed), numerics.get("cpu_capability"), numerics.get("threads")


def _gains(samples: list[RunSummary], controls: list[RunSummary]) -> list[float]:
    """Per KD run, its Dice minus the mean Dice of the runs without KD with the same :func:`_pairing`."""
    control_dice: dict[tuple, list[float]] = {}
    for control in controls:
        dice = _number(control.dice_mean)
        if dice is not None:
            control_dice.setdefault(_pairing(control), []).append(dice)
    gains = []
    for sample in samples:
        dice, base = _number(sample.dice_mean), control_dice.get(_pairing(sample))
        if dice is not None and base:
            gains.append(dice - sum(base) / len(base))
    return gains


def _control_key(key: tuple[str, ...]) -> tuple[str, ...] | None:
    """The entry key of the same student without KD; None for an entry that is itself without KD."""
    return None if key[3] in ("none", "-") else (*key[:3], "none")


def _build_entry(
    key: tuple[str, ...], samples: list[RunSummary], override: dict[str, float], controls: list[RunSummary]
) -> dict[str, Any]:
    samples = sorted(samples, key=lambda s: (_seed_order(s.seed), s.run_id))
    params = sorted({s.params for s in samples if s.params is not None})
    gmacs = _mean([s.gmacs for s in samples])
    if len(params) > 1:
        raise BenchError(f"{key_text(key)}: runs disagree on the parameter count ({params}); no baseline written")
    devices = sorted({s.latency_device for s in samples if s.latency_device})
    first_step, first_step_rel = _exact_first_steps(samples)
    statistical = {}
    for metric in STAT_METRICS:
        values = [v for v in (_number(getattr(s, metric.metric)) for s in samples) if v is not None]
        stat = _stat_entry(values, FLOORS[metric.alias], override.get(metric.alias))
        if stat is not None:
            statistical[metric.metric] = stat
    if _control_key(key) is not None:
        gain = _stat_entry(_gains(samples, controls), FLOORS[GAIN.alias], override.get(GAIN.alias))
        if gain is not None:
            statistical[GAIN.metric] = gain
    return {
        **dict(zip(ENTRY_KEY, key)),
        "seeds": sorted({s.seed for s in samples}, key=_seed_order),
        "runs": [s.run_id for s in samples],
        "latency_device": ", ".join(devices) or None,
        "exact": {
            "params": params[0] if params else None,
            "gmacs": gmacs,
            "first_step": first_step,
            "first_step_rel": first_step_rel,
        },
        "statistical": statistical,
        "informational": {"latency_ms_median": _mean([s.latency_ms_median for s in samples])},
    }


def _sources(summaries: list[RunSummary]) -> dict[str, list]:
    def values(name: str) -> list:
        found = {(s.numerics or {}).get(name) for s in summaries}
        return sorted(v for v in found if v is not None)

    return {
        "seeds": sorted({s.seed for s in summaries}, key=_seed_order),
        "cpu_capability": values("cpu_capability"),
        "threads": values("threads"),
    }


def build_baseline(
    summaries: list[RunSummary], override: dict[str, float], torch_version: str | None
) -> dict[str, Any]:
    """A baseline from every complete run in ``summaries`` (all seeds, all stores pooled as noise samples)."""
    by_key: dict[tuple[str, ...], list[RunSummary]] = {}
    for summary in summaries:
        by_key.setdefault(_key(summary), []).append(summary)
    return {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch_version,
        "noise": {
            "k": NOISE_K,
            "floor": dict(FLOORS),
            "first_step_rel": FIRST_STEP_REL,
            "sources": _sources(summaries),
        },
        "entries": [
            _build_entry(key, by_key[key], override, by_key.get(_control_key(key) or (), [])) for key in sorted(by_key)
        ],
    }


def _pooled_stat(a: dict[str, Any], b: dict[str, Any], floor: float, override: float | None) -> dict[str, Any]:
    """Two statistical entries (mean, sample standard deviation, count) as one sample: exact, because these are
    sufficient statistics for both the pooled mean and the pooled standard deviation."""
    parts = [(int(x["samples"]), float(x["value"]), _number(x.get("spread")) or 0.0) for x in (a, b)]
    n = sum(count for count, _, _ in parts)
    mean = sum(count * value for count, value, _ in parts) / n
    # The sum of squares of every sample, recovered from each part's deviation and mean.
    squares = sum((count - 1) * sd**2 + count * value**2 for count, value, sd in parts)
    spread = math.sqrt(max(squares - n * mean * mean, 0.0) / (n - 1)) if n > 1 else None
    return _stat(mean, spread, n, floor, override)


def _pool_entry(
    entry: dict[str, Any], samples: list[RunSummary], override: dict[str, float], controls: list[RunSummary]
) -> dict[str, Any]:
    new = _build_entry(tuple(entry[k] for k in ENTRY_KEY), samples, override, controls)
    exact, new_exact = entry["exact"], new["exact"]
    if new_exact["params"] is not None and exact.get("params") not in (None, new_exact["params"]):
        raise BenchError(
            f"{key_text(entry)}: the new runs have {new_exact['params']} parameters, the baseline "
            f"{exact['params']}; a changed architecture needs a new baseline (--update without --pool)"
        )
    rel = dict(exact.get("first_step_rel") or {})
    first_step = dict(exact.get("first_step") or {})
    for seed, values in new_exact["first_step"].items():
        if seed not in first_step:
            first_step[seed] = values
            continue
        for name, value in values.items():
            stored = first_step[seed].get(name)
            scale = max(abs(value), abs(stored or 0.0))
            if stored is not None and scale > FIRST_STEP_ABS:
                rel[name] = max(rel.get(name, FIRST_STEP_REL), NOISE_K * abs(value - stored) / scale)
    statistical = dict(entry.get("statistical") or {})
    for metric in (*STAT_METRICS, GAIN):
        added, old = new["statistical"].get(metric.metric), statistical.get(metric.metric)
        if added and old:
            added = _pooled_stat(old, added, FLOORS[metric.alias], override.get(metric.alias))
        if added:
            statistical[metric.metric] = added
    seeds = sorted({*entry.get("seeds", []), *new["seeds"]}, key=_seed_order)
    return {
        **entry,
        "seeds": seeds,
        "runs": [*entry.get("runs", []), *new["runs"]],
        "exact": {**exact, "first_step": first_step, "first_step_rel": rel},
        "statistical": statistical,
    }


def pool_baseline(baseline: dict[str, Any], summaries: list[RunSummary], override: dict[str, float]) -> dict[str, Any]:
    """``baseline`` with ``summaries`` added as further noise samples (``bench check --update --pool``): runs from
    other machines or settings widen each entry's measured spread without the original runs at hand. Exact values
    (params, MACs, the reference checkpoint) are kept; entries the baseline lacks are added from the new runs."""
    by_key: dict[tuple[str, ...], list[RunSummary]] = {}
    for summary in summaries:
        by_key.setdefault(_key(summary), []).append(summary)
    entries = {tuple(e[k] for k in ENTRY_KEY): e for e in baseline["entries"]}
    for key, samples in by_key.items():
        controls = by_key.get(_control_key(key) or (), [])
        entries[key] = (
            _pool_entry(entries[key], samples, override, controls)
            if key in entries
            else _build_entry(key, samples, override, controls)
        )
    sources = baseline.get("noise", {}).get("sources", {})
    added = _sources(summaries)
    merged = {name: sorted({*sources.get(name, []), *added[name]}, key=_seed_order) for name in added}
    return {
        **baseline,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "noise": {**baseline.get("noise", {}), "sources": merged},
        "entries": [entries[key] for key in sorted(entries)],
    }


def write_baseline(path: Path, baseline: dict[str, Any]) -> None:
    atomic_write_json(path, baseline)


# -- reading ------------------------------------------------------------------------------------------------------
class _BadValueError(Exception):
    """A value of the baseline that is not what ``bench check --update`` writes; its message names the key."""


def _is_number(value: Any) -> bool:
    """A finite JSON number; an integer past 64 bits (``1`` and 400 zeros) is not one a run writes."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) < 2**63 if isinstance(value, int) else math.isfinite(value)


def _want(ok: bool, where: str, what: str, value: Any) -> None:
    if not ok:
        shown = json.dumps(value)
        raise _BadValueError(f"{where} must be {what}, got {shown if len(shown) <= 40 else shown[:40] + '...'}")


def _object(value: Any, where: str, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``value`` as a JSON object, every key known (a misspelt key would silently drop its check)."""
    _want(isinstance(value, dict), where, "an object", value)
    unknown = [k for k in value if keys is not None and k not in keys]
    if unknown:
        raise _BadValueError(f"{where} has the unknown key {unknown[0]!r} (known: {', '.join(keys or ())})")
    return value


def _optional_number(value: Any, where: str, minimum: float | None = None) -> None:
    ok = value is None or (_is_number(value) and (minimum is None or value >= minimum))
    _want(ok, where, "a finite number" + ("" if minimum is None else f" >= {minimum:g}") + " or null", value)


def _check_exact(exact: Any, where: str) -> int:
    """Validate an entry's ``exact`` object; the number of checks it defines."""
    exact = _object(exact, where, ("params", "gmacs", "first_step", "first_step_rel"))
    params = exact.get("params")
    _want(params is None or (isinstance(params, int) and not isinstance(params, bool) and 0 < params < 2**63),
          f"{where}.params", "a positive integer or null", params)  # fmt: skip
    _optional_number(exact.get("gmacs"), f"{where}.gmacs", 0)
    first_step = _object(exact.get("first_step") or {}, f"{where}.first_step")
    known = (*FIRST_STEP_KEYS, *PROBE_KEYS)
    for seed, values in first_step.items():
        values = _object(values, f"{where}.first_step.{seed}", known)
        for name in (*FIRST_STEP_KEYS, *(k for k in PROBE_KEYS if k in values)):
            _want(_is_number(values.get(name)), f"{where}.first_step.{seed}.{name}", "a finite number",
                  values.get(name))  # fmt: skip
    for name, rel in _object(exact.get("first_step_rel") or {}, f"{where}.first_step_rel", known).items():
        _want(_is_number(rel) and rel >= 0, f"{where}.first_step_rel.{name}", "a finite number >= 0", rel)
    return (params is not None) + (exact.get("gmacs") is not None) + sum(map(len, first_step.values()))


def _check_statistical(statistical: Any, where: str) -> int:
    statistical = _object(statistical, where, tuple(m.metric for m in (*STAT_METRICS, GAIN)))
    for name, stat in statistical.items():
        stat = _object(stat, f"{where}.{name}", ("value", "spread", "tolerance", "samples"))
        for key in ("value", "tolerance"):
            _want(_is_number(stat.get(key)) and (key == "value" or stat[key] >= 0), f"{where}.{name}.{key}",
                  "a finite number" + (" >= 0" if key == "tolerance" else ""), stat.get(key))  # fmt: skip
        _optional_number(stat.get("spread"), f"{where}.{name}.spread", 0)
        samples = stat.get("samples")
        _want(isinstance(samples, int) and not isinstance(samples, bool) and samples >= 1, f"{where}.{name}.samples",
              "a whole number >= 1", samples)  # fmt: skip
    return len(statistical)


_ENTRY_KEYS = (*ENTRY_KEY, "seeds", "runs", "latency_device", "exact", "statistical", "informational")


def _check_entry(entry: Any, where: str) -> None:
    """Validate one entry: the types ``bench check --update`` writes, and at least one check."""
    entry = _object(entry, where, _ENTRY_KEYS)
    for key in ENTRY_KEY:
        _want(isinstance(entry.get(key), str), f"{where}.{key}", "a string", entry.get(key))
    where = f"{where} ({key_text(entry)})"
    for key in ("seeds", "runs"):
        _want(isinstance(entry.get(key, []), list), f"{where}.{key}", "a list", entry.get(key))
    _want(isinstance(entry.get("latency_device"), str | None), f"{where}.latency_device", "a string or null",
          entry.get("latency_device"))  # fmt: skip
    checks = _check_exact(entry.get("exact"), f"{where}.exact")
    checks += _check_statistical(entry.get("statistical"), f"{where}.statistical")
    informational = _object(entry.get("informational") or {}, f"{where}.informational", ("latency_ms_median",))
    _optional_number(informational.get("latency_ms_median"), f"{where}.informational.latency_ms_median", 0)
    if not checks:
        raise _BadValueError(f"{where} defines no check (no params, gmacs, first_step or statistical metric)")


def _check_reference(reference: Any) -> None:
    reference = _object(reference, "reference")
    for key in ("run_id", "model", "weights"):
        _want(isinstance(reference.get(key), str), f"reference.{key}", "a string", reference.get(key))
    _object(reference.get("config"), "reference.config")
    per_case = reference.get("per_case")
    _want(isinstance(per_case, list) and per_case != [], "reference.per_case", "a non-empty list", per_case)
    for i, row in enumerate(per_case):
        row = _object(row, f"reference.per_case[{i}]", ("case", "label", "dice", "hd95"))
        _want(isinstance(row.get("case"), str), f"reference.per_case[{i}].case", "a string", row.get("case"))
        _want(isinstance(row.get("label"), int) and not isinstance(row.get("label"), bool),
              f"reference.per_case[{i}].label", "a whole number", row.get("label"))  # fmt: skip
        for key in ("dice", "hd95"):
            _optional_number(row.get(key), f"reference.per_case[{i}].{key}")


def load_baseline(path: Path) -> dict[str, Any]:
    """Read and validate a baseline file; any problem is a usage error naming the file and the key. A baseline
    that defines no check (no entries, or an entry without one) is refused: a gate that checks nothing passes."""
    try:
        with too_deep_as_error(f"baseline {path}"):
            data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        hint = f"create it with `bench check --baseline {path} --update`"
        raise BenchError(f"baseline {path} does not exist; {hint}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BenchError(f"cannot read baseline {path}: {err}") from None
    except ValueError as err:
        raise BenchError(f"baseline {path} is not valid JSON: {err}") from None
    if isinstance(data, dict) and data.get("format") == FORMAT_V1:
        raise BenchError(
            f"baseline {path} has the old format {FORMAT_V1} (no measured noise); write it again with "
            f"`bench check --baseline {path} --update --results DIR ...` from runs of several seeds"
        )
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BenchError(f'baseline {path} is not a {FORMAT} file (its "format" field is missing or different)')
    entries = data.get("entries")
    if not isinstance(entries, list):
        raise BenchError(f'baseline {path}: "entries" must be a list of entry objects')
    if not entries:
        raise BenchError(
            f"baseline {path} has no entries, so it checks nothing; write it with `bench check --baseline {path} "
            "--update` from complete runs"
        )
    try:
        for i, entry in enumerate(entries):
            _check_entry(entry, f"entries[{i}]")
        if data.get("reference") is not None:
            _check_reference(data["reference"])
    except _BadValueError as err:
        raise BenchError(f"baseline {path}: {err}") from None
    return data


# -- comparing ----------------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """One row of the check table; ``failed`` marks a regression; ``verdict`` explains it in words."""

    key: str
    kind: str  # exact, statistical or informational
    metric: str
    baseline: Any
    now: Any
    allowed: str
    status: str
    failed: bool
    verdict: str = ""


@dataclass
class CheckResult:
    rows: list[Comparison]
    missing: list[str]
    not_in_baseline: list[str]

    @property
    def regressions(self) -> list[Comparison]:
        return [r for r in self.rows if r.failed]


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def _statistical(key: str, metric: StatMetric, stat: dict, now: float | None, override: float | None) -> Comparison:
    base = float(stat["value"])
    tolerance = float(stat["tolerance"]) if override is None else override
    spread = _number(stat.get("spread"))
    if override is not None:
        origin = "--tolerance"
    elif spread is None:
        origin = "floor; spread not measured"
    else:
        origin = f"{NOISE_K:g} x spread {spread:.{metric.digits}f}, floor {FLOORS[metric.alias]:g}"
    allowed = f"± {_fmt(tolerance, metric.digits)} ({origin})"
    if now is None:
        return Comparison(
            key, "statistical", metric.metric, base, None, allowed, "missing", True, f"{metric.label} missing now"
        )
    worse = (base - now) if metric.higher_is_better else (now - base)
    eps = 1e-12 * max(1.0, abs(base))
    text = (
        f"{metric.label} {_fmt(now, metric.digits)} vs baseline {_fmt(base, metric.digits)} "
        f"± {_fmt(tolerance, metric.digits)} ({origin})"
    )
    if worse > tolerance + eps:
        return Comparison(key, "statistical", metric.metric, base, now, allowed, "REGRESSED", True,
                          f"{text}: worse by {worse:.{metric.digits}f}, beyond the noise")  # fmt: skip
    if -worse > tolerance + eps:
        return Comparison(key, "statistical", metric.metric, base, now, allowed, "improved", False,
                          f"{text}: better than the noise allows; consider --update")  # fmt: skip
    return Comparison(key, "statistical", metric.metric, base, now, allowed, "ok", False, f"{text}: within noise")


def _exact_rows(key: str, exact: dict, current: dict[Any, RunSummary]) -> list[Comparison]:
    rows = []
    runs = [current[s] for s in sorted(current, key=_seed_order)]
    params = exact.get("params")
    if params is not None:
        now = runs[0].params
        ok = now == params
        rows.append(Comparison(key, "exact", "params", params, now, "== baseline", "ok" if ok else "CHANGED", not ok,
                               f"params {now} vs {params}"))  # fmt: skip
    gmacs = _number(exact.get("gmacs"))
    if gmacs is not None:
        now = _number(runs[0].gmacs)
        ok = now is not None and abs(now - gmacs) <= GMACS_REL * abs(gmacs)
        rows.append(Comparison(key, "exact", "gmacs", gmacs, now, f"rel {GMACS_REL:g}", "ok" if ok else "CHANGED",
                               not ok, f"GMACs {now} vs {gmacs}"))  # fmt: skip
    rel = {**dict.fromkeys((*FIRST_STEP_KEYS, *PROBE_KEYS), FIRST_STEP_REL), **(exact.get("first_step_rel") or {})}
    for seed_text, base_values in sorted((exact.get("first_step") or {}).items()):
        run = next((r for s, r in current.items() if str(s) == seed_text), None)
        if run is None:
            continue
        now_values = _first_step(run)
        for name in (*FIRST_STEP_KEYS, *(k for k in PROBE_KEYS if k in base_values)):
            base = float(base_values[name])
            now = None if now_values is None else now_values.get(name)
            ok = now is not None and first_step_close(base, now, float(rel[name]))
            rows.append(Comparison(
                key, "exact", f"first_step.{name} (seed {seed_text})", base, now, f"rel {float(rel[name]):.2g}",
                "ok" if ok else "CHANGED", not ok,
                f"first-step {name} {now!r} vs {base!r}" + ("" if ok else ": the loss itself changed"),
            ))  # fmt: skip
    return rows


def _latency_row(key: str, entry: dict, current_runs: list[RunSummary],
                 latency_ratio: float | None) -> Comparison | None:  # fmt: skip
    base = _number((entry.get("informational") or {}).get("latency_ms_median"))
    if base is None:
        return None
    now = _mean([r.latency_ms_median for r in current_runs])
    devices = ", ".join(sorted({r.latency_device for r in current_runs if r.latency_device})) or None
    same_device = not entry.get("latency_device") or entry.get("latency_device") == devices

    def row(allowed: str, status: str, failed: bool, verdict: str) -> Comparison:
        return Comparison(key, "informational", "latency_ms_median", base, now, allowed, status, failed, verdict)

    if now is None:
        return row("-", "not recorded", False, "latency not recorded now")
    ratio = now / base if base > 0 else math.nan
    text = f"latency x{ratio:.3f} of baseline"
    if latency_ratio is None:
        return row("-", "info", False, f"{text} (informational; --latency-ratio R makes it a check)")
    if not same_device:
        return row("-", "other device", False, f"{text} on another device: not compared")
    failed = not ratio <= latency_ratio
    return row(f"<= x{latency_ratio:g}", "SLOWER" if failed else "ok", failed, text)


def _gain_now(current: dict[Any, RunSummary], controls: dict[Any, RunSummary]) -> float | None:
    """The mean over the seeds both have of (Dice with KD - Dice without); None without such a seed. The latest
    runs of one results store share their CPU settings, so the seed pairs them."""
    diffs = []
    for seed, run in current.items():
        kd, control = _number(run.dice_mean), _number(controls[seed].dice_mean) if seed in controls else None
        if kd is not None and control is not None:
            diffs.append(kd - control)
    return sum(diffs) / len(diffs) if diffs else None


def compare(baseline: dict[str, Any], summaries: list[RunSummary], override: dict[str, float] | None = None,
            latency_ratio: float | None = None) -> CheckResult:  # fmt: skip
    """Check the latest results against every baseline entry. ``override`` is by alias (``dice``, ``hd95``)."""
    override = override or {}
    latest = latest_runs(summaries)
    rows: list[Comparison] = []
    missing: list[str] = []
    for entry in baseline["entries"]:
        key = tuple(entry[k] for k in ENTRY_KEY)
        current = latest.get(key, {})
        if not current:
            missing.append(key_text(key))
            continue
        text = key_text(key)
        runs = [current[s] for s in sorted(current, key=_seed_order)]
        rows.extend(_exact_rows(text, entry.get("exact") or {}, current))
        for metric in STAT_METRICS:
            stat = (entry.get("statistical") or {}).get(metric.metric)
            if stat is not None:
                now = _mean([getattr(r, metric.metric) for r in runs])
                rows.append(_statistical(text, metric, stat, now, override.get(metric.alias)))
        gain = (entry.get("statistical") or {}).get(GAIN.metric)
        if gain is not None:
            controls = latest.get(_control_key(key) or (), {})
            rows.append(_statistical(text, GAIN, gain, _gain_now(current, controls), override.get(GAIN.alias)))
        latency = _latency_row(text, entry, runs, latency_ratio)
        if latency is not None:
            rows.append(latency)
    known = {tuple(e[k] for k in ENTRY_KEY) for e in baseline["entries"]}
    return CheckResult(rows, missing, [key_text(k) for k in sorted(latest) if k not in known])
