"""Segmenting CTs with a trained network the way ``bench run`` evaluated it: read, preprocess with the run's own
settings, sliding-window inference, restore to the input's geometry, write; each step timed per case.

The network is a PyTorch module, or an ONNX or OpenVINO file run by onnxruntime or OpenVINO behind the same
``nn.Module`` interface, so all go through the one sliding-window implementation (:mod:`bench.inference`) and give
the same masks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from bench.data.layouts import Case
from bench.deploy.inputs import output_name
from bench.deploy.roi import ORGANS_MARGIN_MM, body_box, box_voxels, check_roi, crop_image, organs_box, segment_in_box
from bench.deploy.spec import DeploySpec
from bench.errors import BenchError

# "locate": finding the region to segment (--roi body: before preprocessing; organs: also the coarse pass after it)
STEPS = ("read", "locate", "preprocess", "infer", "restore", "write")


def load_torch_model(
    spec: DeploySpec, weights: Path, model: str | None = None, deep_supervision: bool = True, what: str = "weights"
) -> tuple[nn.Module, str]:
    """The spec's network (or ``model``, with the spec's width settings only when it is the spec's model) with
    ``weights`` loaded, in eval mode, and the format the file was read in (``bench.networks.load_model``: a file
    that does not fit is one line starting with ``what``)."""
    from bench.networks import load_model

    check_window(spec, model)
    name = model or spec.model
    kwargs = spec.model_kwargs if name == spec.model else {}
    net, found = load_model(name, spec.in_channels, spec.num_classes, weights, what,
                            deep_supervision=deep_supervision, **kwargs)  # fmt: skip
    return net.eval(), found


def check_window(spec: DeploySpec, model: str | None = None) -> None:
    """The spec's network arguments and sliding window against the network (shapes only, on the meta device): an
    argument of the wrong type or a window the network's pooling cannot take is one line, not a traceback from the
    first case."""
    from bench.components.factory_args import check_component
    from bench.components.syntax import Component
    from bench.networks import check_patch, check_runs_on_patch

    name = model or spec.model
    kwargs = check_component(Component(name, spec.model_kwargs if name == spec.model else {}), "model",
                             "the deployment spec's model_kwargs").kwargs  # fmt: skip
    check_patch(name, tuple(spec.patch))
    check_runs_on_patch(name, tuple(spec.patch), train=False, **kwargs)


def ort_providers(device: torch.device | None) -> list[str]:
    """CUDA then CPU on a GPU where onnxruntime has the CUDA provider, else the CPU provider alone."""
    import onnxruntime as ort

    gpu = device is not None and device.type == "cuda"
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
    return [p for p in wanted if p in ort.get_available_providers()]


def ort_session(path: Path | bytes, device: torch.device | None = None, threads: int | None = None):
    """An onnxruntime session with as many intra-op threads as torch uses, so both are timed on the same cores."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    source = path if isinstance(path, bytes) else str(path)
    try:
        return ort.InferenceSession(source, options, providers=ort_providers(device))
    except Exception as err:  # onnxruntime raises its own exception types for unreadable or invalid files
        raise BenchError(
            f"--onnx {path if not isinstance(path, bytes) else '<bytes>'}: onnxruntime cannot load it "
            f"({str(err).strip().splitlines()[0]})"
        ) from None


class ExternalNetwork(nn.Module):
    """A network run by another runtime (onnxruntime, OpenVINO) on the CPU or its own provider: it takes and returns
    CPU tensors, so the sliding window stitches on the CPU and no autocast applies."""


class OnnxNetwork(ExternalNetwork):
    """An onnxruntime session that looks like a registered network: ``forward`` returns ``SegOutput`` logits."""

    def __init__(self, session) -> None:
        super().__init__()
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def forward(self, x: Tensor):
        from models import SegOutput

        out = self.session.run(None, {self.input_name: x.detach().cpu().float().numpy()})[0]
        return SegOutput([torch.from_numpy(out).to(x.device)])


