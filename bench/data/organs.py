"""One organ vocabulary: canonical organ names and each public data set's own spelling of them.

The canonical names are TotalSegmentator v2's structure names (the largest vocabulary of the public abdominal CT
sets, snake_case, sides spelled out), plus the few structures it has no name for (the kidney as one structure, the
kidney's masses). ``docs/organ-vocabulary.md`` lists the table. Matching is case- and separator-insensitive, so
``"Right Kidney"``, ``"right_kidney"`` and ``"kidney_right"`` all name ``kidney_right``.
"""

from __future__ import annotations

import re

# canonical name -> the other names data sets give it (BTCV, AMOS22, FLARE22, WORD, KiTS23, AbdomenCT-1K, the
# synthetic set); AMOS22's dataset.json spells the aorta "arota".
SYNONYMS: dict[str, tuple[str, ...]] = {
    "spleen": (),
    "liver": (),
    "kidney_right": ("right kidney", "right_kidney", "RK"),
    "kidney_left": ("left kidney", "left_kidney", "LK"),
    "kidney": ("kidneys",),
    "gallbladder": ("gall bladder", "GB"),
    "esophagus": ("oesophagus",),
    "stomach": (),
    "aorta": ("arota",),
    "inferior_vena_cava": ("IVC", "postcava", "inferior vena cava"),
    "portal_vein_and_splenic_vein": ("portal vein and splenic vein", "PSV"),
    "pancreas": (),
    "adrenal_gland_right": ("right adrenal gland", "RAG", "right_adrenal_gland"),
    "adrenal_gland_left": ("left adrenal gland", "LAG", "left_adrenal_gland"),
    "adrenal_gland": ("adrenal", "adrenal glands"),
    "duodenum": (),
    "small_bowel": ("intestine", "small intestine"),
    "colon": (),
    "rectum": (),
    "urinary_bladder": ("bladder",),
    "prostate_or_uterus": ("prostate/uterus",),
    "femur_head_left": ("Head_of_femur_L",),
    "femur_head_right": ("Head_of_femur_R",),
    "kidney_tumor": ("kidney tumour",),
    "kidney_cyst": (),
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9/]+", "", name.lower())


_CANONICAL = {_key(alias): name for name, aliases in SYNONYMS.items() for alias in (name, *aliases)}


def canonical_name(name: str) -> str:
    """The canonical name of the organ a data set calls ``name``; ``name`` itself when the table does not know it."""
    return _CANONICAL.get(_key(name), name)


def canonical_labels(labels: dict[int, str]) -> dict[int, str]:
    """``labels`` (value -> the data set's organ name) with every known organ renamed to its canonical name."""
    return {value: "background" if value == 0 else canonical_name(name) for value, name in labels.items()}


# A structure some data sets label as one and others by side: the sides' predictions score the whole.
UNIONS: dict[str, tuple[str, ...]] = {
    "kidney": ("kidney_left", "kidney_right"),
    "adrenal_gland": ("adrenal_gland_left", "adrenal_gland_right"),
}


def shared_organs(pred_labels: dict[int, str], gt_labels: dict[int, str]) -> tuple[dict[int, int], dict[int, str]]:
    """How a model trained with ``pred_labels`` is scored on a data set labelled ``gt_labels``: (prediction value ->
    ground-truth value, for every organ the two share by canonical name or as a side of a whole the ground truth
    labels as one; the ground truth's shared organs, value -> canonical name)."""
    gt_by_name = {canonical_name(name): value for value, name in gt_labels.items() if value != 0}
    to_gt: dict[int, int] = {}
    for value, name in pred_labels.items():
        name = canonical_name(name)
        whole = next((w for w, sides in UNIONS.items() if name in sides and w in gt_by_name), None)
        target = gt_by_name.get(name, gt_by_name.get(whole)) if value != 0 else None
        if target is not None:
            to_gt[value] = target
    shared = {value: canonical_name(gt_labels[value]) for value in sorted(set(to_gt.values()))}
    return to_gt, shared
