"""Shared arguments for tests that run `bench run` on the tiny synthetic set."""

import sys

TINY_RUN = [
    "--preset", "smoke", "--device", "cpu",
    "--set", "spacing=\"keep\"", "--set", "patch=[32, 32, 32]", "--set", "base_channels=4",
    "--set", "batch_size=1", "--set", "profile_runs=1", "--set", "profile_warmup=0", "--set", "val_cases=1",
    "--whole-volume", "32,48,48",
]  # fmt: skip


def bench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]
