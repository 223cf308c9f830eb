"""Training-free face renderer: 52 blendshapes (+ optional head pose) -> warped portrait frames.

One interface, :class:`FrameRenderer`, implemented by this rig (:class:`Renderer`) and by the
trained :class:`talkclip.model.neural_renderer.NeuralRenderer`:

    r = Renderer(device="cpu")                # or Renderer(basis="basis.safetensors")
    state = r.prepare(portrait_rgb, size=256)  # tracks the portrait once (NoFaceError if none)
    frames = r.render(state, blendshapes)      # (T, 52) -> (T, size, size, 3) uint8
    part = r.render(state, blendshapes, pose, start=s, stop=e)  # frames [s, e) of the sequence

``render`` reads at most ``r.context`` neighbouring frames on each side of [start, stop) (0 for
this rig, whose frames are independent; the neural renderer's motion window), so a caller that
holds only part of a sequence passes that many extra rows and renders the middle.

How it works
------------
1. ``prepare`` tracks the portrait with the project's :class:`FaceTracker` (image mode), crops a
   square around the face (side = ``CROP_SCALE`` x the face-oval extent) and resizes it to
   ``size``. It builds a triangle mesh over the crop: MediaPipe's own tessellation of the 468
   mesh points (read from the installed ``mediapipe`` package), our own strip triangulation of
   the three holes it leaves (two eyes, the mouth) and two rings of helper points around the
   face oval (1.35x and 2x its radius) so that the skin outside the face follows smoothly.
2. Motion model: per blendshape k a displacement of every mesh vertex, ``D[k]`` (N, 2), stored
   in a face-aligned frame (x along the eye axis, y perpendicular, pointing to the chin) in units
   of the inter-ocular distance (IOD, distance between the eye centres). The default is a
   hand-built rig (:func:`build_rig`): jawOpen lowers the lower lip, chin and jaw line;
   mouthSmile moves the lip corners up and out; browInnerUp raises the inner brows; eyeBlink
   brings the upper lid onto the lower lid; ... A basis fitted by least squares
   (``talkclip-data fit-basis``) replaces the whole rig when given (``basis=FILE``); the rig stays
   the default because a basis fitted on little data generalises badly across people (see
   the project's reference notes: R^2 < 0 across persons for a one-clip fit). Rendering is
   relative to the portrait's own blendshapes ``b0``: vertex offsets = (b_t - b0) @ D, so
   rendering ``b0`` reproduces the portrait. Going below ``b0`` uses the same fields except for
   jawOpen, which then closes the portrait's own lip gap (:func:`closing_fields`).
3. Warp: the source mesh is rasterised once on a ``flow_res`` grid (default :func:`flow_resolution`:
   96 px up to 256 px frames, else 128; triangle +
   barycentric weights per grid pixel, kept as a sparse (R*R, N) matrix), so the forward
   displacement field of a frame is one sparse matmul of its vertex offsets. Its inverse (the
   backward flow: where each output pixel reads the portrait) is solved per pixel by a few
   step-limited Newton iterations on x + f(x) = y (the Jacobian from central differences of f;
   exact within a triangle), keeping the iterate with the smallest residual; after two steps
   only the pixels not yet solved go on. The backward flow is upsampled to the output size and
   the portrait crop read once: by cv2.remap straight into uint8 on the CPU, by grid_sample on
   CUDA. The flow is batched torch on ``device`` (CPU or CUDA).
4. Mouth: where the displaced inner-lip opening is wider than the portrait's, a synthetic
   interior is composited with soft edges inside the displaced inner-lip outline (computed in
   the face frame, only in a box around the lips): a dark cavity, lighter towards the lower lip
   (tongue), an upper-teeth band under the upper lip (the portrait's own teeth, moved with the
   upper lip, when its mouth shows them; else a teeth colour) and a thin lower-teeth band.

Head pose (optional ``pose`` (T, 4, 4) head rotations relative to the portrait, e.g. from a
driving video's facial transformation matrices through :func:`relative_poses`): applied to the
portrait's 3-D landmarks about their centre (rotation only, no translation, damped beyond
``MAX_POSE_DEG``); the helper rings follow partly (hair, neck).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from talkclip import InputError, MissingAssetError, NoFaceError, one_line
from talkclip.schemas import BLENDSHAPE_NAMES, NUM_BLENDSHAPES

if TYPE_CHECKING:  # torch is imported where it is used, to keep `import talkclip.model.renderer` light
    import torch

BS = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}
NUM_MESH = 468          # mesh points (the 10 iris points 468..477 are not used by the warp)
CROP_SCALE = 1.9        # preferred crop side / max(face-oval width, height)

# ---- landmark groups (MediaPipe 478-point mesh), listed by us from the canonical mesh.
# "R" = the subject's right = image left in a non-mirrored photo.
UPPER_INNER_LIP = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]   # corner to corner
LOWER_INNER_LIP = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
UPPER_OUTER_LIP = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
LOWER_OUTER_LIP = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
MOUTH_CORNERS = (61, 291, 78, 308)
EYE_R_UPPER = [33, 246, 161, 160, 159, 158, 157, 173, 133]   # outer corner .. inner corner
EYE_R_LOWER = [33, 7, 163, 144, 145, 153, 154, 155, 133]
EYE_L_UPPER = [263, 466, 388, 387, 386, 385, 384, 398, 362]
EYE_L_LOWER = [263, 249, 390, 373, 374, 380, 381, 382, 362]
BROW_R = [46, 53, 52, 65, 55, 70, 63, 105, 66, 107]
BROW_L = [276, 283, 282, 295, 285, 300, 293, 334, 296, 336]
BROW_R_INNER, BROW_L_INNER = [55, 65, 107, 66], [285, 295, 336, 296]
BROW_R_OUTER, BROW_L_OUTER = [46, 53, 70, 63], [276, 283, 300, 293]
NOSE_WING_R, NOSE_WING_L = [129, 98, 64], [358, 327, 294]
CHEEK_R, CHEEK_L = [50, 101, 205], [280, 330, 425]
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
RING_SCALES = (1.35, 2.0)
JAW_LEVER = 0.35       # the chin drops this much more than the lower lip (jaw rotates about the ears)
JAW_HINGE = 0.8        # how much less the jaw line near the ears moves than the chin
RING_FOLLOW_EXPR = (0.5, 0.0)   # share of the oval's expression offset the rings take
RING_FOLLOW_POSE = (0.85, 0.4)  # share of the oval's pose offset

# MediaPipe names blendshapes from the subject's point of view: "...Left" acts on the subject's
# left side, which is the image's right (+x in the face frame). Checked by render + re-track.
LEFT_SIGN = +1.0


def _mesh_triangles() -> np.ndarray:
    """MediaPipe's face tessellation as (852, 3) vertex triples, from the installed package."""
    try:
        from mediapipe.tasks.python.vision.face_landmarker import FaceLandmarksConnections
    except ImportError as e:  # pragma: no cover - mediapipe is a dependency
        raise MissingAssetError(f"mediapipe is needed for the face mesh ({e}); pip install mediapipe") from None
    conns = FaceLandmarksConnections.FACE_LANDMARKS_TESSELATION
    tris = [(conns[i].start, conns[i + 1].start, conns[i + 2].start) for i in range(0, len(conns), 3)]
    return np.asarray(tris, dtype=np.int64)


