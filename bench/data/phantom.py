"""Procedural abdominal CT phantom: one case is a Hounsfield-unit volume and its organ label map on a [D, H, W] grid.

Written by hand because no maintained library generates labelled multi-organ CT procedurally (XCAT-style phantoms
are licensed meshes; TotalSegmentator and friends need real scans). The anatomy is laid out in normalised patient
coordinates so every organ fits whatever field of view is asked for:

    x: -1 patient right .. +1 patient left;  y: -1 anterior .. +1 posterior;  z: -1 inferior .. +1 superior.

Array axes are (z, y, x) and the images are written with an identity direction (LPS), so array index order follows
these axes. Points below are written (x, y, z). Organs are implicit shapes (ellipsoids, swept tubes) roughened by
smooth random fields and painted in a fixed order; later organs win where shapes overlap, which makes neighbours touch
(gallbladder in the liver bed, kidney against the liver, pancreas tail at the splenic hilum, vessels against the spine).
Intensities follow a portal-venous contrast phase; unlabelled bowel, muscle and bone give the network something to
confuse organs with, as on real CT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

ORGANS: dict[int, str] = {
    1: "liver",
    2: "spleen",
    3: "kidney_left",
    4: "kidney_right",
    5: "stomach",
    6: "gallbladder",
    7: "pancreas",
    8: "bladder",
    9: "aorta",
    10: "inferior_vena_cava",
}
LABEL = {name: value for value, name in ORGANS.items()}

AIR_HU = -1000.0
HU_MIN, HU_MAX = -1024, 3071


@dataclass(frozen=True)
class _Box:
    """A sub-block of the canvas: index slices plus broadcastable normalised coordinates."""

    sl: tuple[slice, slice, slice]
    x: np.ndarray  # (1, 1, w)
    y: np.ndarray  # (1, h, 1)
    z: np.ndarray  # (d, 1, 1)


class _Field:
    """A smooth random field (a few random Fourier modes) with unit standard deviation, evaluable on any box."""

    def __init__(self, rng: np.random.Generator, modes: int, fmin: float, fmax: float) -> None:
        direction = rng.normal(size=(modes, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        self.freq = (direction * rng.uniform(fmin, fmax, size=(modes, 1)) * np.pi).astype(np.float32)
        self.phase = rng.uniform(0, 2 * np.pi, size=modes).astype(np.float32)
        self.amp = np.float32(np.sqrt(2.0 / modes))

    def __call__(self, b: _Box) -> np.ndarray:
        out = 0.0
        for (fx, fy, fz), ph in zip(self.freq, self.phase):
            out = out + np.cos(fx * b.x + fy * b.y + fz * b.z + ph)
        return self.amp * out


class _Canvas:
    def __init__(self, size: tuple[int, int, int]) -> None:
        self.size = size
        d, h, w = size
        self.zc, self.yc, self.xc = ((np.arange(n, dtype=np.float32) + 0.5) * 2 / n - 1 for n in (d, h, w))
        self.hu = np.full(size, AIR_HU, np.float32)
        self.texture = np.zeros(size, np.float32)
        self.label = np.zeros(size, np.uint8)
        self.solid = np.zeros(size, bool)  # wall, muscle and bone: organs never paint over these
        self.full = self.box((-2, -2, -2), (2, 2, 2))

    def box(self, lo: tuple[float, float, float], hi: tuple[float, float, float]) -> _Box | None:
        """The voxels whose centres lie in the normalised (x, y, z) box [lo, hi]; None when it misses the grid."""
        sl = []
        for coords, a, b in zip((self.zc, self.yc, self.xc), lo[::-1], hi[::-1]):
            i0, i1 = np.searchsorted(coords, a), np.searchsorted(coords, b, side="right")
            if i1 <= i0:
                return None
            sl.append(slice(int(i0), int(i1)))
        sz, sy, sx = sl
        return _Box((sz, sy, sx), self.xc[sx][None, None, :], self.yc[sy][None, :, None], self.zc[sz][:, None, None])

    def paint(
        self, b: _Box, mask: np.ndarray, hu: float, tex: float, label: int | None = None, solid: bool = False
    ) -> None:
        """Set HU, texture amplitude and (when given) the label where ``mask``; labelled paint skips solid voxels."""
        mask = np.broadcast_to(mask, self.hu[b.sl].shape)
        if label is not None:
            mask = mask & ~self.solid[b.sl]
        elif solid:
            np.copyto(self.solid[b.sl], True, where=mask)
        np.copyto(self.hu[b.sl], np.float32(hu), where=mask)
        np.copyto(self.texture[b.sl], np.float32(tex), where=mask)
        if label is not None:
            np.copyto(self.label[b.sl], np.uint8(label), where=mask)


def _ellipsoid(b: _Box, c: tuple[float, float, float], r: tuple[float, float, float], tilt: float = 0.0) -> np.ndarray:
    """Squared normalised distance to an ellipsoid's centre (< 1 inside); ``tilt`` rotates it in the x-z plane."""
    dx, dy, dz = b.x - c[0], b.y - c[1], b.z - c[2]
    if tilt:
        cos, sin = np.float32(np.cos(tilt)), np.float32(np.sin(tilt))
        dx, dz = cos * dx + sin * dz, cos * dz - sin * dx
    return (dx / r[0]) ** 2 + (dy / r[1]) ** 2 + (dz / r[2]) ** 2


