"""Checks of a whole grid before anything is written: every model, teacher and KD method by name and arguments,
and every network on the training and inference patches of the protocol it runs with."""

from __future__ import annotations

from bench.errors import BenchError
from bench.grid.spec import GridSpec
from bench.networks import check_model_fits
from bench.training.config import check_teacher_config


def check_grid(spec: GridSpec) -> None:
    """Every model (as a student, and as a teacher under each protocol it runs with) and KD method of ``spec``."""
    from bench.components.factory_args import check_component
    from bench.components.syntax import Component, parse_component

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
    if spec.distils:
        for name, kwargs in spec.config.kd_kwargs.items():
            check_component(Component(name, kwargs), "kd", f"preset key kd_kwargs.{name}")