def _strip(upper: list[int], lower: list[int]) -> list[tuple[int, int, int]]:
    """Triangulate the hole between two vertex chains sharing their end points."""
    out = []
    for i in range(len(upper) - 1):
        for tri in ((upper[i], upper[i + 1], lower[i + 1]), (upper[i], lower[i + 1], lower[i])):
            if len(set(tri)) == 3:
                out.append(tri)
    return out


def mesh_topology() -> np.ndarray:
    """All triangles of the warp mesh over 468 + 2 x 36 vertices: (M, 3) int64."""
    tris = [tuple(t) for t in _mesh_triangles()]
    tris += _strip(UPPER_INNER_LIP, LOWER_INNER_LIP)
    tris += _strip(EYE_R_UPPER, EYE_R_LOWER) + _strip(EYE_L_UPPER, EYE_L_LOWER)
    n_oval = len(FACE_OVAL)
    rings = [FACE_OVAL] + [[NUM_MESH + r * n_oval + j for j in range(n_oval)] for r in range(len(RING_SCALES))]
    for a, b in zip(rings[:-1], rings[1:]):
        for j in range(n_oval):
            k = (j + 1) % n_oval
            tris += [(a[j], a[k], b[k]), (a[j], b[k], b[j])]
    return np.asarray(tris, dtype=np.int64)


# ---------------------------------------------------------------- face frame and the rig

@dataclass
class FaceFrame:
    """Face-aligned 2-D frame in pixels: origin between the eyes, unit = IOD."""

    origin: np.ndarray  # (2,) px
    ex: np.ndarray      # (2,) unit vector along the eye axis (image left -> image right)
    ey: np.ndarray      # (2,) unit vector towards the chin
    iod: float          # px

    @classmethod
    def from_points(cls, pts: np.ndarray) -> "FaceFrame":
        """pts: (>=468, 2) landmark positions in pixels."""
        eye_r = pts[EYE_R_UPPER + EYE_R_LOWER].mean(0)
        eye_l = pts[EYE_L_UPPER + EYE_L_LOWER].mean(0)
        d = eye_l - eye_r
        iod = float(np.linalg.norm(d))
        if iod <= 1e-6:
            raise NoFaceError("degenerate face: the eyes coincide")
        ex = d / iod
        ey = np.array([-ex[1], ex[0]])
        return cls((eye_r + eye_l) / 2, ex, ey, iod)

    def to_face(self, pts: np.ndarray) -> np.ndarray:
        """(..., 2) px -> (..., 2) face units."""
        rel = pts - self.origin
        return np.stack([rel @ self.ex, rel @ self.ey], -1) / self.iod

    def offsets_to_px(self, d: np.ndarray) -> np.ndarray:
        """(..., 2) face-unit offsets -> (..., 2) px offsets."""
        return self.iod * (d[..., :1] * self.ex + d[..., 1:2] * self.ey)


def _gauss(q: np.ndarray, centre: np.ndarray, su: float, sv: float) -> np.ndarray:
    """(N,) anisotropic Gaussian weight of face-frame points q (N, 2) around centre (2,)."""
    du, dv = (q[:, 0] - centre[0]) / su, (q[:, 1] - centre[1]) / sv
    return np.exp(-0.5 * (du * du + dv * dv))


def _smoothstep(x: np.ndarray, a: float, b: float) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _interp_chain(q: np.ndarray, chain: list[int], u: np.ndarray) -> np.ndarray:
    """v of the polyline through q[chain] at abscissae u (flat beyond the ends)."""
    cu, cv = q[chain, 0], q[chain, 1]
    order = np.argsort(cu)
    return np.interp(u, cu[order], cv[order])


