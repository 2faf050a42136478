"""The arguments of registered models and KD methods, read from their factories: names, defaults and types from
the signature, meanings and the paper's values from the docstring. Checks components (:mod:`bench.components.syntax`)
against them.

The docstring convention (a model's factory function, a KD method's ``__init__``), one entry per argument::

    Args:
        weight: factor on the loss; None takes it from ``preset``. [paper: 0.1]
            Continuation lines are indented further.

``[paper: VALUE]`` marks the value the method's or model's paper uses, where it states one.
"""

from __future__ import annotations

import difflib
import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.components.syntax import NO_KD, Component, Kind, Sweep, format_value, make_sweep, parse_sweeps, unique
from bench.errors import BenchError

# Set by the benchmark, not by the user: the dataset's channels and classes, the networks' feature channels.
RESERVED = {"model": ("in_channels", "num_classes"), "kd": ("student_channels", "teacher_channels", "num_classes")}
_PAPER = re.compile(r"\s*\[paper:\s*([^\]]*)\]")
_UNIONS = (typing.Union, types.UnionType)
_VALUE_KINDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
_ENTRY = re.compile(r"(\w+)(?:\s*\([^)]*\))?:\s*(.*)\Z")
# Widths, sizes and weights of networks and losses stay far below this; a value past it (10^20 channels) would fail
# deep inside torch instead.
MAX_ARGUMENT = 1e6


@dataclass(frozen=True)
class Argument:
    """One argument a model factory or KD method takes."""

    name: str
    default: Any  # inspect.Parameter.empty when required
    help: str = ""  # from the docstring's Args section
    paper: str | None = None  # the paper's value, from a [paper: ...] marker

    @property
    def default_text(self) -> str:
        if self.default is inspect.Parameter.empty:
            return "(required)"
        if self.default is None:
            return "None"
        try:
            return format_value(self.default)
        except TypeError:
            return repr(self.default)


def factory(kind: Kind, name: str) -> Callable:
    """The callable a component's arguments go to: a model's factory, a KD method's ``__init__``."""
    if kind == "model":
        import models

        return models.model_info(name).factory
    import kd_methods

    return kd_methods.kd_method_info(name).cls.__init__


