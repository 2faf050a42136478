"""The one place where ``bench`` turns a model name into a network: its factory arguments under a preset, building
it, loading a weights file into it, and checking that it suits a patch. Each failure is one line naming the model
and, for weights, the file.

Weights files are read weights-only (:mod:`bench.training.checkpoint`) in any of the formats of
:mod:`bench.official_weights`: our checkpoints, plain state dicts and the official LCOV-Net / U-Net code's state
dicts; the loaders return which one they read.

``bench.components.static_names`` checks patches without importing torch through :func:`check_stride`, so this
module imports torch and the model registry only inside the functions that need them.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import TYPE_CHECKING

from bench import console
from bench.errors import BenchError

if TYPE_CHECKING:
    from torch import Tensor, nn

    from bench.training.config import RunConfig


def _factory_params(name: str) -> dict[str, inspect.Parameter]:
    import models

    return dict(inspect.signature(models.model_info(name).factory).parameters)


def model_kwargs(name: str, config: RunConfig) -> dict:
    """Factory arguments of ``name`` under ``config``: the preset's width (for models whose factory takes
    ``base_channels``), then the preset's ``[model_kwargs.<name>]`` table."""
    params = _factory_params(name)
    width = {"base_channels": config.base_channels} if config.base_channels > 0 and "base_channels" in params else {}
    return {**width, **config.model_kwargs.get(name, {})}


def own_model_kwargs(name: str, config: RunConfig, own: dict) -> dict:
    """The preset's factory arguments of ``name`` (:func:`model_kwargs`) with the model's own (``name:key=value``)
    over them; own ``channels`` replace the preset's ``base_channels`` (a factory takes one or the other)."""
    preset = model_kwargs(name, config)
    if "channels" in own:
        preset.pop("base_channels", None)
    return {**preset, **own}


def check_model_kwargs(name: str, config: RunConfig) -> None:
    """A preset's ``[model_kwargs.<name>]`` keys must be arguments of that model's factory."""
    params = _factory_params(name)
    unknown = sorted(set(config.model_kwargs.get(name, {})) - set(params))
    if unknown:
        raise BenchError(
            f"preset key model_kwargs.{name}: {', '.join(unknown)} not an argument of {name} "
            f"(its arguments: {', '.join(p for p in params if p not in ('in_channels', 'num_classes'))})"
        )


def check_model_fits(name: str, own: dict, config: RunConfig) -> None:
    """The preset's arguments of ``name`` are its factory's, and it runs on the training and inference patches."""
    check_model_kwargs(name, config)
    check_patch(name, tuple(config.patch))
    check_patch(name, tuple(config.eval_patch()))
    kwargs = own_model_kwargs(name, config, own)
    check_runs_on_patch(name, tuple(config.patch), config.batch_size, train=True, **kwargs)
    check_runs_on_patch(name, tuple(config.eval_patch()), config.sw_batch_size, train=False, **kwargs)


def build_model(name: str, in_channels: int, classes: int, **kwargs) -> nn.Module:
    """``models.create_model`` with a missing dependency turned into a one-line usage error (an unknown name is
    converted where every error of the model layer is, in ``bench/cli.py``)."""
    import models

    try:
        return models.create_model(name, in_channels=in_channels, num_classes=classes, **kwargs)
    except ImportError as err:
        raise BenchError(f"model {name} needs an optional dependency: {err}") from None
    except (RuntimeError, ValueError, TypeError, OverflowError) as err:  # arguments the factory cannot build with
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BenchError(f"model {name} cannot be built with {kwargs or 'its defaults'}: {first[:200]}") from None


def _patch_error(name: str, patch: tuple[int, ...] | list[int], problem: str) -> BenchError:
    return BenchError(f"patch {'x'.join(map(str, patch))} does not suit {name}: {problem}")


def check_stride(name: str, patch: tuple[int, ...] | list[int], stride: tuple[int, ...]) -> None:
    """A patch side that is not a multiple of the network's total ``stride`` is a usage error naming the multiple."""
    if any(p % s for p, s in zip(patch, stride)):
        raise _patch_error(name, patch, f"each side must be a multiple of its stride {'x'.join(map(str, stride))}")


