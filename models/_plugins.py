"""Import a registry package's own modules, then the third-party modules named by an entry-point group."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Iterable
from importlib.metadata import entry_points

log = logging.getLogger(__name__)


def import_modules_and_plugins(package: str, path: Iterable[str], group: str) -> None:
    """Import every public module of ``package`` (on ``path``), then each entry point of ``group``.

    The package's own modules must import; a plugin that fails to import (a missing dependency, a syntax error, an
    exception at import) is reported as a warning and skipped, so one broken package cannot break ``bench list``
    or any other command.
    """
    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
    for ep in entry_points(group=group):
        try:
            importlib.import_module(ep.value)
        except Exception as err:  # a plugin's import error can be of any type
            log.warning("plugin %r (%s, entry point group %s) was not loaded: %s: %s",
                        ep.name, ep.value, group, type(err).__name__, err)  # fmt: skip