def build_rig(q: np.ndarray, b0: np.ndarray) -> np.ndarray:
    """The hand-built displacement rig for one face.

    q: (468, 2) the portrait's mesh points in face units (see :class:`FaceFrame`);
    b0: (52,) the portrait's blendshapes (used to scale lid closing).
    Returns D (52, 468, 2): offset of every vertex per unit of each blendshape, face units.
    Amplitudes are eyeballed from the fixture photos (surprise: jawOpen .53 ~ a mouth opening
    of ~0.3 IOD) and checked by the render + re-track test."""
    n = q.shape[0]
    D = np.zeros((NUM_BLENDSHAPES, n, 2), dtype=np.float64)
    u, v = q[:, 0], q[:, 1]
    inner = UPPER_INNER_LIP + LOWER_INNER_LIP
    m = q[inner].mean(0)                                   # mouth centre
    hw = 0.5 * abs(q[291, 0] - q[61, 0])                   # mouth half width
    seam = (_interp_chain(q, UPPER_INNER_LIP, u) + _interp_chain(q, LOWER_INNER_LIP, u)) / 2

    # 'below': 1 on the jaw side of the lip seam, 0 on the upper-lip side
    below = _smoothstep(v - seam, -0.03, 0.08)
    below[UPPER_INNER_LIP + UPPER_OUTER_LIP] = 0.0
    below[LOWER_INNER_LIP + LOWER_OUTER_LIP] = 1.0
    below[list(MOUTH_CORNERS)] = 0.5
    hinge = 1.0 - JAW_HINGE * _smoothstep(np.abs(u - m[0]), 0.45, 1.2)
    # soft lips: the lower lip drops most at its centre, half as much at the corners
    near_lips = _smoothstep(v - seam, 0.3, 0.1) * (np.abs(u - m[0]) < hw * 1.3)
    taper = 1.0 - near_lips * 0.5 * np.clip(np.abs(u - m[0]) / max(hw, 1e-3), 0, 1) ** 2
    # the jaw rotates about the ears: the chin travels further than the lower lip
    lever = 1.0 + JAW_LEVER * _smoothstep(v - seam, 0.05, 0.5)
    w_jaw = below * hinge * taper * lever
    # lips zone: within the lips, with the outer contour farthest from the seam
    lip_band = _smoothstep(np.abs(u - m[0]), hw * 1.15, hw * 0.85) * _smoothstep(np.abs(v - seam), 0.22, 0.12)
    upper_lip, lower_lip = lip_band * (1 - below), lip_band * below
    toward_seam = np.zeros_like(q)
    toward_seam[:, 1] = seam - v                           # moving by this lands on the seam

    def side_w(sign: float) -> np.ndarray:
        return _smoothstep(sign * (u - m[0]), -0.25 * hw, 0.35 * hw)
    vec = lambda du, dv: np.array([du, dv])  # noqa: E731

    # jaw and mouth
    D[BS["jawOpen"]] = w_jaw[:, None] * vec(0.0, 0.55)
    for corner in (q[61], q[291]):   # an opening jaw draws the mouth corners in a little
        D[BS["jawOpen"]] += _gauss(q, corner, 0.15, 0.15)[:, None] * np.array([np.sign(m[0] - corner[0]) * 0.06, 0.0])
    D[BS["jawForward"]] = w_jaw[:, None] * vec(0.0, 0.04)
    D[BS["mouthClose"]] = lower_lip[:, None] * vec(0.0, -0.22) + upper_lip[:, None] * vec(0.0, 0.03)
    D[BS["mouthShrugLower"]] = (below * _gauss(q, m + vec(0, 0.35), 0.6, 0.45))[:, None] * vec(0, -0.07)
    D[BS["mouthShrugUpper"]] = upper_lip[:, None] * vec(0, -0.05)
    D[BS["mouthRollLower"]] = lower_lip[:, None] * 0.5 * toward_seam
    D[BS["mouthRollUpper"]] = upper_lip[:, None] * 0.5 * toward_seam
    mouth_blob = _gauss(q, m, 0.7, 0.45)
    D[BS["mouthFunnel"]] = (mouth_blob * (m[0] - u) / max(hw, 1e-3) * 0.07)[:, None] * vec(1, 0) \
        + (upper_lip * _gauss(q, m, hw * 0.7, 1.0))[:, None] * vec(0, -0.04) \
        + (lower_lip * _gauss(q, m, hw * 0.7, 1.0))[:, None] * vec(0, 0.07)
    D[BS["mouthPucker"]] = (mouth_blob * (m[0] - u) / max(hw, 1e-3) * 0.13)[:, None] * vec(1, 0) \
        + lip_band[:, None] * -0.15 * toward_seam
    for side, sign in (("Left", LEFT_SIGN), ("Right", -LEFT_SIGN)):
        corner = q[291] if sign > 0 else q[61]
        cw = _gauss(q, corner, 0.24, 0.2)
        sw = side_w(sign)
        D[BS[f"mouthSmile{side}"]] = cw[:, None] * vec(0.11 * sign, -0.11)
        D[BS[f"mouthFrown{side}"]] = cw[:, None] * vec(0.0, 0.08)
        D[BS[f"mouthStretch{side}"]] = cw[:, None] * vec(0.09 * sign, 0.03)
        D[BS[f"mouthDimple{side}"]] = cw[:, None] * vec(0.05 * sign, 0.0)
        D[BS[f"mouthPress{side}"]] = (sw * lip_band)[:, None] * 0.3 * toward_seam
        D[BS[f"mouthLowerDown{side}"]] = (sw * lower_lip)[:, None] * vec(0, 0.12) \
            + (sw * below * _gauss(q, m + vec(0, 0.25), 0.5, 0.25) * (1 - lip_band))[:, None] * vec(0, 0.04)
        D[BS[f"mouthUpperUp{side}"]] = (sw * upper_lip)[:, None] * vec(0, -0.09)
        D[BS[f"mouth{side}"]] = mouth_blob[:, None] * vec(0.12 * sign, 0.0)
        D[BS[f"jaw{side}"]] = w_jaw[:, None] * vec(0.12 * sign, 0.0)
        # cheeks and nose
        cheek = q[CHEEK_L if sign > 0 else CHEEK_R].mean(0)
        D[BS[f"cheekSquint{side}"]] = _gauss(q, cheek, 0.22, 0.18)[:, None] * vec(0, -0.035)
        wing = q[NOSE_WING_L if sign > 0 else NOSE_WING_R].mean(0)
        D[BS[f"noseSneer{side}"]] = _gauss(q, wing, 0.15, 0.15)[:, None] * vec(0, -0.045) \
            + (sw * upper_lip)[:, None] * vec(0, -0.02)
    _brow_and_lid_fields(D, q, b0)
    cheeks = [q[CHEEK_R].mean(0), q[CHEEK_L].mean(0)]
    for c, sign in zip(cheeks, (-1.0, 1.0)):
        D[BS["cheekPuff"]] += _gauss(q, c, 0.22, 0.25)[:, None] * vec(0.06 * sign, 0.0)
    return D.astype(np.float32)


def _brow_and_lid_fields(D: np.ndarray, q: np.ndarray, b0: np.ndarray) -> None:
    """The brow and eyelid channels of :func:`build_rig` (fills ``D`` (52, N, 2) in place)."""
    u, v = q[:, 0], q[:, 1]
    for side, sign in (("Left", LEFT_SIGN), ("Right", -LEFT_SIGN)):
        brow = q[BROW_L if sign > 0 else BROW_R]
        bc = brow.mean(0)
        above_eye = _smoothstep(-(v - bc[1]), -0.35, -0.1)  # fades out below the upper lid
        D[BS[f"browDown{side}"]] = (_gauss(q, bc, 0.3, 0.2) * above_eye)[:, None] * np.array([-0.03 * sign, 0.08])
        outer = q[BROW_L_OUTER if sign > 0 else BROW_R_OUTER].mean(0)
        D[BS[f"browOuterUp{side}"]] = (_gauss(q, outer, 0.18, 0.22) * above_eye)[:, None] * np.array([0, -0.11])
        # eyelids
        up_ch, lo_ch = (EYE_L_UPPER, EYE_L_LOWER) if sign > 0 else (EYE_R_UPPER, EYE_R_LOWER)
        lid_up, lid_lo = _interp_chain(q, up_ch, u), _interp_chain(q, lo_ch, u)
        gap = np.clip(lid_lo - lid_up, 0.0, None)
        eu0, eu1 = q[up_ch, 0].min(), q[up_ch, 0].max()
        in_eye_u = _smoothstep(u, eu0 - 0.02, eu0 + 0.06) * _smoothstep(-u, -eu1 - 0.02, -eu1 + 0.06)
        # upper-lid skin: 1 on the lid contour, fading to 0 a third of an IOD above it
        lid_skin = in_eye_u * _smoothstep(v - lid_up, -0.3, 0.0) * (v <= lid_up + 1e-6)
        lid_skin[up_ch[1:-1]] = 1.0
        bidx = BS[f"eyeBlink{side}"]
        close = 0.95 / max(1.0 - float(b0[bidx]), 0.35)
        D[bidx, :, 1] = lid_skin * gap * close
        D[BS[f"eyeWide{side}"], :, 1] = -lid_skin * np.maximum(gap, 0.05) * 0.35
        lower_skin = in_eye_u * _smoothstep(-(v - lid_lo), -0.2, 0.0) * (v >= lid_lo - 1e-6)
        lower_skin[lo_ch[1:-1]] = 1.0
        sq = BS[f"eyeSquint{side}"]
        D[sq, :, 1] = -lower_skin * np.maximum(gap, 0.05) * 0.3 + lid_skin * gap * 0.1
    inner_brows = [q[BROW_R_INNER].mean(0), q[BROW_L_INNER].mean(0)]
    w_inner = np.maximum(_gauss(q, inner_brows[0], 0.17, 0.22), _gauss(q, inner_brows[1], 0.17, 0.22))
    above_brow = _smoothstep(-(v - q[BROW_R + BROW_L, 1].mean()), -0.3, -0.05)
    D[BS["browInnerUp"]] = (w_inner * above_brow)[:, None] * np.array([0, -0.13])


