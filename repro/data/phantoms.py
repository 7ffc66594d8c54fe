"""Synthetic frontal chest radiographs ("phantoms") written in the SIIM-ACR and RSNA Kaggle layouts.

Why: the pipeline must run end to end without the real (credentialed) data, and a saliency study
needs findings whose true evidence is known pixel by pixel. Each phantom is built from analytic
shapes in a patient frame (body, lungs, heart, ribs, clavicles, spine, trachea, diaphragm), a
branching vessel tree from each hilum for the lung markings, and smooth noise fields (soft tissue,
reticular grain, quantum noise); densities go through a saturating detector response, so bone and
vessels show over the lungs and fade over the mediastinum. Then one finding is painted in:

- pneumothorax (SIIM): one lung is shrunk towards its hilum over a sector (apex or lateral), leaving a
  crescent without lung markings, slightly darker, bounded by a thin bright pleural line;
- pneumonia (RSNA): 1-3 patchy opacities inside the lungs, boxed like the RSNA labels;
- not_normal (RSNA's "No Lung Opacity / Not Normal"): an enlarged heart or a blunted costophrenic angle.

Everything an image shows is drawn from the Generator given to `render_phantom`, split into
independent streams (anatomy, texture, finding, noise, confounder) so that the same generator state
rendered with and without a finding differs only by the finding. The layouts seed one stream per
image from (seed, layout, index), so image i never depends on how many images are written.

Two file formats: "plain" (uncompressed DICOMs with the few tags the kit reads: the demo's) and
"release", the files as both Kaggle releases ship them (docs/real-data.md): 1024x1024 is the
PhantomConfig size to pair with it; 8-bit MONOCHROME2 compressed as JPEG baseline (transfer syntax
1.2.840.10008.1.2.4.50), the tags the releases carry (anonymised patient, age, sex, view, pixel
spacing, "view: PA" series description), and RSNA boxes written with float coordinates ("264.0").
"""
from __future__ import annotations

import dataclasses
import math
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
from scipy import ndimage
from tqdm import tqdm

from repro.data.dicom import write_dicom
from repro.data.siim import rle_encode
from repro.io import write_bytes, write_text

FINDINGS = (None, "pneumothorax", "pneumonia", "not_normal")
POSITIVE_FINDINGS = ("pneumothorax", "pneumonia")
CONFOUNDER_KINDS = ("chest_tube", "marker")
DATASETS = ("siim", "rsna")
FORMATS = ("plain", "release")
RSNA_CLASSES = {"pneumonia": "Lung Opacity", None: "Normal",
                "not_normal": "No Lung Opacity / Not Normal"}