def _bbox(c: tuple[float, float, float], r: tuple[float, float, float], grow: float = 1.4):
    return tuple(ci - grow * ri for ci, ri in zip(c, r)), tuple(ci + grow * ri for ci, ri in zip(c, r))


def _tube(b: _Box, points: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Squared distance to a densely sampled polyline ``points`` [N, 3] over the local radius (< 1 inside)."""
    best = None
    for (px, py, pz), r in zip(points, radii):
        q = ((b.x - px) ** 2 + (b.y - py) ** 2 + (b.z - pz) ** 2) / np.float32(r * r)
        best = q if best is None else np.minimum(best, q)
    return best


def _curve(p0, p1, p2, n: int) -> np.ndarray:
    """``n`` points along the quadratic Bezier curve p0 -> p2 with control point p1, as float32 [n, 3]."""
    t = np.linspace(0, 1, n, dtype=np.float32)[:, None]
    p0, p1, p2 = (np.asarray(p, np.float32) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def make_case(rng: np.random.Generator, size: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic case: (image int16 HU [D, H, W], label uint8 [D, H, W]) with the organs of ``ORGANS``."""
    cv = _Canvas(size)
    u = rng.uniform
    rough, rough2 = _Field(rng, 8, 1.5, 3.5), _Field(rng, 8, 1.5, 3.5)  # organ outlines

    # Body outline: an ellipse a little wider at the hips, flattened at the back where the patient lies on the table.
    ax, ay, cy = u(0.84, 0.95), u(0.64, 0.76), u(-0.05, 0.03)
    fat, wall = u(0.05, 0.13), u(0.035, 0.06)
    b = cv.full
    sx = ax * (1 - 0.05 * b.z)
    dy = b.y - cy
    rho = np.sqrt((b.x / sx) ** 2 + (np.abs(dy) / ay) ** np.where(dy > 0, 3.0, 2.0)) + 0.015 * rough(b)
    cv.paint(b, rho < 1, -100.0 + u(-10, 10), 12.0)
    cv.paint(b, rho < 1 - fat, 50.0, 8.0)
    cavity = rho < 1 - fat - wall
    cv.paint(b, cavity, -90.0 + u(-10, 10), 15.0)
    cv.solid = ~np.broadcast_to(cavity, size).copy()  # organs stay inside the abdominal wall

    # Ribs: small bony ovals in the wall above the lower costal margin, none at the anterior midline.
    phi = np.arctan2(np.abs(b.x), dy) / np.pi  # 0 at the back, 1 at the front, the same on both sides
    ring = np.abs(rho - (1 - fat - 0.5 * wall)) < 0.5 * wall + 0.01
    ribs = ring & (b.z > u(-0.05, 0.15)) & (phi < 0.85)
    ribs &= np.sin(2 * np.pi * (3.0 * b.z + 1.6 * phi) + u(0, 6.28)) > 0.6
    cv.paint(b, ribs, 450.0, 60.0, solid=True)

    sy = cy + ay - u(0.42, 0.48)  # vertebral body centre: the anchor of the retroperitoneal anatomy
    # Bowel (unlabelled): tubular loops with gas pockets, in the lower and anterior cavity.
    loops, gas = _Field(rng, 16, 3.0, 7.0), _Field(rng, 10, 5.0, 9.0)
    bl = loops(b)
    bowel = cavity & (np.abs(bl) < 0.45) & (b.z < u(0.25, 0.45)) & (b.y < sy + 0.05)
    cv.paint(b, bowel, 30.0, 12.0)
    cv.paint(b, bowel & (gas(b) > 1.15) & (np.abs(bl) < 0.3), -850.0, 60.0)

    _spine_and_muscles(cv, rng, sy)
    _organs(cv, rng, sy, rough, rough2)

    tex = ndimage.gaussian_filter(rng.standard_normal(size, dtype=np.float32), 0.9)
    tex *= cv.texture / tex.std()
    image = ndimage.gaussian_filter(cv.hu + tex, (0.35, 0.6, 0.6))
    image += _Field(rng, 4, 0.3, 1.0)(b) * u(4, 10)  # smooth bias, at most about +-25 HU
    image += rng.normal(0, u(8, 18), size=size).astype(np.float32)
    return np.clip(np.rint(image), HU_MIN, HU_MAX).astype(np.int16), cv.label


def _spine_and_muscles(cv: _Canvas, rng: np.random.Generator, sy: float) -> None:
    u = rng.uniform
    b = cv.full
    # Paraspinal and psoas muscles first, so the bone paints over them.
    para = ((np.abs(b.x) - 0.17) / 0.13) ** 2 + ((b.y - sy - 0.25) / 0.12) ** 2 < 1
    cv.paint(b, para, 52.0, 8.0, solid=True)
    t = np.clip((0.3 - b.z) / 1.3, 0, 1)
    psoas = ((np.abs(b.x) - 0.15 - 0.2 * t) ** 2 + (b.y - sy + 0.03 + 0.12 * t) ** 2) < (0.035 + 0.09 * t) ** 2
    cv.paint(b, psoas & (b.z < 0.35), 48.0, 8.0, solid=True)

    period, phase = u(0.16, 0.2), u(0, 1)
    level = np.mod(b.z / period + phase, 1.0)
    vb = (b.x / 0.12) ** 2 + ((b.y - sy) / 0.1) ** 2
    cv.paint(b, vb < 1, 650.0, 40.0, solid=True)
    cv.paint(b, vb < 0.7, 230.0, 40.0)
    cv.paint(b, (vb < 1.05) & (level < 0.14), 85.0, 8.0, solid=True)  # discs
    canal = (b.x / 0.05) ** 2 + ((b.y - sy - 0.16) / 0.045) ** 2
    arch = (b.x / 0.09) ** 2 + ((b.y - sy - 0.16) / 0.08) ** 2 < 1
    spinous = (np.abs(b.x) < 0.025) & (b.y > sy + 0.16) & (b.y < sy + 0.33)
    transverse = (np.abs(b.x) < 0.24) & (np.abs(b.y - sy - 0.14) < 0.025)
    posterior = (arch | spinous | (transverse & (level > 0.3) & (level < 0.6))) & (level > 0.2) & (level < 0.85)
    cv.paint(b, posterior, 500.0, 50.0, solid=True)
    cv.paint(b, canal < 1, 15.0, 5.0, solid=True)

    # Pelvis: iliac wings as curved bony shells, the sacrum replacing the lowest vertebrae.
    for side in (-1, 1):
        c, r = (side * u(0.4, 0.48), sy + 0.05, u(-0.8, -0.7)), (0.32, 0.36, 0.5)
        bx = cv.box(*_bbox(c, r, 1.05))
        if bx is None:
            continue
        q = _ellipsoid(bx, c, r)
        shell = (q > 0.8) & (q < 1) & (side * bx.x > side * c[0] - 0.05) & (bx.y > sy - 0.25) & (bx.z > c[2] - 0.1)
        cv.paint(bx, shell, 600.0, 60.0, solid=True)
    sac = ((b.x / 0.22) ** 2 + ((b.y - sy - 0.05) / 0.11) ** 2 < 1) & (b.z < u(-0.6, -0.5))
    cv.paint(b, sac, 380.0, 60.0, solid=True)


def _organs(cv: _Canvas, rng: np.random.Generator, sy: float, rough: _Field, rough2: _Field) -> None:
    u = rng.uniform

    def jit(p: tuple[float, float, float], s: float = 0.05) -> tuple[float, float, float]:
        return tuple(v + u(-s, s) for v in p)

    def scale(r: tuple[float, float, float], lo: float = 0.88, hi: float = 1.12) -> tuple[float, float, float]:
        k = u(lo, hi)
        return tuple(v * k * u(0.95, 1.05) for v in r)

    # Liver: right lobe, left lobe reaching across the midline, and a variable inferior tip.
    liver_hu = u(95, 120)
    parts = [
        (jit((-0.42, 0.0, 0.6)), scale((0.4, 0.46, 0.42))),
        (jit((0.0, -0.3, 0.66)), scale((0.34, 0.2, 0.24), 0.7, 1.15)),
        (jit((-0.6, -0.05, 0.15), 0.06), scale((0.2, 0.3, 0.28), 0.6, 1.2)),
    ]
    for c, r in parts:
        bx = cv.box(*_bbox(c, r))
        if bx is not None:
            cv.paint(bx, _ellipsoid(bx, c, r) + 0.22 * rough(bx) < 1, liver_hu, 6.0, LABEL["liver"])

    # Spleen: a crescent against the posterolateral left wall.
    c, r = jit((0.56, sy + 0.02, 0.58)), scale((0.16, 0.24, 0.26), 0.75, 1.25)
    bx = cv.box(*_bbox(c, r))
    if bx is not None:
        q = _ellipsoid(bx, c, r, tilt=0.3) + 0.15 * rough2(bx)
        hilum = _ellipsoid(bx, (c[0] - 0.2, c[1] - 0.05, c[2]), (0.14, 0.2, 0.2))
        cv.paint(bx, (q < 1) & (hilum > 1), u(105, 130), 6.0, LABEL["spleen"])

    # Stomach: fundus, body and antrum; an enhancing wall, fluid content and an anterior gas cap.
    stomach = [
        (jit((0.34, -0.05, 0.72)), scale((0.2, 0.22, 0.2))),
        (jit((0.26, -0.32, 0.48)), scale((0.2, 0.17, 0.28))),
        (jit((0.0, -0.42, 0.34)), scale((0.22, 0.12, 0.13))),
    ]
    wall_hu, content_hu, gas_level = u(60, 85), u(5, 35), u(-0.65, -0.3)
    for c, r in stomach:
        bx = cv.box(*_bbox(c, r))
        if bx is None:
            continue
        q = _ellipsoid(bx, c, r) + 0.12 * rough2(bx)
        lumen = q < 0.62
        cv.paint(bx, q < 1, wall_hu, 10.0, LABEL["stomach"])
        cv.paint(bx, lumen, content_hu, 8.0, LABEL["stomach"])
        cv.paint(bx, lumen & (bx.y < gas_level), -900.0, 20.0, LABEL["stomach"])

    # Kidneys: tilted beans with cortex, medulla and a medial hilum; the right one sits lower.
    for side, name, zc in ((1, "kidney_left", 0.22), (-1, "kidney_right", 0.1)):
        c, r = jit((side * 0.42, sy, zc), 0.05), scale((0.15, 0.15, 0.3), 0.85, 1.15)
        bx = cv.box(*_bbox(c, r))
        if bx is None:
            continue
        q = _ellipsoid(bx, c, r, tilt=side * 0.2) + 0.08 * rough(bx)
        hilum = _ellipsoid(bx, (c[0] - side * 0.12, c[1] - 0.03, c[2]), (0.07, 0.07, 0.1))
        kidney = (q < 1) & (hilum > 1)
        cv.paint(bx, kidney, u(160, 200), 8.0, LABEL[name])
        cv.paint(bx, kidney & (q < 0.45), u(110, 140), 8.0, LABEL[name])
        cv.paint(bx, kidney & (q < 0.2) & (side * (bx.x - c[0]) < 0), 10.0, 5.0, LABEL[name])  # renal pelvis

    # Pancreas: a thin tapering tube from the head by the duodenum to the tail at the splenic hilum.
    head, mid, tail = jit((-0.14, sy - 0.32, 0.18)), jit((0.1, sy - 0.36, 0.3)), jit((0.46, sy - 0.06, 0.42))
    pts = _curve(head, mid, tail, 24)
    radii = np.linspace(0.085, 0.05, 24) * u(0.9, 1.2)
    bx = cv.box(tuple(pts.min(0) - 0.12), tuple(pts.max(0) + 0.12))
    if bx is not None:
        q = _tube(bx, pts, radii) + 0.25 * rough2(bx)
        unc = _ellipsoid(bx, (head[0] + 0.02, head[1] + 0.08, head[2] - 0.07), (0.07, 0.06, 0.08))
        cv.paint(bx, (q < 1) | (unc < 1), u(85, 110), 18.0, LABEL["pancreas"])

    # Gallbladder: a pear in the liver bed, under the right lobe.
    c, r = jit((-0.32, -0.28, 0.24), 0.04), scale((0.09, 0.09, 0.16), 0.7, 1.3)
    bx = cv.box(*_bbox(c, r))
    if bx is not None:
        q = _ellipsoid(bx, c, r, tilt=0.4) + 0.06 * rough(bx)
        cv.paint(bx, q < 1, 45.0, 4.0, LABEL["gallbladder"])
        cv.paint(bx, q < 0.7, u(0, 20), 3.0, LABEL["gallbladder"])

    # Bladder: low in the pelvis, its size follows how full it is.
    c, r = jit((0.0, -0.2, -0.8), 0.05), scale((0.24, 0.2, 0.22), 0.6, 1.25)
    bx = cv.box(*_bbox(c, r))
    if bx is not None:
        q = _ellipsoid(bx, c, r) + 0.06 * rough2(bx)
        cv.paint(bx, q < 1, 40.0, 4.0, LABEL["bladder"])
        cv.paint(bx, q < 0.75, u(0, 15), 3.0, LABEL["bladder"])

    # Great vessels: the aorta left-anterior of the spine, splitting into the (unlabelled) iliac arteries; the IVC on
    # the right, running up into the liver.
    bif, ra, x0, ya = u(-0.4, -0.25), u(0.05, 0.065), u(0.05, 0.1), sy - 0.17
    zs = np.linspace(bif, 1.1, 30)
    aorta = np.stack([x0 + 0.02 * np.sin(3 * zs), ya - 0.03 * zs, zs], 1).astype(np.float32)
    aorta_hu = u(150, 220)
    _vessel(cv, aorta, ra, aorta_hu, LABEL["aorta"])
    for side in (-1, 1):
        iliac = _curve(aorta[0], (x0 + side * 0.12, ya, bif - 0.2), (side * 0.3, ya - 0.1, -1.1), 20)
        _vessel(cv, iliac, 0.6 * ra, aorta_hu, 0)
    zs = np.linspace(bif - 0.05, 0.95, 30)
    ivc = np.stack([-0.13 + 0.02 * np.sin(2 * zs), np.full_like(zs, sy - 0.15), zs], 1).astype(np.float32)
    _vessel(cv, ivc, u(0.045, 0.06), u(115, 150), LABEL["inferior_vena_cava"])


def _vessel(cv: _Canvas, pts: np.ndarray, radius: float, hu: float, label: int) -> None:
    bx = cv.box(tuple(pts.min(0) - radius * 1.5), tuple(pts.max(0) + radius * 1.5))
    if bx is not None:
        cv.paint(bx, _tube(bx, pts, np.full(len(pts), radius, np.float32)) < 1, hu, 5.0, label)