def closing_fields(q: np.ndarray, b0: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Offsets used when a channel goes *below* the portrait's value (b < b0): a copy of ``D``
    except jawOpen, which closes the portrait's own lip gap instead of running the opening
    field backwards (that would fold the skin beside the mouth corners). The lower lip moves up
    by the local gap between the inner lips (nothing at the corners), the skin below follows
    with a falloff, so jawOpen -> 0 closes the portrait's opening by ~90 %."""
    Dn = D.copy()
    u, v = q[:, 0], q[:, 1]
    up = _interp_chain(q, UPPER_INNER_LIP, u)
    lo = _interp_chain(q, LOWER_INNER_LIP, u)
    gap = np.clip(lo - up, 0.0, None)                                   # (N,) opening above each u
    seam = (up + lo) / 2
    below = _smoothstep(v - seam, -0.01, 0.02)
    below[UPPER_INNER_LIP + UPPER_OUTER_LIP] = 0.0
    below[LOWER_INNER_LIP + LOWER_OUTER_LIP] = 1.0
    fall = np.exp(-0.5 * (np.clip(v - lo, 0.0, None) / 0.3) ** 2)
    j = BS["jawOpen"]
    per_unit = 0.9 / max(float(b0[j]), 0.15)
    Dn[j] = 0.0
    Dn[j, :, 1] = np.minimum(gap * per_unit, 0.55) * below * fall
    return Dn


# ---------------------------------------------------------------- fitted basis files

def load_basis(path: str | Path) -> np.ndarray:
    """Read a fitted basis (safetensors or npz written by ``fit-basis``): (52, 468, 2) float32,
    offsets in face units (IOD) per unit blendshape."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such basis file: {p}")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                basis = np.asarray(z["basis"], dtype=np.float32)
        else:
            from safetensors.numpy import load_file

            basis = load_file(str(p))["basis"].astype(np.float32)
    except Exception as e:  # corrupt file: one line
        raise InputError(f"cannot read basis {p}: {one_line(e)}") from None
    if basis.ndim != 3 or basis.shape[0] != NUM_BLENDSHAPES or basis.shape[2] != 2 or basis.shape[1] < NUM_MESH:
        raise InputError(f"basis {p} has shape {basis.shape}, expected (52, 468+, 2)")
    return basis[:, :NUM_MESH]


# ---------------------------------------------------------------- renderer

def crop_box(landmarks: np.ndarray, width: int, height: int, scale: float = CROP_SCALE,
             min_scale: float | None = None) -> tuple[float, float, float]:
    """Square crop (x0, y0, side) in pixels around the face oval of MediaPipe landmarks (478, 3)
    (normalised): side = ``scale`` x the oval's extent, or, with ``min_scale``, shrunk to fit the
    image but not below ``min_scale`` x the extent; moved inside the image when it fits."""
    pts = landmarks[FACE_OVAL, :2].astype(np.float64) * [width, height]
    lo, hi = pts.min(0), pts.max(0)
    extent = float(max(hi - lo))
    side = extent * scale
    if min_scale is not None:
        side = max(min(side, width, height), extent * min_scale)
    if side <= 1:
        raise NoFaceError("degenerate face: zero-size face oval")
    cx, cy = (lo + hi) / 2
    x0, y0 = cx - side / 2, cy - side / 2
    if side <= width:
        x0 = float(np.clip(x0, 0, width - side))
    if side <= height:
        y0 = float(np.clip(y0, 0, height - side))
    return float(x0), float(y0), side


def crop_face(rgb: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 bicubic crop of ``box``, edges replicated outside
    the image (2 px of replication always, so the resampling kernel never meets the border)."""
    from PIL import Image

    x0, y0, side = box
    h, w = rgb.shape[:2]
    pad = int(np.ceil(max(0, -x0, -y0, x0 + side - w, y0 + side - h))) + 2
    padded = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    img = Image.fromarray(padded)
    return np.asarray(img.resize((size, size), Image.Resampling.BICUBIC,
                                 box=(x0 + pad, y0 + pad, x0 + side + pad, y0 + side + pad)), dtype=np.uint8)


@dataclass
class RenderState:
    """Everything portrait-dependent, computed once by :meth:`Renderer.prepare`."""

    size: int
    src: "torch.Tensor"          # (1, 3, S, S) float32 in [0, 1], the cropped portrait
    crop: np.ndarray             # (S, S, 3) uint8, the same crop (sampled by cv2.remap on the CPU)
    verts: np.ndarray            # (N, 2) px, mesh + ring vertices in the crop
    verts3d: np.ndarray          # (468, 3) px (z scaled like x) for head rotation
    flow_res: int                # the backward flow is solved on a flow_res^2 grid, then upsampled
    interp: "torch.Tensor"       # sparse (R*R, N): barycentric weights of each flow pixel's triangle
    basis_px: "torch.Tensor"     # (52, N*2) px offsets per unit blendshape above b0
    basis_px_neg: "torch.Tensor"  # (52, N*2) px offsets per unit blendshape below b0 (closing)
    b0: "torch.Tensor"           # (52,) portrait blendshapes
    frame: FaceFrame             # face frame of the crop
    mouth_gap0: float            # portrait's inner-lip opening, face units
    teeth_rgb: "torch.Tensor"    # (3,)
    cavity_rgb: "torch.Tensor"   # (3,)
    crop_box: tuple[float, float, float]  # (x0, y0, side) of the crop in the original image


class FrameRenderer(Protocol):
    """What :mod:`talkclip.pipelines.generate` needs from a renderer (the rig and the neural one).

    ``prepare(rgb, size, face=None) -> state``: rgb (H, W, 3) uint8; ``face`` an already tracked
    :class:`talkclip.annotate.tracker.FaceResult` of ``rgb`` (tracked here when None; NoFaceError
    when it shows none). ``render(state, blendshapes, pose=None, start=0, stop=None)``:
    blendshapes (T, 52), pose (T, 4, 4) head rotations relative to the portrait or None ->
    frames [start, stop) as (stop - start, size, size, 3) uint8, reading at most ``context``
    rows on each side of that range."""

    context: int

    def prepare(self, rgb: np.ndarray, size: int = 256, face: Any = None) -> Any: ...

    def render(self, state: Any, blendshapes: np.ndarray, pose: np.ndarray | None = None,
               start: int = 0, stop: int | None = None) -> np.ndarray: ...


def check_portrait(rgb: np.ndarray) -> None:
    """InputError unless ``rgb`` is an (H, W, 3) uint8 image."""
    if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8):
        raise InputError(f"expected an (H, W, 3) uint8 RGB portrait, got {getattr(rgb, 'shape', None)} "
                         f"{getattr(rgb, 'dtype', type(rgb).__name__)}")


def track_portrait(rgb: np.ndarray, landmarker: str | Path | None = None):
    """Track one portrait (image mode) -> FaceResult; NoFaceError when it shows no face."""
    from talkclip.annotate.tracker import FaceTracker

    check_portrait(rgb)
    with FaceTracker(landmarker, mode="image") as tracker:
        face = tracker.detect(rgb)
    if face is None:
        raise NoFaceError("no face found in the portrait")
    return face


