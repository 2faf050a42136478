"""Every KD method against no KD on the kd_gap protocol (4-channel students, an 8-channel teacher), over several
seeds: what distillation does, per method.

Runs ``bench run`` (the real CLI, in a subprocess) for the students and KD methods over ``--seeds`` into one results
store (complete runs are skipped, so an interrupted benchmark continues where it stopped), then prints per student
and method the mean ± sd Dice over seeds, the gain over the same student without KD, the share of the teacher -
student gap it closes, the paired Wilcoxon p-value over (seed, case) pairs, and each method's rank per seed with
how stable the ranking of the best methods is across seeds (Kendall's tau between the seeds' rankings, and how many
seeds agree on the top three).

    python benchmarks/bench_kd.py --results results/bench_kd [--seeds 0,1,2] [--models lcovnet,unet3d]
        [--kd all] [--jobs 2] [--preset kd_gap]
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau
from tabulate import tabulate

from bench.components.static_names import kd_method_names
from bench.report.kd_effect import kd_effects
from bench.report.stats import case_mean_dice
from bench.report.tables import runs_frame
from bench.store import ResultsStore


def run_grid(args: argparse.Namespace, methods: list[str]) -> None:
    command = [sys.executable, "-m", "bench", "run", "--models", args.models, "--kd", ",".join(methods),
               "--seeds", args.seeds, "--preset", args.preset, "--results", str(args.results),
               "--executor", "local", "--jobs", str(args.jobs)]  # fmt: skip
    subprocess.run(command, check=True)


def per_seed_dice(runs: pd.DataFrame) -> pd.DataFrame:
    """(model, kd) x seed -> Dice, students only (the teachers' own-protocol runs sit in another preset)."""
    students = runs[~runs.preset.str.endswith("-teacher")]
    return students.pivot_table(index=["model", "kd"], columns="seed", values="dice_mean", aggfunc="mean")


def method_table(runs: pd.DataFrame, case_dice: pd.DataFrame) -> list[list]:
    effects = kd_effects(runs, case_dice).set_index(["model", "kd"])
    dice = per_seed_dice(runs)
    ranks = dice.groupby(level="model").rank(ascending=False)  # per seed, among a student's methods
    rows = []
    for (model, kd), values in dice.iterrows():
        effect = effects.loc[(model, kd)] if (model, kd) in effects.index else None
        gain = "-" if effect is None else f"{effect['gain']:+.4f} ± {effect['gain_sd']:.4f}"
        closed = "-" if effect is None or pd.isna(effect["closed"]) else f"{100 * effect['closed']:.0f}%"
        p = "-" if effect is None or pd.isna(effect["p_wilcoxon"]) else f"{effect['p_wilcoxon']:.2g}"
        rows.append([model, kd, f"{values.mean():.4f} ± {values.std(ddof=1):.4f}", gain, closed, p,
                     " ".join("-" if pd.isna(r) else str(int(r)) for r in ranks.loc[(model, kd)])])  # fmt: skip
    return rows


def ranking_stability(runs: pd.DataFrame) -> list[str]:
    """Per student: Kendall's tau between every two seeds' rankings of the methods, and the top three per seed."""
    dice = per_seed_dice(runs)
    lines = []
    for model in dice.index.get_level_values("model").unique():
        table = dice.loc[model].drop(index="none", errors="ignore").dropna(axis=1)
        taus = [kendalltau(table[a], table[b]).statistic for a, b in itertools.combinations(table.columns, 2)]
        tops = {seed: tuple(table[seed].nlargest(3).index) for seed in table.columns}
        agree = max(sum(set(t) == set(top) for t in tops.values()) for top in tops.values()) if tops else 0
        mean_tau = f"{sum(taus) / len(taus):.2f}" if taus else "-"
        lines.append(f"{model}: Kendall tau between seeds' method rankings {mean_tau} (mean over pairs); top three "
                     f"per seed {tops}; {agree} of {len(tops)} seeds agree on the top three")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results/bench_kd"), help="results store to fill")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default="lcovnet,unet3d", help="the students")
    parser.add_argument("--kd", default="all", help="comma-separated KD methods, or all registered ones")
    parser.add_argument("--preset", default="kd_gap")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (the CPU cores are shared out)")
    parser.add_argument("--report-only", action="store_true", help="print the tables of the store; train nothing")
    args = parser.parse_args()
    methods = sorted(kd_method_names()) if args.kd == "all" else args.kd.split(",")
    if not args.report_only:
        run_grid(args, methods)
    store = ResultsStore(args.results)
    runs = runs_frame(store.summaries())
    case_dice = case_mean_dice(store.per_case())
    headers = ["student", "KD", "Dice (mean ± sd over seeds)", "gain over no KD", "closed gap", "p (seed x case)",
               "rank per seed"]  # fmt: skip
    print(tabulate(method_table(runs, case_dice), headers=headers, disable_numparse=True))
    for line in ranking_stability(runs):
        print(line)


if __name__ == "__main__":
    main()
