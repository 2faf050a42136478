"""One argument syntax for models, KD methods and teachers, and its canonical form (the syntax only: no torch; the
arguments are checked against the registries by :mod:`bench.components.factory_args`).

Grammar (``--models``, ``--kd``, ``--teacher`` and the lists of an experiment file)::

    list      := item ("," item)*                    lcovnet,nnunet:base_channels=16
    item      := part ("+" part)*                    ca:weight=0.1+ms      (KD methods only: one run, losses summed)
    part      := NAME (":" KEY "=" values)*          ms:norm=global:tau_fn=1
    values    := VALUE ("|" VALUE)*                  ca:weight=0.05|0.1|0.2  (a sweep: three components)

A VALUE is a TOML scalar or array: ``0.1`` float, ``16`` int, ``true``/``false``, ``"text"`` or ``'text'``,
``[16,32,64]``; a bare word that is not TOML (``global``) is a string. The separators ``, + : = |`` split only
outside brackets and quotes, so ``channels=[16,32,64]`` and ``name="a,b"`` are single values; a ``+`` joins parts
only where a name follows it (a letter), so ``1e+3`` stays a number. Quote the whole argument for the shell when it
holds ``|``, ``[`` or ``"`` (``--kd 'ca:weight=0.05|0.1'``).

Several swept keys give their product (``ca:weight=0.1|0.2+ms:norm=global|sample`` is four components). The
canonical form sorts the keys and writes each value in one way (``ca:weight=0.1+ms``), so it is stable for run
ids: ``format`` after ``parse`` gives the canonical text, and ``parse`` after ``format`` gives an equal component.
"""

from __future__ import annotations

import itertools
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.errors import BenchError
from bench.nesting import check_nesting, too_deep_as_error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Kind = Literal["model", "kd"]
NO_KD = "none"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BARE = re.compile(r"[A-Za-z0-9_./-]+\Z")  # a bare word (no quotes, brackets, spaces or separators)
# The most components one sweep may expand to: each is a training run, and the grid's bound is the same
# (bench.grid.spec.MAX_CELLS); past it the sweep is refused before it is expanded.
MAX_SWEEP = 10_000


@dataclass(frozen=True)
class Component:
    """A model or KD method with its arguments: ``Component("ca", {"weight": 0.1})``.

    A KD composition is named ``"ca+ms"`` and its ``kwargs`` map each part that has arguments to them
    (``{"ca": {"weight": 0.1}}``), the form ``kd_methods.create_kd_method(name, ..., **kwargs)`` takes.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_composition(self) -> bool:
        return "+" in self.name

    @property
    def parts(self) -> list[Component]:
        """The single methods of a composition (itself for a single method or model)."""
        if not self.is_composition:
            return [self]
        return [Component(part, dict(self.kwargs.get(part, {}))) for part in self.name.split("+")]

    def __str__(self) -> str:
        if self.is_composition:
            return "+".join(str(part) for part in self.parts)
        return self.name + "".join(f":{key}={format_value(self.kwargs[key])}" for key in sorted(self.kwargs))

    def __hash__(self) -> int:
        return hash(str(self))


@dataclass(frozen=True)
class Sweep:
    """One list item expanded: its components (one unless a value holds ``|``) and the swept keys, named
    ``part.key`` (``ca.weight``), in the order of the canonical text."""

    components: tuple[Component, ...]
    swept: tuple[str, ...] = ()
    text: str = ""  # canonical, with the alternatives: "ca:weight=0.05|0.1|0.2"

    def __str__(self) -> str:
        return self.text


def format_value(value: Any) -> str:
    """The canonical text of an argument value; :func:`parse_value` reads it back to an equal value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value if _is_bare(value) else _quoted(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_quoted(v) if isinstance(v, str) else format_value(v) for v in value) + "]"
    raise TypeError(f"no argument syntax for {type(value).__name__} values: {value!r}")


def parse_value(raw: str, where: str) -> Any:
    """A TOML value (``0.1``, ``[16,32]``, ``"x"``, ``true``), or a bare word as a string (``global``)."""
    text = raw.strip()
    if not text:
        raise BenchError(f"{where}: no value after '='")
    try:
        with too_deep_as_error(where):
            value = check_nesting(tomllib.loads(f"v = {text}")["v"], where)
    except tomllib.TOMLDecodeError:
        if _BARE.match(text):
            return text
        value = None
    if not _is_argument(value):  # not TOML, or TOML this syntax cannot write back (a date, an inline table)
        raise BenchError(f"{where}: {text!r} is not a value (a number, true/false, a word, a \"quoted string\" "
                         "or a [list])")  # fmt: skip
    return value


def _is_argument(value: Any) -> bool:
    """A value :func:`format_value` writes: a number, a boolean, a string, or a list of them."""
    if isinstance(value, list):
        return all(_is_argument(v) for v in value)
    return isinstance(value, bool | int | float | str)


def parse_sweeps(text: str, kind: Kind, arg: str) -> list[Sweep]:
    """Each comma-separated item of ``text`` expanded (syntax only); ``arg`` names the option in errors."""
    items = _split(text, ",", arg)
    if not any(item.strip() for item in items):
        raise BenchError(f"{arg}: no {'KD method' if kind == 'kd' else 'model'} given")
    return [_parse_item(item, kind, arg) for item in items]


def parse_components(text: str, kind: Kind, arg: str) -> list[Component]:
    """Every component ``text`` names, sweeps expanded, in order, each once (syntax only)."""
    return unique(c for sweep in parse_sweeps(text, kind, arg) for c in sweep.components)


