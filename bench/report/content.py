"""What a report holds, independent of the files it is written to (``build`` fills it, ``writers`` writes it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.report import plots as P
from bench.report.ablation import Ablation
from bench.report.kd_effect import effect_table
from bench.report.tables import TERMINAL_COLUMNS, main_table


@dataclass
class GroupReport:
    """The rows of one dataset/preset: the aggregated main table, per-organ values, what KD did (``effects``, one
    row per student, teacher and method, and ``effect_words`` saying it), the figures and the ablation view of swept
    arguments."""

    dataset: str
    preset: str
    agg: pd.DataFrame
    organs: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    effects: pd.DataFrame = field(default_factory=pd.DataFrame)
    effect_words: list[str] = field(default_factory=list)
    plots: list[P.Plot] = field(default_factory=list)
    ablations: list[Ablation] = field(default_factory=list)


@dataclass
class Report:
    out_dir: Path
    header: str
    runs: pd.DataFrame
    agg: pd.DataFrame
    organs: pd.DataFrame
    groups: list[GroupReport]
    files: list[Path] = field(default_factory=list)
    deployment: tuple[list[str], list[list]] = ([], [])  # headers, rows: runs exported with `bench export`

    def terminal_table(self) -> str:
        """A short table per dataset/preset for the terminal, then what KD did: its table and its sentences."""
        blocks = []
        for group in self.groups:
            headers, rows = main_table(group.agg, columns=TERMINAL_COLUMNS)
            block = f"{group.dataset} / preset {group.preset}\n" + tabulate(
                rows, headers, tablefmt="simple", disable_numparse=True
            )
            if len(group.effects):
                headers, rows = effect_table(group.effects)
                block += "\n\nWhat KD did\n" + tabulate(rows, headers, tablefmt="simple", disable_numparse=True)
                block += "".join(f"\n{line}" for line in group.effect_words)
            blocks.append(block)
        return "\n\n".join(blocks)
