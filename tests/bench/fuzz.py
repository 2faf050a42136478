"""A seeded fuzzer of ``bench``'s inputs (issue 26, part 4): random preset values, component strings, experiment
files, baselines, summaries and deployment specs, each fed to the real command.

Run as ``python -m tests.bench.fuzz --seed S --count N --data DIR --store DIR --sandbox DIR --report FILE`` (from the
repository root), it runs ``bench.cli.main`` on N generated inputs in this one process (an interpreter and torch
started once, not N times) and writes a JSON report of every input that broke the contract:

- the exit code is 0, 1, 2 or 3 (argparse's usage errors are 2);
- nothing raised out of ``main`` and nothing printed a traceback (no ``--debug`` is given);
- no file changed outside the input's results and output folders: under the sandbox (its input files and the
  working folder), in the data set and in the store it copied.

Every input gets a fresh copy of ``--store`` (a finished results store on ``--data``) as its results folder.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import sys
import time
import traceback
from pathlib import Path

MODELS = ["lcovnet", "unet3d", "nnunet", "hdcnet", "espnet3d", "dmfnet", "monai-unet", "unet3d-cicek"]
KDS = ["none", "ca", "ms", "kd", "at", "cwd", "dist", "emkd", "fitnet", "ifvd", "skd"]
ARG_KEYS = ["base_channels", "weight", "tau", "norm", "preset", "dropout", "channels", "deep_supervision",
            "scale_weights", "tau_fn", "x", "temperature"]  # fmt: skip
SCALARS = ["0", "-1", "1", "2", "4", "8", "32", "-0.0", "1e-9", "0.01", "0.5", "0.99", "1.5", "1e30", "nan", "inf",
           "-inf", "100000000000000000000", "10000000000000000000000", "true", "false", '"keep"', '"median"', '"x"',
           '""', '"adam"', "'sgd'", '"cosine"', '"ct"', '"window"', '"best"', '"student"', '"unet3d"', "[]", "{}",
           "[32, 32, 32]", "[3.75, 3.2, 3.2]", "[0, 0, 0]", "[1e-9, 1, 1]", '["y", "x"]', "[-175.0, 250.0]",
           '["liver"]', "[2048, 32, 32]", '"\\u0000"', '"a,b|c"', "1979-05-27", "0x1F", "1_000"]  # fmt: skip
JUNK = ",+:=|[]{}\"'\\ \t\x00\x7féλ/.-_#\n"


# -- generators -------------------------------------------------------------------------------------------------------
def toml_value(rng: random.Random, depth: int = 0) -> str:
    """A TOML value, sometimes odd: huge, non-finite, nested, of the wrong type, or not TOML at all."""
    r = rng.random()
    if r < 0.55 or depth > 2:
        return rng.choice(SCALARS)
    if r < 0.75:
        return "[" + ", ".join(toml_value(rng, depth + 1) for _ in range(rng.randint(0, 4))) + "]"
    if r < 0.82:
        levels = rng.choice([17, 60, 3000])
        return "[" * levels + "1" + "]" * levels
    if r < 0.92:
        keys = rng.sample([*MODELS[:3], "liver", "a", "SegKDSynthAbdomen", "dropout"], rng.randint(0, 2))
        return "{" + ", ".join(f'"{k}" = {toml_value(rng, depth + 1)}' for k in keys) + "}"
    return junk(rng, rng.randint(1, 12))


def junk(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(JUNK + "abc019") for _ in range(n))


def mutate_text(rng: random.Random, text: str) -> str:
    """``text`` with a few characters inserted, deleted or replaced."""
    chars = list(text)
    for _ in range(rng.randint(1, 3)):
        i = rng.randint(0, len(chars))
        op = rng.random()
        if op < 0.4:
            chars.insert(i, rng.choice(JUNK))
        elif op < 0.7 and chars:
            del chars[min(i, len(chars) - 1)]
        elif chars:
            chars[min(i, len(chars) - 1)] = rng.choice(JUNK)
    return "".join(chars)


def preset_overrides(rng: random.Random) -> list[str]:
    from bench.training.config import valid_keys

    items = []
    for _ in range(rng.randint(1, 3)):
        key = rng.choice([*valid_keys(), *(f"teacher.{k}" for k in ("iterations", "lr", "spacing")), junk(rng, 3)])
        value = plausible(rng, key.removeprefix("teacher.")) if rng.random() < 0.5 else toml_value(rng)
        items.append(f"{key}={value}" if rng.random() < 0.95 else junk(rng, 8))
    return items


def plausible(rng: random.Random, key: str) -> str:
    """A value near the smoke preset's for ``key``: often valid, so that the command goes on past the checks."""
    from bench.training.config import load_config

    value = getattr(load_config("smoke"), key, None)

    def near(v):
        if isinstance(v, bool):
            return rng.choice([v, not v])
        if isinstance(v, int):
            return rng.choice([v, v * 2, v // 2, v + 1, 0, 1, -1, 10 ** rng.randint(3, 9)])
        if isinstance(v, float):
            return rng.choice([v, v * 2, v / 2, 0.0, 1.0, 0.9, 1e-6])
        return v

    if isinstance(value, list):
        value = [near(v) for v in value] if rng.random() < 0.8 else value[: rng.randint(0, len(value))]
    elif isinstance(value, dict) or value is None:
        return toml_value(rng)
    else:
        value = near(value)
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def component(rng: random.Random, kind: str) -> str:
    names = MODELS if kind == "model" else KDS
    items = []
    for _ in range(rng.randint(1, 3)):
        parts = []
        for _ in range(1 if kind == "model" else rng.randint(1, 2)):
            name = rng.choice(names) if rng.random() < 0.9 else junk(rng, 4)
            for _ in range(rng.choice([0, 0, 1, 2])):
                values = [toml_value(rng, 2) for _ in range(rng.choice([1, 1, 2, 3]))]
                if rng.random() < 0.05:
                    values = [str(i) for i in range(rng.choice([150, 20_000]))]  # a sweep past the bound
                name += f":{rng.choice(ARG_KEYS)}={'|'.join(values)}"
            parts.append(name)
        items.append("+".join(parts))
    text = ",".join(items)
    return mutate_text(rng, text) if rng.random() < 0.2 else text


def experiment_text(rng: random.Random) -> str:
    if rng.random() < 0.35:
        return plausible_experiment(rng)
    lines = []
    if rng.random() < 0.8:
        lines.append(f"models = [{', '.join(json.dumps(component(rng, 'model')) for _ in range(rng.randint(1, 2)))}]")
    if rng.random() < 0.6:
        lines.append(f"kd = [{', '.join(json.dumps(component(rng, 'kd')) for _ in range(rng.randint(1, 2)))}]")
    for key in ("seeds", "folds", "description", "preset"):
        if rng.random() < 0.4:
            value = toml_value(rng) if rng.random() < 0.5 else rng.choice(["[0, 1]", "[0]", '"smoke"'])
            lines.append(f"{key} = {value}")
    if rng.random() < 0.5:
        lines.append("[overrides]")
        lines += [f"{o.partition('=')[0].strip() or 'x'} = {o.partition('=')[2] or '1'}" for o in preset_overrides(rng)]
    if rng.random() < 0.3:
        lines.append("[teacher]")
        lines.append(f"models = [{json.dumps(component(rng, 'model'))}]")
    text = "\n".join(lines) + "\n"
    return mutate_text(rng, text) if rng.random() < 0.15 else text


def plausible_experiment(rng: random.Random) -> str:
    """An experiment near a valid one (the smoke preset, lcovnet, one override), so that some reach the plan."""
    override = rng.choice(["iterations", "val_every", "patch", "overlap", "base_channels", "lr", "folds"])
    model = rng.choice(["lcovnet", "lcovnet:base_channels=4", "unet3d", component(rng, "model")])
    kd = rng.choice(["none", "ca", "ca:weight=0.1|0.2", "ms", component(rng, "kd")])
    lines = [
        'preset = "smoke"',
        f"models = [{json.dumps(model)}]",
        f"kd = [{json.dumps(kd)}]",
        f"seeds = {rng.choice(['[0]', '[0, 1]', '[3]'])}",
        "[overrides]",
        'spacing = "keep"',  # the store's cache holds the cases at their own spacing: no preprocessing
        f"{override} = {plausible(rng, override)}",
    ]
    text = "\n".join(lines) + "\n"
    return mutate_text(rng, text) if rng.random() < 0.2 else text


_RAW = ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400, "-1", "0", "true", "null", '"abc"', '""', "[]",
        "{}", '"1020000"', "[" * 5000 + "]" * 5000, "0.5", "2", "[1, 2, 3]", '{"x": 1}',
        "1.7976931348623157e308"]  # fmt: skip


def mutate_json(rng: random.Random, obj) -> str:
    """``obj`` (parsed JSON) with one to three of its values replaced, removed or renamed, as JSON text (non-finite
    numbers, 400-digit integers and deep nesting written as raw literals), sometimes cut short."""
    obj = json.loads(json.dumps(obj))
    raws: dict[str, str] = {}
    for _ in range(rng.randint(1, 3)):
        parent, key = _pick(rng, obj)
        if parent is None:
            continue
        op = rng.random()
        if op < 0.75:
            token = f"@@raw{len(raws)}@@"
            raws[token] = rng.choice(_RAW)
            parent[key] = token
        elif op < 0.9 and isinstance(parent, dict):
            del parent[key]
        elif isinstance(parent, dict):
            parent[junk(rng, 4)] = parent.pop(key)
    text = json.dumps(obj, indent=1)
    for token, raw in raws.items():
        text = text.replace(f'"{token}"', raw)
    if rng.random() < 0.1:
        text = text[: rng.randint(0, len(text))]
    return text


def _pick(rng: random.Random, obj):
    """A random (container, key) inside ``obj``."""
    parent, key = None, None
    node = obj
    for _ in range(rng.randint(1, 5)):
        if isinstance(node, dict) and node:
            parent, key = node, rng.choice(list(node))
        elif isinstance(node, list) and node:
            parent, key = node, rng.randrange(len(node))
        else:
            break
        node = parent[key]
    return parent, key


# -- running ----------------------------------------------------------------------------------------------------------
FAMILIES = ("preset", "component", "experiment", "baseline", "summary", "spec")


def make_input(rng: random.Random, family: str, case: Path, data: Path, store: Path, baseline: dict) -> list[str]:
    """The argv of one input of ``family``; its files are written under ``case`` (results in case/results, outputs
    in case/out: the folders the command may write)."""
    results = case / "results"
    shutil.copytree(store, results)
    run_args = ["--data", str(data), "--results", str(results), "--dry-run", "--device", "cpu"]
    # the settings the store's cases were cached with (tests/bench/runutil.py TINY_RUN): no preprocessing
    tiny = ["--preset", "smoke", "--set", 'spacing="keep"', "--set", "patch=[32, 32, 32]", "--set", "base_channels=4"]
    if family == "preset":
        sets = [a for o in preset_overrides(rng) for a in ("--set", o)]
        return ["run", "--models", "lcovnet", *tiny, *run_args, *sets]
    if family == "component":
        args = ["run", "--models", component(rng, "model"), *tiny, *run_args]
        if rng.random() < 0.7:
            args += ["--kd", component(rng, "kd")]
        if rng.random() < 0.3:
            args += ["--teacher", component(rng, "model")]
        return args
    if family == "experiment":
        path = case / "inputs" / "experiment.toml"
        path.parent.mkdir(parents=True)
        path.write_text(experiment_text(rng), encoding="utf-8", errors="surrogatepass")
        return ["run", "--experiment", str(path), *run_args]
    if family == "baseline":
        path = case / "inputs" / "baseline.json"
        path.parent.mkdir(parents=True)
        path.write_text(mutate_json(rng, baseline))
        return ["check", "--baseline", str(path), "--results", str(results)]
    (run,) = (results / "runs").iterdir()
    if family == "summary":
        name = rng.choice(["summary.json"] * 3 + ["per_case.csv", "train_log.csv", "export.json"])
        target = run / name
        if name.endswith(".json"):
            source = json.loads(target.read_text()) if target.is_file() else {"run_id": run.name, "variants": {}}
            target.write_text(mutate_json(rng, source))
        else:
            target.write_text(mutate_text(rng, target.read_text()))
        if rng.random() < 0.3:
            return ["check", "--baseline", str(case / "inputs" / "missing.json"), "--results", str(results)]
        formats = rng.choice(["csv", "csv,tex", "md"])
        return ["report", "--results", str(results), "--out", str(case / "out"), "--format", formats]
    spec = run / "preprocessing.json"
    spec.write_text(mutate_json(rng, json.loads(spec.read_text())))
    return ["predict", "--run", run.name, "--results", str(results), "--input", str(data / "imagesTs"), "--output",
            str(case / "out")]  # fmt: skip


def snapshot(root: Path, allowed: list[Path]) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if any(path == a or a in path.parents for a in allowed) or not path.is_file() or path.is_symlink():
            continue
        out[str(path.relative_to(root))] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def run_one(argv: list[str], cwd: Path) -> tuple[object, str, str | None]:
    """(exit code, captured stderr, traceback or None) of ``bench *argv`` in this process."""
    from bench.cli import main

    err, out = io.StringIO(), io.StringIO()
    code: object
    crash = None
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 2
            except Exception:
                code, crash = "raised", traceback.format_exc()
    finally:
        os.chdir(previous)
    return code, err.getvalue(), crash


def fuzz(seed: int, count: int, data: Path, store: Path, sandbox: Path, budget_s: float | None = None) -> dict:
    rng = random.Random(seed)
    (sandbox / "cwd").mkdir(parents=True, exist_ok=True)
    baseline_dir = sandbox / "baseline-source"
    from bench.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(["check", "--baseline", str(baseline_dir / "b.json"), "--update", "--results", str(store)])
    baseline = json.loads((baseline_dir / "b.json").read_text())
    findings, codes, tried, start = [], {}, 0, time.monotonic()
    for i in range(count):
        if budget_s is not None and time.monotonic() - start > budget_s:
            break
        family = FAMILIES[i % len(FAMILIES)]
        case = sandbox / f"case-{i}"
        argv = make_input(rng, family, case, data, store, baseline)
        allowed = [case / "results", case / "out"]
        before = {root: snapshot(root, allowed) for root in (sandbox, data, store)}
        code, stderr, crash = run_one(argv, sandbox / "cwd")
        after = {root: snapshot(root, allowed) for root in (sandbox, data, store)}
        tried += 1
        codes[f"{family} {code}"] = codes.get(f"{family} {code}", 0) + 1
        problems = []
        if code not in (0, 1, 2, 3):
            problems.append(f"exit code {code}")
        if crash or "Traceback" in stderr:
            problems.append("traceback")
        for root in before:
            changed = sorted(set(after[root].items()) ^ set(before[root].items()))
            if changed:
                problems.append(f"changed files outside its folders in {root}: {changed[:3]}")
        if problems:
            findings.append({"input": i, "family": family, "argv": [a[:300] for a in argv], "problems": problems,
                             "stderr": stderr[-1500:], "traceback": (crash or "")[-3000:]})  # fmt: skip
        shutil.rmtree(case, ignore_errors=True)
    return {"seed": seed, "tried": tried, "seconds": round(time.monotonic() - start, 1), "exit_codes": codes,
            "findings": findings}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--budget", type=float, help="stop starting inputs after this many seconds")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--sandbox", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    report = fuzz(args.seed, args.count, args.data, args.store, args.sandbox, args.budget)
    args.report.write_text(json.dumps(report, indent=1))
    print(f"{report['tried']} inputs in {report['seconds']} s, exit codes {report['exit_codes']}, "
          f"{len(report['findings'])} finding(s)", file=sys.__stderr__)  # fmt: skip


if __name__ == "__main__":
    main()