def parse_component(text: str, kind: Kind, arg: str) -> Component:
    """Exactly one component (a teacher): no list and no sweep."""
    sweeps = parse_sweeps(text, kind, arg)
    if len(sweeps) != 1 or len(sweeps[0].components) != 1:
        raise BenchError(f"{arg} takes one {'KD method' if kind == 'kd' else 'model'}, without ',' or '|': {text!r}")
    return sweeps[0].components[0]


def unique(components: Iterator[Component] | list[Component]) -> list[Component]:
    """``components`` without repeats (by canonical text), first occurrence kept."""
    seen: dict[str, Component] = {}
    for c in components:
        seen.setdefault(str(c), c)
    return list(seen.values())


def make_sweep(components: list[Component]) -> Sweep:
    """The :class:`Sweep` of the product ``components`` (each once): the swept keys are those with more than one
    value, and the text lists each key's values in the order they first appear."""
    components = unique(components)
    fields: dict[str, dict[str, list[str]]] = {}
    for component in components:
        for part in component.parts:
            keys = fields.setdefault(part.name, {})
            for key in sorted(part.kwargs):
                text = format_value(part.kwargs[key])
                if text not in keys.setdefault(key, []):
                    keys[key].append(text)
    swept = tuple(f"{name}.{key}" for name, keys in fields.items() for key in sorted(keys) if len(keys[key]) > 1)
    text = "+".join(
        name + "".join(f":{key}=" + "|".join(keys[key]) for key in sorted(keys)) for name, keys in fields.items()
    )
    return Sweep(tuple(components), swept, text)


def _parse_item(item: str, kind: Kind, arg: str) -> Sweep:
    shown = item.strip() if len(item.strip()) <= 80 else item.strip()[:60] + "..."  # an error stays one short line
    where = f"{arg} {shown!r}"
    if not item.strip():
        raise BenchError(f"{arg}: empty entry in the list (two commas, or a comma at an end)")
    parts = [_parse_part(part, where) for part in _split_parts(item, where)]
    names = [name for name, _ in parts]
    if len(parts) > 1 and kind == "model":
        raise BenchError(f"{where}: '+' joins KD methods; a model is one network")
    if len(set(names)) != len(names):
        raise BenchError(f"{where}: a KD method appears twice in one composition")
    if NO_KD in names and (kind == "model" or len(parts) > 1 or parts[0][1]):
        raise BenchError(f"{where}: 'none' (no KD) takes no arguments and joins nothing")
    axes = [((name, key), values) for name, fields in parts for key, values in sorted(fields.items())]
    count = math.prod(len(values) for _, values in axes)
    if count > MAX_SWEEP:
        raise BenchError(f"{where}: the sweep makes {count:,} runs; at most {MAX_SWEEP:,} in one grid (each is a "
                         "training run); narrow it or split it over several commands")  # fmt: skip
    components = []
    for choice in itertools.product(*(values for _, values in axes)):
        kwargs: dict[str, dict[str, Any]] = {name: {} for name in names}
        for ((name, key), _), value in zip(axes, choice):
            kwargs[name][key] = value
        if len(names) == 1:
            components.append(Component(names[0], kwargs[names[0]]))
        else:
            components.append(Component("+".join(names), {n: kw for n, kw in kwargs.items() if kw}))
    return make_sweep(components)


def _parse_part(part: str, where: str) -> tuple[str, dict[str, list[Any]]]:
    name, *fields = (f.strip() for f in _split(part, ":", where))
    if not _NAME.match(name):
        raise BenchError(f"{where}: {name!r} is not a name (a letter, then letters, digits, '_', '-' or '.')")
    values: dict[str, list[Any]] = {}
    for f in fields:
        key, eq, raw = f.partition("=")
        key = key.strip()
        if not eq or not _KEY.match(key):
            raise BenchError(f"{where}: {f!r} is not KEY=VALUE (write {name}:key=value:key2=value2)")
        if key in values:
            raise BenchError(f"{where}: {name} sets {key} twice")
        values[key] = [parse_value(v, f"{where}: {key}") for v in _split(raw, "|", where)]
        if len(unique(Component(name, {key: v}) for v in values[key])) != len(values[key]):
            raise BenchError(f"{where}: {key} repeats a value in its sweep")
    return name, values


def _split_parts(item: str, where: str) -> list[str]:
    """``+`` splits where a name follows (a letter) and a value does not start (after ``=`` or ``|``)."""

    def joins(text: str, i: int) -> bool:
        after = text[i + 1 :].lstrip()[:1]
        before = text[:i].rstrip()[-1:]
        return after.isalpha() and before not in ("", "=", "|")

    return _split(item, "+", where, joins)


def _split(text: str, sep: str, where: str, accept=None) -> list[str]:
    """``text`` split at each ``sep`` outside brackets and quotes (and where ``accept(text, i)`` holds)."""
    pieces, start, depth, quote, i = [], 0, 0, "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:
                raise BenchError(f"{where}: {ch!r} without its opening bracket")
        elif ch == sep and depth == 0 and (accept is None or accept(text, i)):
            pieces.append(text[start:i])
            start = i + 1
        i += 1
    if quote or depth:
        raise BenchError(f"{where}: unclosed {quote or 'bracket'}")
    return [*pieces, text[start:]]


def _is_bare(text: str) -> bool:
    if not _BARE.match(text):
        return False
    try:
        tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return True
    return False  # it reads as a number, a date or a boolean: it needs quotes to stay a string


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped)
    return f'"{escaped}"'
