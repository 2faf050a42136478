"""``bench evaluate``: Dice and HD95 (mm) of a folder of predicted label masks against a ground-truth folder.

Masks are NIfTI (.nii.gz, .nii) or MetaImage (.mha) files read with SimpleITK and matched by file name without the
extension. Every ground-truth case needs a prediction with the same size, spacing, origin and direction; spacing
comes from the ground-truth header. HD95 is MedPy's (95th percentile of the pooled surface distances in both
directions). Empty masks: a missed organ or a false positive scores Dice 0 and HD95 = the image diagonal (mm) and
counts in the means; an organ absent from both is left out. The table reports those counts next to the means.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="Dice and HD95 of predicted masks against ground truth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: bench evaluate --pred preds/ --gt labelsTs/ --labels dataset.json --out eval.csv --workers 2",
    )
    p.add_argument("--pred", required=True, type=Path, metavar="DIR", help="folder of predicted label masks")
    p.add_argument("--gt", required=True, type=Path, metavar="DIR", help="folder of ground-truth label masks")
    p.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help="organ names, in the formats every command accepts: a dataset.json (nnU-Net v2 {'labels': {name: "
        "value}} or MSD {'labels': {'1': name}}), a bare JSON mapping, or name=int lines; without it every label "
        "value found is scored as label_<k>; with it, unlisted values are ignored",
    )
    p.add_argument(
        "--pred-labels",
        type=Path,
        metavar="FILE",
        help="organ names of the predictions when the model was trained on another data set (its run's "
        "preprocessing.json, its dataset.json or name=int lines; needs --labels): the organs both share by name "
        "(docs/organ-vocabulary.md) are scored, named canonically",
    )
    p.add_argument(
        "--out", type=Path, metavar="CSV", help="write one row per case and organ: case,label,name,dice,hd95,status"
    )
    p.add_argument(
        "--workers", type=int, default=0, metavar="N", help="processes computing HD95 (0: in this process; default: 0)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.data.layouts import parse_labels_file
    from bench.evaluation import evaluate_folders, format_summary, write_per_case_csv

    labels = parse_labels_file(args.labels) if args.labels else None
    pred_labels = parse_labels_file(args.pred_labels) if args.pred_labels else None
    df = evaluate_folders(args.pred, args.gt, labels, workers=args.workers, progress=True, pred_labels=pred_labels)
    if args.out:
        write_per_case_csv(df, args.out)
    print(format_summary(df))
    if args.out:
        print(f"per-case rows: {args.out}")
    return 0
