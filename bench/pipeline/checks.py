"""Checks of a whole grid before anything is written: every model, teacher and KD method by name and arguments,
and every network on the training and inference patches of the protocol it runs with."""

from __future__ import annotations

import inspect

import models
from bench.errors import BenchError
from bench.grid.spec import GridSpec
from bench.profiling.profile import check_patch, check_runs_on_patch
from bench.training.config import RunConfig, check_teacher_config


def model_kwargs(name: str, config: RunConfig) -> dict:
    """Factory arguments of ``name`` under ``config``: the preset's width (for models whose factory takes
    ``base_channels``), then the preset's ``[model_kwargs.<name>]`` table."""
    params = inspect.signature(models.model_info(name).factory).parameters
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
    params = inspect.signature(models.model_info(name).factory).parameters
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


def check_grid(spec: GridSpec) -> None:
    """Every model (as a student, and as a teacher under each protocol it runs with) and KD method of ``spec``."""
    from bench.arguments import check_component
    from bench.components import parse_component

    names = [(m, "--models", spec.config) for m in spec.models]
    if spec.distils:
        arg = "--teacher" if spec.teachers else "preset key teacher"
        if spec.teacher_checkpoint is not None and len(spec.teacher_names) > 1:
            raise BenchError(f"--teacher-checkpoint loads one teacher; {arg} names {len(spec.teacher_names)}")
        if spec.teacher_config is not None:
            check_teacher_config(spec.config, spec.teacher_config, "teacher protocol")
        # A teacher trains under its own protocol and runs on the students' patches when it teaches.
        teacher_config = spec.own_teacher_config
        configs = [spec.config] if teacher_config is spec.config else [teacher_config, spec.config]
        names += [(t, arg, c) for t in spec.teacher_names for c in configs]
    for text, arg, config in names:
        component = check_component(parse_component(text, "model", arg), "model", arg)
        check_model_fits(component.name, component.kwargs, config)
    for kd in spec.kds:
        if kd != "none":
            check_component(parse_component(kd, "kd", "--kd"), "kd", "--kd")