# Default conspicuity (multiplied by PhantomConfig.conspicuity). Pneumonia contrast is deliberately
# well above the level a colleague found unlearnable by a from-scratch InceptionV3 at 128 px.
_PTX_COLLAPSE = (0.20, 0.32)   # fraction of the hilum-to-pleura distance the lung retracts
_PTX_DARKEN = 0.07             # density removed in the air gap (no vessels, more air)
_PTX_LINE = 0.25               # density of the visceral pleural line
_OPACITY_RADIUS = (0.08, 0.12)  # opacity radius as a fraction of the image size
_OPACITY_DENSITY = 0.60        # peak density an opacity adds (the lungs remove ~0.65)
_EVIDENCE_FRACTION = 0.1       # an opacity "changed" a pixel where it adds >= 10% of its peak


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True)
class PhantomConfig:
    size: int = 256
    conspicuity: float = 1.0          # multiplies finding size and contrast
    siim_prevalence: float = 0.22
    rsna_prevalence: float = 0.40
    rsna_not_normal_fraction: float = 0.15
    confounder_rate: float = 0.0
    confounder_negative_rate: float = 0.0
    format: str = "plain"             # "plain" DICOMs, or "release": as the Kaggle releases ship them

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"PhantomConfig: format must be one of {FORMATS}, got {self.format!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or self.size < 64:
            raise ValueError(f"PhantomConfig: size must be an integer >= 64, got {self.size!r}")
        if not (_is_real(self.conspicuity) and math.isfinite(self.conspicuity) and self.conspicuity > 0):
            raise ValueError(f"PhantomConfig: conspicuity must be a finite number > 0, got {self.conspicuity!r}")
        for name in ("siim_prevalence", "rsna_prevalence", "rsna_not_normal_fraction",
                     "confounder_rate", "confounder_negative_rate"):
            value = getattr(self, name)
            if not (_is_real(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"PhantomConfig: {name} must be a number in [0, 1], got {value!r}")


@dataclass
class Phantom:
    image: np.ndarray          # float32 (S, S) in [0, 1], brighter = denser
    mask: np.ndarray           # bool: pneumothorax region, or the union of the filled pneumonia boxes
    evidence: np.ndarray       # bool: the pixels the finding changed
    boxes: list[tuple[int, int, int, int]]  # (x, y, width, height) per opacity; pneumonia only
    confounder: bool
    regions: list[np.ndarray]  # one bool mask per label row: SIIM connected region / RSNA filled box
    lungs: np.ndarray          # bool: the visible lung fields before the finding
    body: np.ndarray           # bool: the patient's outline


# ----------------------------------------------------------------------------------------------
# Patient frame and anatomy parameters


@dataclass(frozen=True)
class _Frame:
    """Similarity transform: normalised pixel coords ([-1, 1], x right, y down) = scale * R(angle) * patient + shift."""
    size: int
    scale: float
    angle: float
    shift: tuple[float, float]

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Patient coordinates (u, v) of every pixel centre; u > 0 is the image right (patient's left)."""
        axis = (np.arange(self.size) + 0.5) * (2.0 / self.size) - 1.0
        x = axis[None, :] - self.shift[0]
        y = axis[:, None] - self.shift[1]
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        u = (cos * x + sin * y) / self.scale
        v = (-sin * x + cos * y) / self.scale
        return u.astype(np.float32), v.astype(np.float32)  # float32 halves the cost of every layer

    def to_pixels(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) pixel coordinates of patient points."""
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        x = self.scale * (cos * u - sin * v) + self.shift[0]
        y = self.scale * (sin * u + cos * v) + self.shift[1]
        to_pixel = self.size / 2.0
        return (y + 1.0) * to_pixel - 0.5, (x + 1.0) * to_pixel - 0.5

    @property
    def pixel(self) -> float:
        """One pixel in patient units."""
        return 2.0 / (self.size * self.scale)


@dataclass(frozen=True)
class _Anatomy:
    """One patient. Per-side tuples are (patient's right = image left, patient's left = image right)."""
    frame: _Frame
    body_width: float
    lung_centre: tuple[tuple[float, float], tuple[float, float]]  # (lateral x, v)
    lung_radii: tuple[tuple[float, float], tuple[float, float]]
    lung_taper: tuple[float, float]        # > 0: the lung widens towards its base
    dome: tuple[float, float]              # top of each hemidiaphragm (v)
    dome_curvature: float
    mediastinum: float                     # half-width of the upper mediastinum
    heart_centre: tuple[float, float]
    heart_radii: tuple[float, float]
    heart_angle: float
    hilum: tuple[tuple[float, float], tuple[float, float]]
    rib_levels: tuple[float, ...]
    rib_fill: float                        # rib thickness as a fraction of the rib spacing
    clavicle_level: float
    spine_phase: float
    marking_density: float
    black: float
    gain: float
    gamma: float
    noise: float
    effusion: tuple[int, float] | None = None  # (side, how far the lateral lung base rises)


_SIDES = (-1.0, 1.0)  # image-left lung (patient's right), image-right lung (patient's left)


def _draw_anatomy(rng: np.random.Generator, size: int) -> _Anatomy:
    frame = _Frame(size, scale=rng.uniform(0.86, 0.98), angle=float(np.clip(rng.normal(0, 0.035), -0.08, 0.08)),
                   shift=(rng.normal(0, 0.02), rng.normal(0.03, 0.02)))
    centres = tuple((rng.uniform(0.40, 0.46), rng.uniform(-0.12, -0.05)) for _ in _SIDES)
    radii = tuple((rng.uniform(0.27, 0.32), rng.uniform(0.64, 0.72)) for _ in _SIDES)
    right_dome = rng.uniform(0.30, 0.40)  # the right hemidiaphragm sits higher (liver)
    spacing = rng.uniform(0.105, 0.12) * 1.05 ** np.arange(10)
    first_rib = rng.uniform(-0.98, -0.92)
    lateral = max(c[0] + 1.1 * r[0] for c, r in zip(centres, radii))
    return _Anatomy(
        frame=frame,
        body_width=lateral + rng.uniform(0.06, 0.10),
        lung_centre=centres, lung_radii=radii,
        lung_taper=(rng.uniform(0.3, 0.45), rng.uniform(0.3, 0.45)),
        dome=(right_dome, right_dome + rng.uniform(0.02, 0.08)),
        dome_curvature=rng.uniform(0.6, 1.0),
        mediastinum=rng.uniform(0.09, 0.12),
        heart_centre=(rng.uniform(0.08, 0.13), rng.uniform(0.26, 0.32)),
        heart_radii=(rng.uniform(0.31, 0.36), rng.uniform(0.23, 0.27)),
        heart_angle=rng.uniform(-0.45, -0.25),
        hilum=tuple((rng.uniform(0.17, 0.22), rng.uniform(-0.10, -0.02)) for _ in _SIDES),
        rib_levels=tuple(first_rib + np.concatenate([[0.0], np.cumsum(spacing)])),
        rib_fill=rng.uniform(0.36, 0.46),
        clavicle_level=rng.uniform(-0.80, -0.72),
        spine_phase=rng.uniform(0, 1),
        marking_density=rng.uniform(0.08, 0.12),
        black=rng.uniform(0.02, 0.07), gain=rng.uniform(0.92, 1.05), gamma=rng.uniform(0.85, 1.15),
        noise=rng.uniform(0.008, 0.014),
    )


# ----------------------------------------------------------------------------------------------
# Shapes as signed distance-like functions (negative inside), softened over about a pixel


def _soft(sdf: np.ndarray, pixel: float) -> np.ndarray:
    return 0.5 - 0.5 * np.tanh(sdf / (0.8 * pixel))


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _flat_top(x: np.ndarray) -> np.ndarray:
    """exp(-x^6): a band profile with a flat top and soft edges (integer powers by hand: ** is slow)."""
    x2 = x * x
    return np.exp(-x2 * x2 * x2)


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Unit-variance gaussian-filtered noise; wide kernels are applied at low resolution and upsampled."""
    step = max(1, int(sigma // 2))
    coarse = -(-size // step)
    field = ndimage.gaussian_filter(rng.standard_normal((coarse, coarse)), sigma / step)
    if step > 1:
        field = ndimage.zoom(field, size / coarse, order=1)[:size, :size]
    return (field / field.std()).astype(np.float32)


def _body_sdf(a: _Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # A superellipse that widens at the shoulders and rounds off above them; the neck reaches the top.
    w = a.body_width * (1.0 + 0.14 * _smoothstep(-v, 0.2, 0.75))
    p, q = np.abs(u) / w, np.abs(v - 0.3) / 1.32
    torso = (np.cbrt(p * p * p + q * q * q) - 1.0) * w
    neck = np.maximum(np.abs(u) - 0.2, -(v + 2.0))
    return np.minimum(torso, neck)


def _dome(a: _Anatomy, side: int, x: np.ndarray) -> np.ndarray:
    """Hemidiaphragm height (v) under the lung; x is the lateral coordinate of that side."""
    return a.dome[side] + a.dome_curvature * (x - a.lung_centre[side][0]) ** 2


def _lung_sdf(a: _Anatomy, side: int, x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """One lung (heart not removed); x = lateral coordinate (mirrored so that lateral is positive)."""
    (cx, cy), (rx, ry) = a.lung_centre[side], a.lung_radii[side]
    dy = (v - cy) / ry
    width = rx * (1.0 + a.lung_taper[side] * np.clip(dy, -1, 1))  # narrow apex, broad base
    egg = (np.hypot((x - cx) / width, dy) - 1.0) * rx
    above_diaphragm = v - _dome(a, side, x)
    beside_mediastinum = a.mediastinum + 0.04 * (v + 1.0) - x
    sdf = np.maximum(np.maximum(egg, above_diaphragm), beside_mediastinum)
    if a.effusion is not None and a.effusion[0] == side:
        # Fluid fills the costophrenic angle: the lung base rises laterally under a meniscus.
        rise = a.effusion[1] * np.clip((x - cx + 0.15) / 0.45, 0, 1) ** 1.5
        sdf = np.maximum(sdf, v - (_dome(a, side, x) - rise))
    return sdf


def _heart_sdf(a: _Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    cos, sin = math.cos(a.heart_angle), math.sin(a.heart_angle)
    du, dv = u - a.heart_centre[0], v - a.heart_centre[1]
    p, q = cos * du - sin * dv, sin * du + cos * dv
    heart = (np.hypot(p / a.heart_radii[0], q / a.heart_radii[1]) - 1.0) * a.heart_radii[1]
    aortic_knob = np.hypot(u - 0.11, v + 0.40) - 0.075  # bulges into the image-right lung's upper medial edge
    return np.minimum(heart, aortic_knob)


# ----------------------------------------------------------------------------------------------
# Anatomy rendering


@dataclass
class _Scene:
    """Density layers of one phantom before a finding and exposure are applied."""
    anatomy: _Anatomy
    u: np.ndarray
    v: np.ndarray
    body: np.ndarray      # soft masks in [0, 1]
    lungs: list[np.ndarray]  # visible lung field per side
    markings: np.ndarray  # lung-marking density (already inside the lungs)
    density: np.ndarray   # everything else


def _build_scene(a: _Anatomy, texture_rng: np.random.Generator) -> _Scene:
    u, v = a.frame.grid()
    px = a.frame.pixel
    body = _soft(_body_sdf(a, u, v), px)
    not_heart = 1.0 - _soft(_heart_sdf(a, u, v), px)
    lungs = [_soft(_lung_sdf(a, side, s * u, v), px) * not_heart for side, s in enumerate(_SIDES)]
    lung = lungs[0] + lungs[1]

    # Attenuation ("density"): the X-ray path through the body is longest in the middle.
    thickness = np.sqrt(np.clip(1.0 - np.square(u / (a.body_width + 0.08)), 0.0, 1.0))
    tissue = _smooth_noise(texture_rng, a.frame.size, a.frame.size / 20)  # uneven soft tissue
    density = body * (0.35 + 0.65 * thickness + 0.03 * tissue)
    density -= lung * 0.72 * thickness
    density += _bones(a, u, v) * body
    gastric_bubble = np.hypot((u - 0.33) / 0.09, (v - a.dome[1] - 0.10) / 0.05) - 1.0  # under the left dome
    density -= 0.25 * _soft(gastric_bubble, 0.05)
    density -= 0.22 * _flat_top(u / 0.035) * (1.0 - _smoothstep(v, -0.35, -0.2))  # trachea, down to the carina
    markings = _lung_markings(a, u, v, texture_rng) * lung
    return _Scene(a, u, v, body, lungs, markings, density)


def _bones(a: _Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x = np.abs(u)
    ribs = 0.09 * _posterior_ribs(a, x, v) + 0.035 * _anterior_ribs(a, x, v)
    ribs *= 1.0 - _smoothstep(x, a.body_width - 0.10, a.body_width - 0.03)  # ribs stop inside the chest wall
    return ribs + 0.2 * _clavicles(a, x, v) + 0.12 * _spine(a, u, v)


def _rib_bands(w: np.ndarray, levels: tuple[float, ...], fill: float) -> np.ndarray:
    """Bands centred on `levels` of the rib coordinate w: the fractional rib index gives the profile."""
    index = np.interp(w, levels, np.arange(len(levels)), left=-9.0, right=-9.0)
    offset = (index - np.round(index)) / (0.5 * fill)
    offset2 = offset * offset
    return np.exp(-offset2 * offset2) * (index > -1.0)  # exp(-x^4): ribs are round in section, edges soft


def _posterior_ribs(a: _Anatomy, x: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Each rib leaves the spine, rises gently to its highest point and drops steeply at the chest wall.
    lateral = x - 0.40
    curve = np.where(lateral < 0, 0.6, 2.0) * lateral * lateral
    return _rib_bands(v - curve, a.rib_levels, a.rib_fill) * _smoothstep(x, 0.05, 0.10)


def _anterior_ribs(a: _Anatomy, x: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Anterior ribs run down and inwards from the chest wall; their cartilage (medially) is invisible.
    levels = tuple(level + 0.35 for level in a.rib_levels[:7])
    return _rib_bands(v - 0.5 * (0.85 - x), levels, 0.5) * _smoothstep(x, 0.30, 0.45)


def _clavicles(a: _Anatomy, x: np.ndarray, v: np.ndarray) -> np.ndarray:
    centre = a.clavicle_level + 0.35 * (x - 0.32) ** 2 - 0.25 * (x - 0.08)
    return _flat_top((v - centre) / 0.032) * _smoothstep(x, 0.05, 0.09) * (1.0 - _smoothstep(x, 0.58, 0.68))


def _spine(a: _Anatomy, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    column = _flat_top(u / (0.065 + 0.015 * (v + 1.0)))
    vertebrae = 0.75 + 0.25 * np.cos(2 * np.pi * (v / 0.12 + a.spine_phase))  # darker disc spaces
    return column * vertebrae


def _lung_markings(a: _Anatomy, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vessel shadows: a branching tree from each hilum (thick and bright centrally, thin peripherally)
    over a faint reticular grain. The caller masks it to the lung fields."""
    size = a.frame.size
    calibre = size / 256  # vessel width in pixels scales with the image
    trunks, branches = np.zeros(size * size), np.zeros(size * size)
    for side in range(2):
        rows, cols, weight, generation = _vessel_tree(a, side, rng)
        inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
        index = rows[inside] * size + cols[inside]
        trunks += np.bincount(index, (weight * (generation < 2))[inside], minlength=size * size)
        branches += np.bincount(index, (weight * (generation >= 2))[inside], minlength=size * size)
    # A line of points 0.7 px apart, blurred by s, peaks at weight / (0.7 * sqrt(2 pi) * s): rescale to weight.
    vessels = sum(ndimage.gaussian_filter(layer.reshape(size, size), s) * (0.7 * math.sqrt(2 * math.pi) * s)
                  for layer, s in ((trunks, max(0.8, 1.5 * calibre)), (branches, max(0.5, 0.7 * calibre))))
    grain = _smooth_noise(rng, size, max(0.6, size / 200))
    return a.marking_density * (np.minimum(vessels, 2.0) + 0.3 * grain)


def _vessel_tree(a: _Anatomy, side: int, rng: np.random.Generator,
                 generations: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel (row, col), weight and generation of points along a binary tree fanning out from one hilum.

    Six trunks fan from up-medial over lateral to down; each segment splits into two children that
    turn by +-0.25..0.5 rad and shrink by 0.78, so that seven generations reach the periphery.
    Branches that leave the lung are cut off later by the lung mask.
    """
    hx, hv = a.hilum[side]
    angles = np.linspace(-2.0, 1.9, 6) + rng.normal(0, 0.12, 6)  # 0 = lateral, -pi/2 = up
    starts = np.tile([hx, hv], (6, 1))
    length = 0.19
    points, weights, levels = [], [], []
    for generation in range(generations):
        count = len(angles)
        step = length * rng.uniform(0.75, 1.25, count)
        ends = starts + step[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        samples = max(2, math.ceil(1.25 * length / a.frame.pixel / 0.7))  # about 0.7 px apart
        t = np.linspace(0.0, 1.0, samples)[None, :, None]
        points.append((starts[:, None, :] + t * (ends - starts)[:, None, :]).reshape(-1, 2))
        weights.append(np.full(count * samples, 0.88 ** generation))
        levels.append(np.full(count * samples, generation))
        turn = rng.uniform(0.25, 0.5, count)
        angles = np.repeat(angles, 2) + np.stack([-turn, turn], axis=1).ravel() + rng.normal(0, 0.1, 2 * count)
        starts = np.repeat(ends, 2, axis=0)
        length *= 0.78
    x, v = np.concatenate(points).T
    rows, cols = a.frame.to_pixels(_SIDES[side] * x, v)
    return (np.round(rows).astype(np.int64), np.round(cols).astype(np.int64),
            np.concatenate(weights), np.concatenate(levels))


# ----------------------------------------------------------------------------------------------
# Findings


def _pneumothorax(scene: _Scene, rng: np.random.Generator,
                  conspicuity: float) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Air gap (bool) where a lung retracted from the chest wall, the pleural line (float) at its edge, the sides.

    The lung is shrunk towards its hilum by a factor that peaks at one direction (apex or lateral) and
    tapers with angle, so the gap is a crescent between the chest wall and the displaced lung edge.
    About one case in eight is bilateral (two disjoint regions, two label rows).
    """
    a = scene.anatomy
    sides = [0, 1] if rng.random() < 0.12 else [int(rng.integers(2))]
    gap = np.zeros((a.frame.size, a.frame.size), dtype=bool)
    edge = np.zeros_like(gap)
    for side in sides:
        hx, hv = a.hilum[side]
        x = _SIDES[side] * scene.u
        theta = np.arctan2(scene.v - hv, x - hx)
        aim = rng.normal(-1.35, 0.15) if rng.random() < 0.6 else rng.normal(-0.15, 0.2)  # apex or lateral
        spread = rng.uniform(0.45, 0.7)
        collapse = min(0.6, rng.uniform(*_PTX_COLLAPSE) * conspicuity)
        off = np.mod(theta - aim + np.pi, 2 * np.pi) - np.pi  # angle from the aim, wrapped
        factor = 1.0 - collapse * np.exp(-0.5 * (off / spread) ** 2)
        collapsed = _lung_sdf(a, side, hx + (x - hx) / factor, hv + (scene.v - hv) / factor) < 0
        lung = scene.lungs[side] > 0.5
        side_gap = _largest_component(lung & ~collapsed)
        gap |= side_gap
        edge |= collapsed & lung & ndimage.binary_dilation(side_gap)
    line = np.clip(ndimage.gaussian_filter(edge.astype(float), 0.6 * a.frame.size / 256) * 1.6, 0, 1)
    return gap, line, sides


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes))


def _opacities(scene: _Scene, rng: np.random.Generator, conspicuity: float) -> list[np.ndarray]:
    """1-3 patchy opacities (density fields), each a cluster of gaussians broken up by smooth noise."""
    size = scene.anatomy.frame.size
    lung_soft = scene.lungs[0] + scene.lungs[1]
    lung = lung_soft > 0.5
    inner = ndimage.binary_erosion(lung, iterations=max(1, round(0.05 * size)))
    candidates = np.flatnonzero(inner) if inner.any() else np.flatnonzero(lung)
    patches = _smooth_noise(rng, size, 0.025 * size)
    axis = np.arange(size, dtype=np.float32)
    fields = []
    for _ in range(int(rng.integers(1, 4))):
        if candidates.size == 0:
            break
        row, col = divmod(int(rng.choice(candidates)), size)
        radius = rng.uniform(*_OPACITY_RADIUS) * size * conspicuity
        field = np.zeros((size, size), dtype=np.float32)
        for _ in range(int(rng.integers(3, 6))):
            cy, cx = np.array([row, col]) + rng.normal(0, 0.45 * radius, 2)
            sigma = radius * rng.uniform(0.35, 0.6)
            field += rng.uniform(0.6, 1.0) * np.outer(np.exp(-0.5 * ((axis - cy) / sigma) ** 2),
                                                     np.exp(-0.5 * ((axis - cx) / sigma) ** 2))
        field *= np.clip(1.0 + 0.6 * patches, 0.15, None)  # irregular, clumpy rather than a smooth disc
        field *= lung_soft
        fields.append(field * (_OPACITY_DENSITY * conspicuity / field.max()))
        rows, cols = np.divmod(candidates, size)
        candidates = candidates[np.hypot(rows - row, cols - col) > 2.5 * radius]  # keep opacities apart
    return fields


def _not_normal(a: _Anatomy, rng: np.random.Generator) -> _Anatomy:
    """Another visible abnormality without lung opacity: cardiomegaly or a blunted costophrenic angle."""
    if rng.random() < 0.5:
        grow = rng.uniform(1.3, 1.45)
        return dataclasses.replace(a, heart_radii=(a.heart_radii[0] * grow, a.heart_radii[1] * grow * 0.95),
                                   heart_centre=(a.heart_centre[0] + 0.04, a.heart_centre[1] + 0.02))
    return dataclasses.replace(a, effusion=(int(rng.integers(2)), rng.uniform(0.2, 0.3)))


# ----------------------------------------------------------------------------------------------
# Confounders


def _chest_tube(a: _Anatomy, side: int, rng: np.random.Generator) -> np.ndarray:
    """A thin bright tube entering through the lateral chest wall and running up towards the apex."""
    s = _SIDES[side]
    start = np.array([1.05, rng.uniform(0.25, 0.40)])
    bend = np.array([rng.uniform(0.50, 0.62), rng.uniform(0.30, 0.42)])
    tip = np.array([rng.uniform(0.35, 0.50), rng.uniform(-0.65, -0.45)])
    t = np.linspace(0, 1, 6 * a.frame.size)[:, None]
    x, v = ((1 - t) ** 2 * start + 2 * t * (1 - t) * bend + t ** 2 * tip).T
    rows, cols = a.frame.to_pixels(s * x, v)
    size = a.frame.size
    tube = np.zeros((size, size))
    inside = (rows > -0.5) & (rows < size - 0.5) & (cols > -0.5) & (cols < size - 0.5)
    tube[np.round(rows[inside]).astype(int), np.round(cols[inside]).astype(int)] = 1.0
    tube = ndimage.gaussian_filter(tube, 0.9 * size / 256)
    return tube / tube.max()


_LETTERS = {"L": ["1000", "1000", "1000", "1000", "1111"],
            "R": ["1110", "1001", "1110", "1010", "1001"]}


def _draw_marker(image: np.ndarray, rng: np.random.Generator) -> None:
    """A radiopaque side marker (framed letter) in an upper corner, drawn in place."""
    size = image.shape[0]
    cell = max(2, round(size / 64))
    letter = np.array([[c == "1" for c in row] for row in _LETTERS["L" if rng.random() < 0.5 else "R"]])
    glyph = np.pad(np.kron(letter, np.ones((cell, cell))), cell)  # the letter with a margin
    glyph[[0, -1], :] = glyph[:, [0, -1]] = 1.0  # and a frame
    margin = round(size * rng.uniform(0.03, 0.06))
    top = margin
    left = margin if rng.random() < 0.5 else size - margin - glyph.shape[1]
    patch = image[top:top + glyph.shape[0], left:left + glyph.shape[1]]
    patch[:] = np.maximum(patch, 0.92 * glyph)


# ----------------------------------------------------------------------------------------------
# Public rendering


def render_phantom(rng: np.random.Generator, finding: str | None, config: PhantomConfig = PhantomConfig(),
                   *, confounder_kind: str | None = None) -> Phantom:
    """Render one phantom; everything it shows is drawn from `rng`.

    `finding` is None (normal), "pneumothorax", "pneumonia" or "not_normal". The confounder appears
    with probability config.confounder_rate for positives and confounder_negative_rate otherwise;
    `confounder_kind` is "chest_tube" (SIIM) or "marker" (RSNA), by default "marker" for the RSNA
    findings (pneumonia, not_normal) and "chest_tube" otherwise.
    """
    if finding not in FINDINGS:
        raise ValueError(f"render_phantom: finding must be one of {FINDINGS}, got {finding!r}")
    if confounder_kind is None:
        confounder_kind = "marker" if finding in ("pneumonia", "not_normal") else "chest_tube"
    if confounder_kind not in CONFOUNDER_KINDS:
        raise ValueError(f"render_phantom: confounder_kind must be one of {CONFOUNDER_KINDS}, got {confounder_kind!r}")
    anatomy_rng, texture_rng, finding_rng, noise_rng, confounder_rng = (
        np.random.default_rng(s) for s in rng.integers(0, 2 ** 63, size=5))
    size = config.size
    anatomy = _draw_anatomy(anatomy_rng, size)
    if finding == "not_normal":
        anatomy = _not_normal(anatomy, finding_rng)
    scene = _build_scene(anatomy, texture_rng)
    lungs = (scene.lungs[0] + scene.lungs[1]) > 0.5
    markings, density = scene.markings, scene.density
    mask = np.zeros((size, size), dtype=bool)
    evidence = np.zeros((size, size), dtype=bool)
    regions, boxes, tube_side = [], [], int(confounder_rng.integers(2))

    if finding == "pneumothorax":
        gap, line, sides = _pneumothorax(scene, finding_rng, config.conspicuity)
        tube_side = sides[0]  # a chest tube goes where the pneumothorax is
        markings = markings * ~gap  # no vessels beyond the visceral pleura
        density = density - _PTX_DARKEN * config.conspicuity * gap + _PTX_LINE * config.conspicuity * line
        mask, evidence = gap, gap | (line > 0.05)
        labels, count = ndimage.label(gap)
        regions = [labels == k for k in range(1, count + 1)]
    elif finding == "pneumonia":
        fields = _opacities(scene, finding_rng, config.conspicuity)
        density = density + sum(fields)
        for field in fields:
            changed = field >= _EVIDENCE_FRACTION * field.max()
            rows, cols = np.nonzero(changed)
            y, x = int(rows.min()), int(cols.min())
            box = (x, y, int(cols.max()) - x + 1, int(rows.max()) - y + 1)
            filled = np.zeros((size, size), dtype=bool)
            filled[y:y + box[3], x:x + box[2]] = True
            boxes.append(box)
            regions.append(filled)
            evidence = evidence | changed
        mask = np.logical_or.reduce(regions)

    positive = finding in POSITIVE_FINDINGS
    has_confounder = bool(confounder_rng.random() < (config.confounder_rate if positive
                                                     else config.confounder_negative_rate))
    if has_confounder and confounder_kind == "chest_tube":
        density = density + 0.35 * _chest_tube(anatomy, tube_side, confounder_rng)
    image = _expose(anatomy, density + markings, noise_rng)
    if has_confounder and confounder_kind == "marker":
        _draw_marker(image, confounder_rng)
    return Phantom(image=image, mask=mask, evidence=evidence, boxes=boxes, confounder=has_confounder,
                   regions=regions, lungs=lungs, body=scene.body > 0.5)


def _expose(a: _Anatomy, density: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Detector response plus slightly correlated quantum noise.

    The response saturates (1 - exp), so that bones and vessels show clearly over the lungs and
    faintly over the mediastinum and abdomen, as on a real film; black level, gain and gamma vary.
    """
    exposure = 1.0 - np.exp(-1.25 * np.clip(density, 0.0, None))
    image = a.black + a.gain * exposure ** a.gamma
    noise = ndimage.gaussian_filter(rng.standard_normal(density.shape), 0.5)
    noise /= noise.std()
    return np.clip(image + a.noise * noise, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Kaggle layouts

_SIIM_UID_ROOT = "1.2.276.0.7230010.3.1"  # the SIIM files' UIDs: <root>.<2 study|3 series|4 instance>.8323329...


def make_siim_layout(out_dir: str | Path, n: int, seed: int, config: PhantomConfig = PhantomConfig(),
                     *, progress: bool = True) -> Path:
    """SIIM-ACR layout: dicom-images-train/<study>/<series>/<ImageId>.dcm and train-rle.csv.

    round(n * siim_prevalence) pneumothorax phantoms at seeded positions; one RLE row per connected
    region ("-1" for negatives), with the real file's header "ImageId, EncodedPixels" and its
    ", " separator. Also phantom-truth.csv. CSVs are written after every image.
    """
    root = Path(out_dir)
    layout_rng, image_seeds = _streams(seed, "siim", n, config)
    findings = _assign(layout_rng, n, {"pneumothorax": round(n * config.siim_prevalence)})
    numbers = layout_rng.choice(np.arange(1000, 1000 + max(30000, 2 * n)), size=n, replace=False)
    rle_rows, truth_rows = ["ImageId, EncodedPixels"], []
    for index in tqdm(range(n), desc="SIIM phantoms", unit="image", disable=None if progress else True):
        phantom = render_phantom(np.random.default_rng(image_seeds[index]), findings[index], config,
                                 confounder_kind="chest_tube")
        stamp = f"{numbers[index]}.{1517875000 + int(layout_rng.integers(0, 1000))}"
        serial = int(layout_rng.integers(100000, 999990))
        image_id = f"{_SIIM_UID_ROOT}.4.8323329.{stamp}.{serial}"
        study = f"{_SIIM_UID_ROOT}.2.8323329.{stamp}.{serial - 1}"
        series = f"{_SIIM_UID_ROOT}.3.8323329.{stamp}.{serial - 2}"
        patient_id = _uuid(layout_rng)
        write_dicom(root / "dicom-images-train" / study / series / f"{image_id}.dcm", phantom.image, bits=8,
                    patient_id=patient_id, study_uid=study, series_uid=series, sop_uid=image_id,
                    **_file_format(config, seed, "siim", index, patient_id))
        rle_rows += [f"{image_id}, {rle_encode(region)}" for region in phantom.regions] or [f"{image_id}, -1"]
        truth_rows.append(_truth_row(image_id, phantom))
    _write_truth(root, truth_rows)
    write_text(root / "train-rle.csv", "\n".join(rle_rows) + "\n")
    return root


def make_rsna_layout(out_dir: str | Path, n: int, seed: int, config: PhantomConfig = PhantomConfig(),
                     *, progress: bool = True) -> Path:
    """RSNA Pneumonia layout: stage_2_train_images/<patientId>.dcm, stage_2_train_labels.csv and
    stage_2_detailed_class_info.csv (one row per label row, as in the real file), plus phantom-truth.csv.

    round(n * rsna_not_normal_fraction) images are "No Lung Opacity / Not Normal"; of the rest,
    round(rest * rsna_prevalence) are "Lung Opacity" (one label row per box) and the others "Normal".
    """
    root = Path(out_dir)
    layout_rng, image_seeds = _streams(seed, "rsna", n, config)
    not_normal = round(n * config.rsna_not_normal_fraction)
    findings = _assign(layout_rng, n, {"not_normal": not_normal,
                                       "pneumonia": round((n - not_normal) * config.rsna_prevalence)})
    label_rows, class_rows, truth_rows = ["patientId,x,y,width,height,Target"], ["patientId,class"], []
    for index in tqdm(range(n), desc="RSNA phantoms", unit="image", disable=None if progress else True):
        phantom = render_phantom(np.random.default_rng(image_seeds[index]), findings[index], config,
                                 confounder_kind="marker")
        patient_id = _uuid(layout_rng)
        write_dicom(root / "stage_2_train_images" / f"{patient_id}.dcm", phantom.image, bits=8,
                    patient_id=patient_id, **_uids(seed, "rsna", index),
                    **_file_format(config, seed, "rsna", index, patient_id))
        number = float if config.format == "release" else int      # the release writes "264.0"
        rows = [",".join([patient_id, *(str(number(v)) for v in box), "1"]) for box in phantom.boxes] or [
            f"{patient_id},,,,,0"]
        label_rows += rows
        class_rows += [f"{patient_id},{RSNA_CLASSES[findings[index]]}"] * len(rows)
        truth_rows.append(_truth_row(patient_id, phantom))
    _write_truth(root, truth_rows)
    write_text(root / "stage_2_detailed_class_info.csv", "\n".join(class_rows) + "\n")
    write_text(root / "stage_2_train_labels.csv", "\n".join(label_rows) + "\n")
    return root


def make_phantoms(out_dir: str | Path, n: int, seed: int, *, datasets: tuple[str, ...] = DATASETS,
                  config: PhantomConfig = PhantomConfig(), progress: bool = True) -> dict[str, Path]:
    """Write out_dir/siim and/or out_dir/rsna (each layout mixes its name into the seed, so they differ).

    `progress` shows tqdm bars (only on a terminal).
    """
    datasets = tuple(datasets)
    unknown = [name for name in datasets if name not in DATASETS]
    if not datasets or unknown:
        raise ValueError(f"make_phantoms: datasets must be a non-empty selection of {DATASETS}, got {datasets!r}")
    makers = {"siim": make_siim_layout, "rsna": make_rsna_layout}
    return {name: makers[name](Path(out_dir) / name, n, seed, config, progress=progress)
            for name in dict.fromkeys(datasets)}


def _streams(seed: int, layout: str, n: int, config: PhantomConfig) -> tuple[np.random.Generator, list]:
    """Validate the arguments; one stream for the layout (labels, ids) and one seed per image.

    Image i's seed depends only on (seed, layout, i), so a larger n only appends images.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"make_{layout}_layout: n must be an integer >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"make_{layout}_layout: seed must be an integer >= 0, got {seed!r}")
    if not isinstance(config, PhantomConfig):
        raise TypeError(f"make_{layout}_layout: config must be a PhantomConfig, got {type(config).__name__}")
    layout_seed, images_seed = np.random.SeedSequence([int(seed), DATASETS.index(layout)]).spawn(2)
    return np.random.default_rng(layout_seed), images_seed.spawn(int(n))


def _assign(rng: np.random.Generator, n: int, counts: dict[str, int]) -> list[str | None]:
    """Exactly counts[f] images of each finding f, the rest None, at shuffled positions."""
    findings: list[str | None] = [None] * n
    order = iter(rng.permutation(n))
    for finding, count in counts.items():
        for _ in range(count):
            findings[int(next(order))] = finding
    return findings


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _uids(seed: int, layout: str, index: int) -> dict[str, str]:
    """Deterministic study/series/instance UIDs, so that a seed gives byte-identical files."""
    return {f"{kind}_uid": generate_uid(entropy_srcs=[str(seed), layout, kind, str(index)])
            for kind in ("study", "series", "sop")}


def _file_format(config: PhantomConfig, seed: int, layout: str, index: int, patient_id: str) -> dict:
    """write_dicom's arguments for the configured format. "release": JPEG baseline and the tags the
    releases' files carry, drawn from a stream of their own (the ids and images do not change)."""
    if config.format == "plain":
        return {"transfer_syntax": ExplicitVRLittleEndian}
    rng = np.random.default_rng([int(seed), DATASETS.index(layout), int(index), 1])
    view = "PA" if rng.random() < 0.55 else "AP"
    spacing = 0.168 if layout == "siim" else 0.143   # mm, as the releases' 1024 px files give it
    return {"transfer_syntax": JPEGBaseline8Bit, "jpeg_quality": 90, "tags": {
        "SpecificCharacterSet": "ISO_IR 100", "StudyDate": "19010101", "StudyTime": "000000.00",
        "AccessionNumber": "", "ConversionType": "WSD", "ReferringPhysicianName": "",
        "SeriesDescription": f"view: {view}", "PatientName": patient_id, "PatientBirthDate": "",
        "PatientSex": "F" if rng.random() < 0.45 else "M", "PatientAge": f"{int(rng.integers(18, 90)):03d}Y",
        "ViewPosition": view, "StudyID": "", "SeriesNumber": 1, "InstanceNumber": 1, "PatientOrientation": "",
        "PixelSpacing": [spacing, spacing]}}


def _truth_row(image_id: str, phantom: Phantom) -> str:
    return f"{image_id},{rle_encode(phantom.evidence)},{int(phantom.confounder)}"


def _write_truth(root: Path, rows: list[str]) -> None:
    write_text(root / "phantom-truth.csv", "\n".join(["ImageId,Evidence,Confounder", *rows]) + "\n")


def make_folder_layout(out_dir: str | Path, n: int, seed: int, config: PhantomConfig = PhantomConfig(),
                       *, truth: str = "masks", progress: bool = True) -> Path:
    """A data set of your own's layout (repro.data.folder), made of phantoms: images/<id>.png,
    labels.csv (image,label) and masks/<id>.png of the pneumothorax phantoms (truth="masks") or
    boxes.csv of the pneumonia phantoms (truth="boxes"). For trying `data.source: folder` and
    user-supplied models without data of one's own.
    """
    if truth not in ("masks", "boxes"):
        raise ValueError(f"make_folder_layout: truth must be 'masks' or 'boxes', got {truth!r}")
    root = Path(out_dir)
    layout = "siim" if truth == "masks" else "rsna"
    layout_rng, image_seeds = _streams(seed, layout, n, config)
    finding, prevalence = (("pneumothorax", config.siim_prevalence) if truth == "masks"
                           else ("pneumonia", config.rsna_prevalence))
    findings = _assign(layout_rng, n, {finding: round(n * prevalence)})
    labels, boxes = ["image,label"], ["image,x,y,width,height"]
    for index in tqdm(range(n), desc="folder phantoms", unit="image", disable=None if progress else True):
        phantom = render_phantom(np.random.default_rng(image_seeds[index]), findings[index], config)
        image_id = f"case{index:04d}"
        _write_png(root / "images" / f"{image_id}.png", np.round(phantom.image * 255).astype(np.uint8))
        labels.append(f"{image_id}.png,{int(findings[index] is not None)}")
        if findings[index] is not None and truth == "masks":
            _write_png(root / "masks" / f"{image_id}.png", phantom.mask.astype(np.uint8) * 255)
        boxes += [f"{image_id}.png,{x},{y},{w},{h}" for x, y, w, h in phantom.boxes]
    if truth == "boxes":
        write_text(root / "boxes.csv", "\n".join(boxes) + "\n")
    write_text(root / "labels.csv", "\n".join(labels) + "\n")
    return root


def _write_png(path: Path, pixels: np.ndarray) -> None:
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    write_bytes(path, buffer.getvalue())