def arguments(kind: Kind, name: str) -> list[Argument]:
    """The user-settable arguments of a registered model (``kind="model"``) or KD method (``"kd"``), in order."""
    if kind == "kd" and name == NO_KD:
        return []
    fn = factory(kind, name)
    docs = docstring_args(inspect.getdoc(fn) or "")
    return [
        Argument(p.name, p.default, *docs.get(p.name, ("", None)))
        for p in inspect.signature(fn).parameters.values()
        if p.name not in (*RESERVED[kind], "self") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def docstring_args(doc: str) -> dict[str, tuple[str, str | None]]:
    """``name -> (meaning, paper value or None)`` from a Google-style ``Args:`` section."""
    entries: dict[str, list[str]] = {}
    lines = iter(inspect.cleandoc(doc).splitlines())
    for line in lines:
        if line.strip() == "Args:":
            break
    indent, current = None, None
    for line in lines:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            break
        indent = depth if indent is None else indent
        match = _ENTRY.match(line.strip())
        if depth == indent and match:
            current = match.group(1)
            entries[current] = [match.group(2)]
        elif current is not None:
            entries[current].append(line.strip())
    result = {}
    for name, parts in entries.items():
        text = " ".join(parts)
        paper = _PAPER.search(text)
        result[name] = (_PAPER.sub("", text).strip(), paper.group(1).strip() if paper else None)
    return result


def check_component(component: Component, kind: Kind, arg: str) -> Component:
    """``component`` with its values checked against the registered signature and coerced (an int where a float
    is expected becomes a float, so ``weight=1`` and ``weight=1.0`` are one run); else a BenchError naming ``arg``,
    the key and every valid key with its default."""
    _check_name(component, kind, arg)
    if kind == "kd" and component.name == NO_KD:
        return component
    if component.is_composition:
        parts = {p.name: check_component(p, kind, arg).kwargs for p in component.parts}
        return Component(component.name, {name: kw for name, kw in parts.items() if kw})
    fn = factory(kind, component.name)
    params = inspect.signature(fn).parameters
    open_ended = any(p.kind == p.VAR_KEYWORD for p in params.values())
    valid = arguments(kind, component.name)
    by_name = {a.name: a for a in valid}
    hints = _type_hints(fn)
    kwargs = {}
    for key, value in component.kwargs.items():
        if key not in by_name:
            if open_ended and key not in RESERVED[kind]:
                kwargs[key] = value
                continue
            close = difflib.get_close_matches(key, list(by_name), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            why = "is set by the benchmark" if key in RESERVED[kind] else "is not an argument"
            raise BenchError(f"{arg}: {component.name}: {key!r} {why}; {hint}{_listing(component.name, valid)}")
        expected = hints.get(key, _from_default(by_name[key].default))
        ok, typed = _coerce(expected, value)
        if not ok:
            raise BenchError(f"{arg}: {component.name}: {key} must be {_describe(expected)}, got "
                             f"{_shown(value)} ({_VALUE_KINDS.get(type(value), type(value).__name__)}); "
                             f"{_listing(component.name, valid)}")  # fmt: skip
        if _too_large(typed):
            raise BenchError(f"{arg}: {component.name}: {key} holds a number past {MAX_ARGUMENT:.0e} "
                             "(no network or KD method argument needs one)")  # fmt: skip
        kwargs[key] = typed
    return Component(component.name, kwargs)


def _shown(value: Any) -> str:
    """``value`` in the component syntax, or as Python writes it where the syntax has no form for it (a table from
    a deployment spec's JSON)."""
    try:
        return format_value(value)
    except TypeError:
        return repr(value)


def _too_large(value: Any) -> bool:
    if isinstance(value, list):
        return any(_too_large(v) for v in value)
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) > MAX_ARGUMENT


def resolve_sweeps(text: str, kind: Kind, arg: str) -> list[Sweep]:
    """:func:`bench.components.parse_sweeps` with every component checked (:func:`check_component`)."""
    return [make_sweep([check_component(c, kind, arg) for c in s.components]) for s in parse_sweeps(text, kind, arg)]


def resolve_components(text: str, kind: Kind, arg: str) -> list[Component]:
    """Every component ``text`` names, sweeps expanded and checked, each once, in order."""
    return unique(c for sweep in resolve_sweeps(text, kind, arg) for c in sweep.components)


def _check_name(component: Component, kind: Kind, arg: str) -> None:
    if kind == "kd" and component.name == NO_KD:
        return
    import kd_methods
    import models

    unknown = (models.UnknownModelError, kd_methods.UnknownKDMethodError)
    for part in component.name.split("+"):
        try:
            factory(kind, part)
        except unknown as err:
            raise BenchError(f"{arg}: {err}") from None


def _listing(name: str, valid: list[Argument]) -> str:
    if not valid:
        return f"{name} takes no arguments"
    return f"{name}'s arguments: " + ", ".join(f"{a.name}={a.default_text}" for a in valid)


def _type_hints(fn: Callable) -> dict[str, Any]:
    """Evaluated annotations, or none when one names a type imported only for type checkers (then each argument's
    default decides its type)."""
    try:
        return typing.get_type_hints(fn)
    except NameError:
        return {}


def _from_default(default: Any) -> Any:
    if default is inspect.Parameter.empty or default is None:
        return Any
    return list if isinstance(default, tuple) else type(default)


def _coerce(expected: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` (a TOML value) fits ``expected`` (a type hint), and the value widened to it."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is Any or expected is inspect.Parameter.empty:
        return True, value
    if origin in _UNIONS:
        for arm in args:
            ok, typed = _coerce(arm, value)
            if ok:
                return True, typed
        return False, value
    if expected is type(None):
        return value is None, value
    if expected is bool:
        return isinstance(value, bool), value
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if origin in (list, tuple, Sequence, typing.Sequence) or expected in (list, tuple):
        if not isinstance(value, list):
            return False, value
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            return False, value
        item = args[0] if args else Any
        typed = [_coerce(item, v) for v in value]
        return all(ok for ok, _ in typed), [v for _, v in typed]
    if isinstance(expected, type):
        return isinstance(value, expected), value
    return True, value


def _describe(expected: Any) -> str:
    """``expected`` in words: "a number", "a list of integers", "a string or a list of numbers"."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in _UNIONS:
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin in (list, tuple, Sequence, typing.Sequence) or expected in (list, tuple):
        return f"a list of {_plural(args[0]) if args else 'values'}"
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return words.get(expected, getattr(expected, "__name__", str(expected)))


def _plural(expected: Any) -> str:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (list, tuple, Sequence, typing.Sequence):
        return f"lists of {_plural(args[0]) if args else 'values'}"
    words = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
    return words.get(expected, "values")