def check_motion(blendshapes: np.ndarray, pose: np.ndarray | None, start: int,
                 stop: int | None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Validate render inputs -> (bs (T, 52) float32, pose (T, 4, 4) float32 or None, stop);
    InputError on wrong shapes or a frame range outside [0, T]."""
    bs = np.asarray(blendshapes, dtype=np.float32)
    if bs.ndim != 2 or bs.shape[1] != NUM_BLENDSHAPES:
        raise InputError(f"blendshapes must be (T, 52), got {bs.shape}")
    if not np.isfinite(bs).all() or (pose is not None and not np.isfinite(np.asarray(pose, np.float32)).all()):
        raise InputError("blendshapes and pose must be finite (no NaN or Inf)")
    T = bs.shape[0]
    if pose is not None:
        pose = np.asarray(pose, dtype=np.float32)
        if pose.shape != (T, 4, 4):
            raise InputError(f"pose must be (T, 4, 4) = ({T}, 4, 4), got {pose.shape}")
    stop = T if stop is None else min(int(stop), T)
    if not 0 <= start <= stop:
        raise InputError(f"bad frame range [{start}, {stop}) of {T} frames")
    return bs, pose, stop


class Renderer:
    """Blendshape-driven portrait warper (see module docstring).

    ``basis``: optional fitted basis file (``fit-basis``); default: the hand-built rig, which
    the reference measurements found safer than a basis fitted on little data.
    """

    def __init__(self, device: str = "cpu", basis: str | Path | None = None,
                 landmarker: str | Path | None = None, iterations: int = 5, flow_res: int | None = None):

        from .device import resolve_device

        self.device = resolve_device(str(device))
        self.basis = load_basis(basis) if basis is not None else None
        self.landmarker = landmarker
        if not 1 <= int(iterations) <= 20:
            raise InputError(f"iterations must be within 1..20, got {iterations}")
        if flow_res is not None and not 16 <= int(flow_res) <= 512:
            raise InputError(f"flow_res must be within 16..512, got {flow_res}")
        self.iterations = int(iterations)
        self.flow_res = flow_res
        self._topology = mesh_topology()

    # ---- portrait
    context = 0   # frames are independent: render() reads no neighbouring rows

    def prepare(self, rgb: np.ndarray, size: int = 256, face=None) -> RenderState:
        """Track the portrait (image mode; or take the given ``face`` of ``rgb``) and precompute
        everything for :meth:`render`."""
        check_portrait(rgb)
        if face is None:
            face = track_portrait(rgb, self.landmarker)
        return self.prepare_tracked(rgb, face.landmarks, face.blendshapes, size)

    def prepare_tracked(self, rgb: np.ndarray, landmarks: np.ndarray, blendshapes: np.ndarray,
                        size: int = 256) -> RenderState:
        """Same as :meth:`prepare` for an already tracked portrait.

        landmarks: (478, 3) MediaPipe normalised landmarks of ``rgb``; blendshapes: (52,).
        """
        import torch

        if size < 64 or size > 2048:
            raise InputError(f"render size must be within 64..2048, got {size}")
        h, w = rgb.shape[:2]
        pts = landmarks[:NUM_MESH, :2].astype(np.float64) * [w, h]
        z = landmarks[:NUM_MESH, 2].astype(np.float64) * w
        # square crop around the face; kept inside the photo when it fits (shrunk down to
        # 1.4x the face if needed), else padded by edge replication
        x0, y0, side = crop_box(landmarks, w, h, CROP_SCALE, min_scale=1.4)
        crop = crop_face(rgb, (x0, y0, side), size)
        scale = (size - 1) / side  # align_corners convention: px centres 0..S-1
        mesh = (pts - [x0, y0]) * scale
        z = z * scale
        frame = FaceFrame.from_points(mesh)
        q = frame.to_face(mesh)
        b0 = np.asarray(blendshapes, dtype=np.float32)
        D = build_rig(q, b0) if self.basis is None else self.basis   # (52, 468, 2) face units
        # rings around the oval
        oc = mesh[FACE_OVAL].mean(0)
        rings = [oc + s * (mesh[FACE_OVAL] - oc) for s in RING_SCALES]
        verts = np.concatenate([mesh] + rings, 0)              # (N, 2)
        Dn = closing_fields(q, b0, D) if self.basis is None else D

        def to_px(d):  # (52, 468, 2) face units -> (52, N, 2) px incl. the rings
            d_px = frame.offsets_to_px(d.astype(np.float64))
            return np.concatenate([d_px] + [f * d_px[:, FACE_OVAL] for f in RING_FOLLOW_EXPR], 1)

        D_all, Dn_all = to_px(D), to_px(Dn)
        flow_res = min(size, self.flow_res or flow_resolution(size))
        k = (flow_res - 1) / (size - 1)
        tri_index, tri_weight = _rasterise(verts * k, self._topology, flow_res)
        rows = np.repeat(np.arange(flow_res * flow_res), 3)
        interp = torch.sparse_coo_tensor(np.stack([rows, tri_index.ravel()]), tri_weight.ravel(),
                                         (flow_res * flow_res, verts.shape[0]), dtype=torch.float32,
                                         check_invariants=True)
        interp = interp.coalesce().to(self.device)
        gap0 = float(np.mean(q[[14, 87, 317], 1] - q[[13, 82, 312], 1]))
        teeth, cavity = _mouth_colours(crop, mesh, gap0)
        dev = self.device
        t = lambda a, dt=torch.float32: torch.tensor(np.ascontiguousarray(a), dtype=dt, device=dev)  # noqa: E731
        return RenderState(
            size=size,
            src=t(crop).permute(2, 0, 1)[None] / 255.0, crop=np.ascontiguousarray(crop),
            verts=verts, verts3d=np.concatenate([mesh, z[:, None]], 1),
            flow_res=flow_res, interp=interp,
            basis_px=t(D_all.reshape(NUM_BLENDSHAPES, -1)), basis_px_neg=t(Dn_all.reshape(NUM_BLENDSHAPES, -1)),
            b0=t(b0), frame=frame,
            mouth_gap0=gap0, teeth_rgb=t(teeth), cavity_rgb=t(cavity),
            crop_box=(float(x0), float(y0), side),
        )

    # ---- frames
    def render(self, state: RenderState, blendshapes: np.ndarray, pose: np.ndarray | None = None,
               start: int = 0, stop: int | None = None, chunk: int = 32) -> np.ndarray:
        """blendshapes (T, 52) in [0, 1] [+ pose (T, 4, 4) head rotations relative to the
        portrait, e.g. from :func:`relative_poses`] -> frames [start, stop) as (n, S, S, 3) uint8."""
        import torch

        bs, pose, stop = check_motion(blendshapes, pose, start, stop)
        bs = bs[start:stop]
        pose_off = self._pose_offsets(state, pose[start:stop]) if pose is not None else None  # (n, N, 2) px
        out = []
        with torch.no_grad():
            for s in range(0, bs.shape[0], chunk):
                b = torch.as_tensor(bs[s:s + chunk], device=self.device)
                d = b - state.b0                                                  # (t, 52)
                off = (d.clamp(min=0) @ state.basis_px + d.clamp(max=0) @ state.basis_px_neg)
                off = off.view(b.shape[0], -1, 2)                                 # (t, N, 2) px
                if pose_off is not None:
                    off = off + torch.as_tensor(pose_off[s:s + chunk], device=self.device)
                out.append(self._render_offsets(state, off))
        return np.concatenate(out, 0) if out else np.zeros((0, state.size, state.size, 3), np.uint8)

    def _pose_offsets(self, state: RenderState, pose: np.ndarray) -> np.ndarray:
        """Vertex offsets (T, N, 2) px of head rotations ``pose`` (T, 4, 4), given relative to the
        portrait's own pose (identity = unchanged; see :func:`relative_poses`)."""
        rel = pose[:, :3, :3].astype(np.float64)
        flip = np.diag([1.0, -1.0, -1.0])                              # y-up metric -> y-down image
        rel = flip @ rel @ flip
        p = state.verts3d
        c = p.mean(0)
        moved = (p - c) @ np.swapaxes(rel, 1, 2) + c                   # (T, 468, 3)
        off = moved[..., :2] - p[None, :, :2]
        rings = [f * off[:, FACE_OVAL] for f in RING_FOLLOW_POSE]
        return np.concatenate([off] + rings, 1).astype(np.float32)

    def _render_offsets(self, state: RenderState, off: "torch.Tensor") -> np.ndarray:
        """off (t, N, 2) px vertex offsets -> (t, S, S, 3) uint8."""
        import torch
        import torch.nn.functional as F

        S, R = state.size, state.flow_res
        t, n = off.shape[:2]
        dev = self.device
        k = (R - 1) / (S - 1)
        # forward field on the R x R grid: barycentric blend of each pixel's triangle offsets
        off_r = (off * k).permute(1, 0, 2).reshape(n, t * 2)                       # (N, t*2) flow px
        fwd = (state.interp @ off_r).view(R, R, t, 2).permute(2, 3, 0, 1).contiguous()  # (t, 2, R, R)
        # Jacobian of the forward field by central differences: (t, 4, R, R) = d(fx, fy)/d(x, y)
        gx = torch.zeros_like(fwd)
        gy = torch.zeros_like(fwd)
        gx[..., 1:-1] = (fwd[..., 2:] - fwd[..., :-2]) / 2
        gy[..., 1:-1, :] = (fwd[..., 2:, :] - fwd[..., :-2, :]) / 2
        field = torch.cat([fwd, gx, gy], 1)                                         # (t, 6, R, R)
        best = self._invert(field, 0.15 * state.frame.iod * k)                      # (t, 2, R, R)
        # source position of every output pixel in full px; the R -> S bilinear upsampling (corners
        # aligned) is exact for the identity part, so it may act on the positions themselves
        pos = (best / k).contiguous()                                               # (t, 2, R, R) planes
        if R != S:
            pos = F.interpolate(pos, size=(S, S), mode="bilinear", align_corners=True)
        frames = self._sample(state, pos)                                           # (t, S, S, 3) uint8
        return self._mouth(state, off, frames).cpu().numpy()

    def _sample(self, state: RenderState, pos: "torch.Tensor") -> "torch.Tensor":
        """The portrait crop read at ``pos`` (t, 2, S, S) source px (x, y planes), bilinear with edge
        pixels repeated outside -> (t, S, S, 3) uint8: cv2.remap on the CPU (fixed-point, straight
        to uint8; a third of grid_sample's time, within a grey level of it), else grid_sample."""
        if pos.device.type == "cpu":
            return _remap(state.crop, pos)
        return _grid_sample_u8(state.src, pos)

    def _invert(self, field: "torch.Tensor", max_step: float) -> "torch.Tensor":
        """Solve x + f(x) = y for every grid pixel y: Newton (exact within a triangle),
        step-limited to ``max_step``, keeping the iterate with the smallest residual.

        field: (t, 6, R, R): f (2), df/dx (2), df/dy (2) per grid pixel, sampled bilinearly with
        border clamping. The first iterate is y itself, where the field is known without
        sampling; the second is solved on the whole grid (grid_sample); after that only the few
        pixels whose residual is still above :data:`NEWTON_TOL` go on (about 5-10% after two
        steps, under 1% after three), sampled by gathering from a channels-last table.
        Returns x (t, 2, R, R) in grid pixels."""
        import torch
        import torch.nn.functional as F

        t, _, R, _ = field.shape
        dev = field.device
        tol2 = NEWTON_TOL * NEWTON_TOL                                              # residuals compared squared
        ys, xs = torch.meshgrid(torch.arange(R, device=dev, dtype=torch.float32),
                                torch.arange(R, device=dev, dtype=torch.float32), indexing="ij")
        y = torch.stack([xs, ys])[None]                                             # (1, 2, R, R) target px
        x, g = y.expand(t, 2, R, R), field
        best, best_err = x, None
        for it in range(min(2, self.iterations)):                                   # on the whole grid
            if it:
                g = F.grid_sample(field, (x * (2.0 / (R - 1)) - 1).permute(0, 2, 3, 1), mode="bilinear",
                                  padding_mode="border", align_corners=True)       # (t, 6, R, R)
            r = x + g[:, :2] - y                                                    # (t, 2, R, R) residual
            err = r[:, 0] * r[:, 0] + r[:, 1] * r[:, 1]                             # (t, R, R) squared
            if best_err is None:
                best_err = err
            else:
                best = torch.where((err < best_err)[:, None], x, best)
                best_err = torch.minimum(err, best_err)
            if it + 1 == self.iterations or float(best_err.max()) <= tol2:
                return best
            x = x - _newton_step(g[:, 2], g[:, 3], g[:, 4], g[:, 5], r[:, 0], r[:, 1], max_step)
        # the rest on the pixels not yet solved, as flat (P,) lists of (frame, row, col) ids
        out = best.permute(0, 2, 3, 1).contiguous()                                 # (t, R, R, 2)
        flat_best, flat_err = out.view(-1, 2), best_err.reshape(-1)                 # (t*R*R, 2), (t*R*R,)
        table = field.permute(0, 2, 3, 1).reshape(-1, 6)                            # (t*R*R, 6)
        ids = (flat_err > tol2).nonzero().squeeze(1)                                # (P,)
        xa = x.permute(0, 2, 3, 1).reshape(-1, 2)[ids]                              # (P, 2) iterates
        pix = ids % (R * R)
        ya = torch.stack([pix % R, pix // R], 1).float()                            # (P, 2) targets
        for it in range(2, self.iterations):
            g = _bilinear_rows(table, ids - pix, xa, R)                             # (P, 6)
            r = xa + g[:, :2] - ya                                                  # (P, 2)
            err = r[:, 0] * r[:, 0] + r[:, 1] * r[:, 1]                             # (P,) squared
            better = err < flat_err[ids]
            flat_best[ids] = torch.where(better[:, None], xa, flat_best[ids])
            flat_err[ids] = torch.where(better, err, flat_err[ids])
            go = flat_err[ids] > tol2
            if it + 1 == self.iterations or not bool(go.any()):
                break
            step = _newton_step(g[:, 2], g[:, 3], g[:, 4], g[:, 5], r[:, 0], r[:, 1], max_step)   # (P, 2)
            ids, pix, xa, ya = ids[go], pix[go], (xa - step)[go], ya[go]
        return out.permute(0, 3, 1, 2)                                              # (t, 2, R, R)

    def _mouth(self, state: RenderState, off: "torch.Tensor", frames: "torch.Tensor") -> "torch.Tensor":
        """Composite a synthetic mouth interior where the lips open wider than the portrait's:
        frames (t, S, S, 3) uint8, changed in place (only in a box around the lips) and returned."""
        import torch

        fr = state.frame
        S = state.size
        t = off.shape[0]
        dev = self.device
        ex = torch.as_tensor(fr.ex, dtype=torch.float32, device=dev)
        ey = torch.as_tensor(fr.ey, dtype=torch.float32, device=dev)
        org = torch.as_tensor(fr.origin, dtype=torch.float32, device=dev)
        verts = torch.as_tensor(state.verts, dtype=torch.float32, device=dev)

        def chain(ids):  # (t, k, 2) face units of displaced vertices
            p = verts[ids][None] + off[:, ids]
            rel = p - org
            return torch.stack([rel @ ex, rel @ ey], -1) / fr.iod

        up, lo = chain(UPPER_INNER_LIP), chain(LOWER_INNER_LIP)
        gap = (lo[:, 4:7, 1] - up[:, 4:7, 1]).mean(1)                  # (t,) centre opening
        open_w = ((gap - state.mouth_gap0) / 0.06).clamp(0, 1)          # (t,)
        if not bool((open_w > 0).any()):
            return frames
        # work inside the box around all frames' displaced lips only
        lips = verts[UPPER_INNER_LIP + LOWER_INNER_LIP][None] + off[:, UPPER_INNER_LIP + LOWER_INNER_LIP]
        pad = 0.1 * fr.iod + 3
        x0 = int(max(0, np.floor(float(lips[..., 0].min()) - pad)))
        x1 = int(min(S, np.ceil(float(lips[..., 0].max()) + pad) + 1))
        y0 = int(max(0, np.floor(float(lips[..., 1].min()) - pad)))
        y1 = int(min(S, np.ceil(float(lips[..., 1].max()) + pad) + 1))
        if x1 <= x0 or y1 <= y0:
            return frames
        yy, xx = torch.meshgrid(torch.arange(y0, y1, device=dev, dtype=torch.float32),
                                torch.arange(x0, x1, device=dev, dtype=torch.float32), indexing="ij")
        rel = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1) - org
        pu, pv = (rel @ ex) / fr.iod, (rel @ ey) / fr.iod                  # (P,) face units
        v_up = _interp_batch(up[..., 0], up[..., 1], pu)               # (t, P)
        v_lo = _interp_batch(lo[..., 0], lo[..., 1], pu)
        u_min = torch.minimum(up[:, 0, 0], up[:, -1, 0])[:, None]
        u_max = torch.maximum(up[:, 0, 0], up[:, -1, 0])[:, None]
        soft = 1.0 / fr.iod * 1.2                                      # ~1.2 px edge
        sig = torch.sigmoid
        inside = sig((pv - v_up) / soft) * sig((v_lo - pv) / soft) * sig((pu - u_min) / soft) \
            * sig((u_max - pu) / soft)                                  # (t, P)
        alpha = inside * open_w[:, None]
        opening = (v_lo - v_up).clamp(min=1e-4)
        teeth_h = torch.clamp(0.3 * opening, max=0.09)
        low_h = torch.clamp(0.2 * opening, max=0.045)
        mid = (u_min + u_max) / 2
        half = ((u_max - u_min) / 2).clamp(min=1e-3)
        r = ((pu - mid) / half).clamp(-1, 1)
        shade = (1 - 0.55 * r * r)                                     # darker towards the corners
        teeth_a = sig((v_up + teeth_h - pv) / soft) * shade
        low_a = sig((pv - (v_lo - low_h)) / soft) * shade * 0.8
        depth = ((pv - v_up) / opening).clamp(0, 1)                    # 0 under the upper lip .. 1 at the lower
        cav = state.cavity_rgb[None, :, None] * (0.7 + 0.6 * depth[:, None])   # (t, 3, P), tongue lighter
        teeth = state.teeth_rgb[None, :, None] * (0.75 + 0.25 * shade[:, None])
        if state.mouth_gap0 > 0.04:
            # the portrait shows its own upper teeth: keep them attached to the upper lip
            # (the portrait's mouth interior moved by the upper lip's mean offset)
            import torch.nn.functional as F

            shift = off[:, UPPER_INNER_LIP].mean(1)                     # (t, 2) px
            grid = torch.stack([xx, yy], -1)[None] - shift[:, None, None]
            own = F.grid_sample(state.src.expand(t, -1, -1, -1), grid * (2.0 / (S - 1)) - 1,
                                align_corners=True, padding_mode="border").reshape(t, 3, -1)
            teeth_a = sig((v_up + min(state.mouth_gap0, 0.16) * 0.8 - pv) / soft)
            teeth = own
        synth = cav * (1 - teeth_a[:, None]) + teeth * teeth_a[:, None]
        synth = synth * (1 - low_a[:, None]) + 0.8 * state.teeth_rgb[None, :, None] * low_a[:, None]
        roi = frames[:, y0:y1, x0:x1].permute(0, 3, 1, 2).reshape(t, 3, -1).float() / 255   # (t, 3, P)
        blended = roi * (1 - alpha[:, None]) + synth * alpha[:, None]
        blended = (blended.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        frames[:, y0:y1, x0:x1] = blended.view(t, 3, y1 - y0, x1 - x0).permute(0, 2, 3, 1)
        return frames


def flow_resolution(size: int) -> int:
    """Side of the grid the backward flow is solved on for ``size`` px frames: 96 up to 256 px,
    else 128. At 256 px, 96 renders frames over 45 dB PSNR from 128 (49 dB on a real talking
    track) and closes an open mouth as far (tests/model/test_renderer.py); 64 does not (the
    lips' triangles are a few px thin)."""
    return min(size, 96 if size <= 256 else 128)


NEWTON_TOL = 1e-3   # flow-grid px: when every residual is below this, Newton stops early


def _remap(crop: np.ndarray, pos: "torch.Tensor") -> "torch.Tensor":
    """crop (S, S, 3) uint8 read at pos (t, 2, S, S) px (x, y planes) by cv2.remap -> (t, S, S, 3) uint8."""
    import cv2
    import torch

    maps = pos.numpy()
    out = np.empty((maps.shape[0],) + maps.shape[2:] + (3,), np.uint8)
    for i, (mx, my) in enumerate(maps):
        cv2.remap(crop, mx, my, cv2.INTER_LINEAR, dst=out[i], borderMode=cv2.BORDER_REPLICATE)
    return torch.from_numpy(out)


def _grid_sample_u8(src: "torch.Tensor", pos: "torch.Tensor") -> "torch.Tensor":
    """src (1, 3, S, S) float in [0, 1] read at pos (t, 2, S, S) px (x, y planes) by grid_sample
    (any device) -> (t, S, S, 3) uint8."""
    import torch
    import torch.nn.functional as F

    S = src.shape[-1]
    grid = pos.permute(0, 2, 3, 1) * (2.0 / (S - 1)) - 1                              # (t, S, S, 2)
    frames = F.grid_sample(src.expand(len(pos), -1, -1, -1), grid, mode="bilinear",
                           padding_mode="border", align_corners=True)               # (t, 3, S, S)
    return (frames.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)


def _bilinear_rows(table: "torch.Tensor", base: "torch.Tensor", xy: "torch.Tensor", R: int) -> "torch.Tensor":
    """grid_sample's bilinear read (corners aligned, border clamped) of single points: table
    (t*R*R, C) channels-last planes, base (P,) the row of each point's plane origin (frame *
    R*R), xy (P, 2) grid px -> (P, C)."""
    import torch

    p = xy.clamp(0, R - 1)
    p0 = p.floor().clamp(max=R - 2)
    w = (p - p0)                                                                     # (P, 2) fractions
    i = base + p0[:, 1].long() * R + p0[:, 0].long()                                 # (P,) top-left row
    wx, wy = w[:, :1], w[:, 1:]
    return ((table[i] * (1 - wx) + table[i + 1] * wx) * (1 - wy)
            + (table[i + R] * (1 - wx) + table[i + R + 1] * wx) * wy)


def _newton_step(jxx, jyx, jxy, jyy, rx, ry, max_step: float) -> "torch.Tensor":
    """(I + J)^-1 r (r itself where I + J is near-singular), its length limited to ``max_step``:
    (t, 2, R, R) from (t, R, R) planes, or (P, 2) from (P,) lists. J = [[jxx, jxy], [jyx, jyy]] (columns df/dx, df/dy)."""
    import torch

    a, b, c, d = 1 + jxx, jxy, jyx, 1 + jyy
    det = a * d - b * c
    ok = det.abs() > 0.05
    det = torch.where(ok, det, torch.ones_like(det))
    sx = torch.where(ok, (d * rx - b * ry) / det, rx)
    sy = torch.where(ok, (-c * rx + a * ry) / det, ry)
    scale = (max_step / torch.sqrt(sx * sx + sy * sy).clamp(min=1e-9)).clamp(max=1.0)
    return torch.stack([sx * scale, sy * scale], 1)


MAX_POSE_DEG = 15.0  # a 2-D warp cannot show the hidden side of a face: larger turns are damped


def relative_poses(pose: np.ndarray, max_deg: float = MAX_POSE_DEG) -> np.ndarray:
    """Facial transformation matrices (T, 4, 4) of a driving video -> head rotations relative to
    its first frame (T, 4, 4; rotation only), each limited to ``max_deg`` degrees."""
    R = pose[:, :3, :3].astype(np.float64)
    R = R / np.linalg.norm(R, axis=1, keepdims=True).clip(1e-9)       # drop scale
    rel = R @ np.swapaxes(R[:1], 1, 2)                                 # (T, 3, 3)
    out = np.repeat(np.eye(4)[None], len(R), 0)
    for i, m in enumerate(rel):
        # axis-angle, angle clamped (Rodrigues)
        ang = np.arccos(np.clip((np.trace(m) - 1) / 2, -1, 1))
        if ang < 1e-6:
            continue
        axis = np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]]) / (2 * np.sin(ang))
        a = min(ang, np.deg2rad(max_deg))
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        out[i, :3, :3] = np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K
    return out.astype(np.float32)


