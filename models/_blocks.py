"""Small helpers shared by the network files."""

from __future__ import annotations

from collections.abc import Sequence


def resolve_channels(
    channels: Sequence[int] | None, base_channels: int | None, default: Sequence[int], multipliers: Sequence[int]
) -> list[int]:
    """Channel list from an explicit ``channels`` list, or ``base_channels`` times ``multipliers``, or ``default``."""
    if channels is not None and base_channels is not None:
        raise ValueError("give either channels=[...] or base_channels=, not both")
    if channels is not None:
        resolved = [int(c) for c in channels]
        if len(resolved) != len(default):
            raise ValueError(f"channels needs {len(default)} entries, got {len(resolved)}")
    elif base_channels is not None:
        resolved = [int(base_channels) * m for m in multipliers]
    else:
        resolved = list(default)
    if any(c < 1 for c in resolved):
        raise ValueError(f"channel counts must be positive, got {resolved}")
    return resolved