def check_patch(name: str, patch: tuple[int, ...]) -> None:
    """:func:`check_stride` with the registered model's stride."""
    import models

    check_stride(name, patch, models.model_info(name).stride)


def check_runs_on_patch(name: str, patch: tuple[int, ...], batch: int = 1, train: bool = True, **kwargs) -> None:
    """One forward pass of ``name`` on a ``batch`` of ``patch``-sized inputs on the meta device (shapes only: no
    memory, no arithmetic), so that a patch too small for a network's pooling or normalisation is a one-line error
    before any training rather than a traceback in the middle of it."""
    import torch

    try:
        with torch.device("meta"):
            model = build_model(name, 1, 2, **kwargs).train(train)
        # The forward runs outside the device context, whose Python hook on every torch call made it 5x slower
        # (lcovnet: 1.8 s against 0.37 s on a 2 x 32^3 batch).
        model(torch.empty(batch, 1, *patch, device="meta"))
    except NotImplementedError:
        return  # an operation without a meta kernel: the network is checked when it runs
    except (RuntimeError, ValueError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "meta" in message:
            return  # a data-dependent operation (.item()) that shapes alone cannot answer
        raise _patch_error(name, patch, message) from None


def load_model(
    name: str, in_channels: int, classes: int, path: Path, what: str, hint: str = "", **kwargs
) -> tuple[nn.Module, str]:
    """``name`` built with ``kwargs`` and the weights file ``path`` loaded into it (:func:`load_weights_into`);
    returns the network and the format the file was read in."""
    model = build_model(name, in_channels, classes, **kwargs)
    target = f"{name} with {in_channels} input channel(s) and {classes} classes"
    return model, load_weights_into(model, name, path, what, hint, target=target)


def load_weights_into(
    model: nn.Module, name: str, path: Path, what: str, hint: str = "", target: str | None = None
) -> str:
    """Load the weights file ``path`` into ``model``, the registered network ``name``; returns the format read (for
    instance ``"official LCOV-Net state dict"``).

    Every failure is one line starting with ``what`` and the file and ending with ``hint``: a file refused or not
    weights (:func:`bench.training.checkpoint.read_weights`), names of no known format, or tensors that do not fit
    ``target`` (default ``name``), naming the first mismatch with both shapes.
    """
    from bench.official_weights import to_our_names
    from bench.training.checkpoint import read_weights

    weights, container = read_weights(path, what, hint)
    state, found, names = to_our_names(weights, container, name, set(model.state_dict()), f"{what} {path}", hint)
    problem = _mismatch(model.state_dict(), state, names)
    if problem:
        raise BenchError(f"{what} {path} does not fit {target or name}: {problem}{hint}")
    model.load_state_dict(state)
    return found


def _mismatch(expected: dict[str, Tensor], found: dict[str, Tensor], names: dict[str, str]) -> str | None:
    """The first difference between a network's state dict and a file's converted one (``names``: our name -> the
    file's), with how many more there are."""

    def named(key: str) -> str:
        return key if names[key] == key else f"{names[key]} ({key} here)"

    shapes = [
        f"{named(key)} has shape {list(found[key].shape)} in the file but {list(expected[key].shape)} in the network"
        for key in expected
        if key in found and found[key].shape != expected[key].shape
    ]
    missing = [f"{key} is missing from the file" for key in expected if key not in found]
    unexpected = [f"{named(key)} in the file is not in the network" for key in found if key not in expected]
    problems = shapes + missing + unexpected
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more difference(s))" if len(problems) > 1 else ""
    return problems[0] + more


@functools.cache
def note_format(what: str, path: Path, found: str) -> None:
    """Say which format ``path`` was read in, once per process: ``bench run`` loads ``--teacher-checkpoint`` once to
    check it before training and again for each KD run."""
    console.note(f"bench: {what} {path}: read as {found}")