def _interp_batch(xp: "torch.Tensor", fp: "torch.Tensor", x: "torch.Tensor") -> "torch.Tensor":
    """Piecewise-linear interpolation per row: xp, fp (t, k) (any order), x (P,) -> (t, P)."""
    import torch

    order = xp.argsort(1)
    xs, fs = xp.gather(1, order), fp.gather(1, order)
    k = xs.shape[1]
    xq = x[None].expand(xs.shape[0], -1).contiguous()
    i = torch.searchsorted(xs.contiguous(), xq).clamp(1, k - 1)
    x0, x1 = xs.gather(1, i - 1), xs.gather(1, i)
    f0, f1 = fs.gather(1, i - 1), fs.gather(1, i)
    w = ((xq - x0) / (x1 - x0).clamp(min=1e-6)).clamp(0, 1)
    return f0 + w * (f1 - f0)


def _rasterise(verts: np.ndarray, tris: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel of an S x S grid: vertex ids (S*S, 3) and barycentric weights (S*S, 3) of the
    triangle covering it (weights 0 where no triangle does; where triangles overlap, the last).

    All triangles at once: every pixel of every triangle's bounding box is a candidate (M
    triangles -> P candidates), tested by its barycentric coordinates."""
    idx = np.zeros((size * size, 3), dtype=np.int64)
    wts = np.zeros((size * size, 3), dtype=np.float32)
    a, b, c = (verts[tris[:, i]] for i in range(3))                              # (M, 2) each
    lo = np.maximum(np.floor(np.minimum(np.minimum(a, b), c)).astype(np.int64), 0)
    hi = np.minimum(np.ceil(np.maximum(np.maximum(a, b), c)).astype(np.int64), size - 1)
    det = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])   # (M,)
    span = hi - lo + 1                                                            # (M, 2) box w, h
    area = np.where((span > 0).all(1) & (np.abs(det) >= 1e-9), span[:, 0] * span[:, 1], 0)
    t = np.repeat(np.arange(len(tris)), area)                                     # (P,) triangle of each candidate
    k = np.arange(len(t)) - np.repeat(np.cumsum(area) - area, area)               # (P,) index inside its box
    xs, ys = lo[t, 0] + k % span[t, 0], lo[t, 1] + k // span[t, 0]
    px, py = xs.astype(np.float64), ys.astype(np.float64)
    a, b, c, det = a[t], b[t], c[t], det[t]
    l1 = ((b[:, 1] - c[:, 1]) * (px - c[:, 0]) + (c[:, 0] - b[:, 0]) * (py - c[:, 1])) / det
    l2 = ((c[:, 1] - a[:, 1]) * (px - c[:, 0]) + (a[:, 0] - c[:, 0]) * (py - c[:, 1])) / det
    l3 = 1 - l1 - l2
    ok = (l1 >= -1e-6) & (l2 >= -1e-6) & (l3 >= -1e-6)
    flat, t, lam = (ys * size + xs)[ok], t[ok], np.stack([l1[ok], l2[ok], l3[ok]], -1)
    last = len(flat) - 1 - np.unique(flat[::-1], return_index=True)[1]            # the last triangle per pixel
    idx[flat[last]] = tris[t[last]]
    wts[flat[last]] = lam[last]
    return idx, wts


def _mouth_colours(crop: np.ndarray, mesh: np.ndarray, gap0: float) -> tuple[np.ndarray, np.ndarray]:
    """Teeth and cavity colours (3,) in [0, 1]: from the portrait's open mouth when it shows
    one, else defaults tinted by the face's brightness."""
    from PIL import Image, ImageDraw

    skin = crop[np.clip(mesh[[1, 4, 5, 195], 1].astype(int), 0, crop.shape[0] - 1),
                np.clip(mesh[[1, 4, 5, 195], 0].astype(int), 0, crop.shape[1] - 1)].mean(0) / 255.0
    bright = float(np.clip(skin.mean() / 0.6, 0.75, 1.1))
    teeth = np.array([0.90, 0.88, 0.82]) * bright
    cavity = np.array([0.16, 0.05, 0.06])
    if gap0 > 0.04:
        mask = Image.new("L", (crop.shape[1], crop.shape[0]), 0)
        poly = [tuple(p) for p in mesh[UPPER_INNER_LIP + LOWER_INNER_LIP[::-1]]]
        ImageDraw.Draw(mask).polygon(poly, fill=255)
        inside = crop[np.asarray(mask) > 0].astype(np.float64) / 255.0
        if len(inside) >= 20:
            lum = inside.mean(1)
            hi = inside[lum >= np.quantile(lum, 0.7)].mean(0)
            if hi.mean() > 0.45:
                teeth = np.clip(hi, 0, 1)
    return teeth.astype(np.float32), cavity.astype(np.float32)
