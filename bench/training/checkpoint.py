"""Checkpoints that survive a kill at any moment, carrying everything needed to resume exactly."""

from __future__ import annotations

import contextlib
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.atomic import atomic_path
from bench.errors import BenchError


class CheckpointError(BenchError):
    """A checkpoint or weights file that cannot be loaded safely; bad input, exit code 2."""


def rng_state() -> dict[str, Any]:
    """Every RNG state, as tensors, numbers and tuples only, so that checkpoints load with ``weights_only=True``."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}  # fmt: skip
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` written atomically (``bench.atomic``) and read back: every record of its zip archive against
    its CRC. torch's zip writer hides the errno of a full disk ("unexpected pos"); the writer tells it by the free
    space left."""
    with atomic_path(path, verify=zip_intact) as tmp:
        torch.save(payload, tmp)


def zip_intact(path: Path) -> None:
    """Raise unless every record of the torch (zip) file at ``path`` is whole and matches its CRC."""
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
    if bad is not None:
        raise zipfile.BadZipFile(f"record {bad} fails its CRC check")


def safe_load(path: Path, what: str, hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)``: tensors, numbers, strings and containers only, never code.

    Any failure is a :class:`CheckpointError` naming ``what`` and the file, followed by ``hint`` (what the user can
    do about it). The message never suggests ``weights_only=False``: a file that needs it is refused.
    """
    try:
        with _numpy_numbers():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"[Uu]nsupported(?: global)?:? GLOBAL ([\w.]+)", str(err))
        detail = f"it refers to the Python object {found.group(1)}" if found else "it is not a PyTorch checkpoint"
        problem = f"refused: only tensors, numbers and strings are loaded, but {detail}"
    except EOFError:
        problem = "empty or truncated (no data)"
    except RuntimeError as err:
        problem = f"truncated or corrupt ({str(err).strip().split('.')[0]})"
    except OSError as err:
        problem = f"cannot be read: {err.strerror or err}"
    except (ValueError, TypeError, UnicodeDecodeError, AttributeError, IndexError, KeyError) as err:
        problem = f"not a PyTorch checkpoint ({type(err).__name__})"
    raise CheckpointError(f"{what} {path}: {problem}{hint}")


def _numpy_numbers() -> contextlib.AbstractContextManager:
    """numpy numbers allowed besides torch's own types: the official LCOV-Net code's PyMIC and nnU-Net checkpoints
    keep metrics as numpy scalars (PyMIC's ``valid_pred``). A scalar is a numeric dtype and its bytes, data and not
    code; numpy arrays and every other object stay refused. Files written under numpy 1 name the scalar constructor
    ``numpy.core``, under numpy 2 ``numpy._core``; torch accepts such (global, name) pairs from 2.6 on, and older
    versions refuse numpy numbers."""
    if torch.__version__ < "2.6":
        return contextlib.nullcontext()
    scalar = np.float64(0).__reduce__()[0]
    dtypes = [type(np.dtype(code)) for code in "?bhilqBHILQefd"]
    names = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar")
    return torch.serialization.safe_globals([*((scalar, name) for name in names), np.dtype, *dtypes])


def load_checkpoint(path: Path, what: str = "checkpoint", hint: str = "") -> dict[str, Any]:
    """One of our own checkpoints (a dict), loaded with ``weights_only=True``; see :func:`safe_load`."""
    data = safe_load(path, what, hint)
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} {path} holds a {type(data).__name__}, not a checkpoint dict{hint}")
    return data


def load_weights(path: Path, what: str = "checkpoint", hint: str = "") -> dict[str, torch.Tensor]:
    """Model weights from a checkpoint file of unknown origin, with ``weights_only=True`` (:func:`read_weights`)."""
    return read_weights(path, what, hint)[0]


def read_weights(path: Path, what: str = "checkpoint", hint: str = "") -> tuple[dict[str, torch.Tensor], str | None]:
    """Model weights from a checkpoint file of unknown origin, with ``weights_only=True``, and the key they were
    nested under: ``model`` (ours), ``state_dict`` (nnU-Net), ``model_state_dict`` (PyMIC) or ``network_weights``
    (nnU-Net v2), or None for a bare state dict.
    """
    data = safe_load(path, what, hint)
    container = None
    for key in ("model", "state_dict", "model_state_dict", "network_weights"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data, container = data[key], key
            break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        kind = type(data).__name__ if not isinstance(data, dict) else "dict without tensors" if data else "empty dict"
        raise CheckpointError(f"{what} {path} holds a {kind}, not model weights (a state dict of tensors){hint}")
    return data, container
