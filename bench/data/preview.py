"""A PNG of one axial and one coronal slice of a case, CT-windowed, with the organ labels overlaid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from bench.atomic import atomic_path
from bench.data.nifti import read_image


def write_preview(
    image_path: Path,
    label_path: Path | None,
    png: Path,
    labels: dict[int, str],
    window: tuple[float, float] = (-175.0, 250.0),
) -> Path:
    """Write ``png``: the axial and the coronal slice that show the most organs (the middle ones when unlabelled).

    The image is reoriented to LPS first, so the axial view is in radiological convention (patient right on the
    left, anterior at the top) and the coronal view has the head at the top; slices keep their physical aspect.
    """
    # A Figure with its own Agg canvas, not pyplot: no process-wide backend switch, no global figure registry.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    image = sitk.DICOMOrient(read_image(image_path), "LPS")
    arr = sitk.GetArrayFromImage(image).astype(np.float32)
    if arr.ndim == 4:
        arr = arr[..., 0]
    lab = None if label_path is None else sitk.GetArrayFromImage(sitk.DICOMOrient(read_image(label_path), "LPS"))
    sx, sy, sz = image.GetSpacing()
    z = _busiest(lab, axis=0) if lab is not None else arr.shape[0] // 2
    y = _busiest(lab, axis=1) if lab is not None else arr.shape[1] // 2
    views = [
        ("axial", arr[z], None if lab is None else lab[z], sy / sx, f"slice z={z}"),
        ("coronal", arr[::-1, y], None if lab is None else lab[::-1, y], sz / sx, f"slice y={y}"),
    ]
    cmap = matplotlib.colormaps["tab20"]
    values = sorted(v for v in labels if v)
    colours = {v: cmap(i % 20) for i, v in enumerate(values)}
    fig = Figure(figsize=(11, 5.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, (name, img, seg, aspect, where) in zip(axes, views):
        ax.imshow(np.clip(img, *window), cmap="gray", aspect=aspect, interpolation="nearest")
        if seg is not None:
            rgba = np.zeros((*seg.shape, 4))
            for v, colour in colours.items():
                rgba[seg == v] = (*colour[:3], 0.45)
            ax.imshow(rgba, aspect=aspect, interpolation="nearest")
        ax.set_title(f"{name} ({where}), window {window[0]:g}..{window[1]:g} HU", fontsize=9)
        ax.axis("off")
    if lab is not None:
        present = set(np.unique(lab).tolist())
        handles = [Patch(color=colours[v], label=labels[v]) for v in values if v in present]
        fig.legend(handles=handles, loc="lower center", ncol=min(6, max(1, len(handles))), fontsize=8)
    fig.suptitle(Path(image_path).name, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    with atomic_path(Path(png), suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    return Path(png)


def _busiest(label: np.ndarray, axis: int) -> int:
    """Index along ``axis`` of the slice with the most distinct labels (the most labelled voxels breaks ties)."""
    moved = np.moveaxis(label, axis, 0).reshape(label.shape[axis], -1)
    counts = [(len(np.unique(s)), int(np.count_nonzero(s))) for s in moved]
    return max(range(len(counts)), key=lambda i: counts[i])