@dataclass
class Segmenter:
    """A network plus its deployment spec, segmenting one case at a time."""

    network: nn.Module
    spec: DeploySpec
    device: torch.device | None = None
    blend: str = "gaussian"  # how overlapping windows are weighted (bench.inference.BLENDS)
    roi: str = "full"  # where the full-resolution sliding window runs (bench.deploy.roi.ROIS)
    roi_margin_mm: float = ORGANS_MARGIN_MM  # around the organs the coarse pass found (roi "organs")

    def __post_init__(self) -> None:
        check_roi(self.roi, self.roi_margin_mm)
        self.settings = self.spec.settings()
        self.device = self.device or torch.device("cpu")

    def logits(self, image: np.ndarray) -> Tensor:
        """Sliding-window logits ``[K, D, H, W]`` of a preprocessed image ``[C, D, H, W]``."""
        from bench.device import amp_dtype
        from bench.inference import predict_logits

        external = isinstance(self.network, ExternalNetwork)
        device = torch.device("cpu") if external else self.device  # the runtime places the windows itself
        dtype = None if external else amp_dtype(self.spec.amp, device)
        return predict_logits(self.network, torch.from_numpy(np.ascontiguousarray(image)), self.spec.patch,
                              overlap=self.spec.overlap, sw_batch_size=self.spec.sw_batch_size, device=device,
                              amp_dtype=dtype, blend=self.blend)  # fmt: skip

    def labels(self, image: np.ndarray) -> np.ndarray:
        """Label map ``uint8 [D, H, W]`` of a preprocessed image ``[C, D, H, W]``."""
        return self.logits(image).argmax(dim=0).to(torch.uint8).cpu().numpy()

    def segment(self, case: Case, out_dir: Path | None = None) -> tuple[object, dict[str, float], int]:
        """The mask of ``case`` in its original geometry (written to ``out_dir`` when given), seconds per step, and
        the number of preprocessed voxels the full-resolution sliding window covered."""
        from bench.data.dicom import read_volume
        from bench.data.nifti import write_image
        from bench.data.preprocess import image_geometry, preprocess_images, restore_to_original

        seconds = dict.fromkeys(STEPS, 0.0)
        t = time.perf_counter()
        images = [read_volume(p) for p in case.images]
        t = _lap(seconds, "read", t)
        geometry = image_geometry(images[0])
        if self.roi != "full":
            box = body_box(images[0], self.settings.ct_like)
            images = [crop_image(im, box) for im in images]
            t = _lap(seconds, "locate", t)
        image, _, meta = preprocess_images(case, images, None, self.settings, self.spec.ct_stats)
        meta["original"] = geometry  # restore onto the whole input, zeros outside the body's box
        t = _lap(seconds, "preprocess", t)
        box = [(0, n) for n in image.shape[1:]]
        if self.roi == "organs":
            box = organs_box(self.labels, image, meta["spacing"], self.spec.patch, self.roi_margin_mm)
            t = _lap(seconds, "locate", t)
        labels = segment_in_box(self.labels, image, box)
        t = _lap(seconds, "infer", t)
        mask = restore_to_original(labels, meta)
        t = _lap(seconds, "restore", t)
        if out_dir is not None:
            write_image(mask, Path(out_dir) / output_name(case))
        _lap(seconds, "write", t)
        seconds["total"] = sum(seconds[s] for s in STEPS)
        return mask, seconds, box_voxels(box)


def _lap(seconds: dict[str, float], step: str, start: float) -> float:
    """Add the seconds since ``start`` to ``step`` (locate is timed twice with --roi organs) and return now."""
    now = time.perf_counter()
    seconds[step] += now - start
    return now


def predict_cases(segmenter: Segmenter, cases: list[Case], out_dir: Path, progress: bool = True) -> list[dict]:
    """Segment and write every case; one row of step timings per case. Masks are written atomically, one by one."""
    from bench.console import Progress
    from bench.errors import DataError

    rows = []
    with Progress(len(cases), "predict", "cases", enabled=progress) as bar:
        for case in bar.track(cases):
            try:
                _, seconds, voxels = segmenter.segment(case, out_dir)
            except DataError as err:  # an unreadable voxel block is the user's input, reported like other input errors
                raise BenchError(str(err)) from None
            rows.append({"case": case.case_id, "mask": output_name(case), **seconds, "segmented_voxels": voxels})
    return rows
