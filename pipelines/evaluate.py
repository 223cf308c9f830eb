"""`talkclip eval`: image, landmark and style metrics of generated videos against references.

Pairing: two mp4 files, or two folders whose mp4 files are paired by file name. Frames are
paired by index up to the shorter video. When frame sizes differ, each reference frame is
resized (bilinear) to the generated frame's size for SSIM, so SSIM is only meaningful when both
show the same framing (e.g. a video generated from the reference's own first frame).

Metrics (per pair, then averaged over pairs):

- SSIM: Wang et al. 2004 on the luma (BT.601 Y, 0-255) with an 11x11 Gaussian window
  (sigma 1.5), K1 = 0.01, K2 = 0.03, valid region only; mean over frames.
- CPBD: cumulative probability of blur detection (Narvekar & Karam 2011), our implementation:
  Canny edges (OpenCV, thresholds 100/200 on the luma) that are mostly vertical (|Gx| >= |Gy|
  from Sobel); 64x64 blocks with more than 0.2 % edge pixels are edge blocks; block contrast C
  (max - min luma) sets the just-noticeable-blur width (5 if C <= 50, else 3); the edge width of
  each edge pixel is the distance between the luma extrema on either side along its row
  (Marziliano et al.); P_blur = 1 - exp(-(w / w_JNB)^3.6); CPBD is the share of edge pixels with
  P_blur <= 0.63. Higher = sharper. Mean over every other frame (it changes slowly and is the
  costliest metric) of the generated video, and of the references at the generated size.
- F-LMD / M-LMD: MediaPipe landmarks of both videos (tracked in video mode), each face expressed
  relative to its own eye midpoint and divided by its own inter-ocular distance (IOD, distance
  between the eye centres); LMD = mean Euclidean distance over landmarks and frames, in IOD
  units (x 100 gives percent of the IOD). F-LMD uses all 478 points, M-LMD the 40 lip points.
  Frames where either video shows no face are skipped.
- Style score (with ``text``): the AU phrases of the text are parsed (e.g. "inner brows
  slightly raised" -> AU1 level 1; no adverb = level 2, "extremely" = level 3, per the AU
  table); the AU estimator re-runs on the generated video, and the score is the share of
  mentioned AUs found active (level >= 1); ``style_exact`` is the share at exactly the level.
- SyncNet (with ``syncnet`` = a safetensors conversion of syncnet_python's syncnet_v2.model;
  see talkclip.model.syncnet for the network, MFCC, offset search and confidence): scored on
  each *generated* video against its own audio track. The video is resampled to 25 fps
  (nearest frame in time, as ffmpeg ``-r 25`` roughly does), tracked with MediaPipe, and each
  frame cropped as syncnet_python's run_pipeline crops its S3FD face track: box half-size s =
  max(w, h) / 2 of the face box, centre and s median-filtered over 13 frames (zero-padded
  ends, like scipy's medfilt), crop rows cy - s .. cy + 1.8 s, columns cx - 1.4 s .. cx + 1.4 s,
  grey 110 outside the image, resized to 224 x 224 (bilinear), BGR. Difference: our face box is
  the bounding box of the 478 MediaPipe landmarks (frames without a face take the box
  interpolated from their neighbours), not an S3FD detection, so crops are similar but not
  identical. Reported: offset (frames, 25 fps), confidence (median - min of the mean distance
  over shifts -15..15), min distance. Not checked against syncnet_python with the real weights
  (they could not be obtained here). Without ``syncnet`` a note says it was skipped.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from talkclip import InputError, MediaError, NoFaceError
from talkclip.schemas import AU_IDS, NUM_LANDMARKS

LIP_POINTS = sorted({61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
                     78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415})
EYE_R = [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173]
EYE_L = [263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398]
assert len(LIP_POINTS) == 40, "40 lip landmarks"


@dataclass
class PairResult:
    name: str
    frames: int                     # frames compared (shorter video)
    ssim: float
    cpbd: float                     # generated
    cpbd_reference: float
    f_lmd: float                    # IOD units
    m_lmd: float
    lmd_frames: int                 # frames with a face in both
    style_score: float | None = None
    style_exact: float | None = None
    style_aus: dict[int, int] = field(default_factory=dict)       # AU -> level named in the text
    style_levels: dict[int, int] = field(default_factory=dict)    # AU -> level measured
    syncnet_offset: int | None = None          # frames at 25 fps, > 0: audio leads (generated video)
    syncnet_confidence: float | None = None    # median - min of the mean distance over shifts
    syncnet_min_dist: float | None = None


def _nanmean(values) -> float:
    """Mean of the finite values; NaN (quietly: no numpy warning) when there are none."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


@dataclass
class EvalReport:
    pairs: list[PairResult]
    notes: list[str]

    @property
    def mean(self) -> dict[str, float]:
        keys = ("ssim", "cpbd", "cpbd_reference", "f_lmd", "m_lmd")
        out = {k: _nanmean([getattr(p, k) for p in self.pairs]) for k in keys}
        scores = [p.style_score for p in self.pairs if p.style_score is not None]
        if scores:
            out["style_score"] = float(np.mean(scores))
        for k in ("syncnet_confidence", "syncnet_min_dist"):
            vals = [getattr(p, k) for p in self.pairs if getattr(p, k) is not None]
            if vals:
                out[k] = float(np.mean(vals))
        return out

    def to_dict(self) -> dict:
        def clean(v):
            if isinstance(v, float) and not np.isfinite(v):
                return None
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            return v
        return {"pairs": [{k: clean(v) for k, v in asdict(p).items()} for p in self.pairs],
                "mean": clean(self.mean), "notes": self.notes}


# ---------------------------------------------------------------- metrics on arrays

def luma(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) float32 BT.601 luma in 0..255."""
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray, axis=None) -> np.ndarray | float:
    """PSNR in dB of 8-bit images a, b (any equal shapes), over all values or per ``axis``
    (e.g. (1, 2, 3) for (N, H, W, 3) frames); inf where they are equal."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=axis)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(255.0 ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM of luma images a, b (N, H, W) float 0..255 -> (N,) (see module docstring)."""
    import torch
    import torch.nn.functional as F

    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"ssim needs equal (N, H, W), got {a.shape} {b.shape}")
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, None]
    y = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))[:, None]
    g = torch.exp(-0.5 * ((torch.arange(11, dtype=torch.float32) - 5) / 1.5) ** 2)
    g = g / g.sum()
    win = (g[:, None] * g[None, :])[None, None]                        # (1, 1, 11, 11)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = F.conv2d(x, win), F.conv2d(y, win)
    sxx = F.conv2d(x * x, win) - mu_x ** 2
    syy = F.conv2d(y * y, win) - mu_y ** 2
    sxy = F.conv2d(x * y, win) - mu_x * mu_y
    m = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return m.mean(dim=(1, 2, 3)).double().numpy()


def _run_lengths(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a boolean (H, W-1) 'step c -> c+1 goes the edge's way' array: how many such steps run
    to the right starting at c, and to the left ending at c-1, for every column c of (H, W)."""
    h, w1 = pos.shape
    right = np.zeros((h, w1 + 1), np.int32)
    for c in range(w1 - 1, -1, -1):
        right[:, c] = np.where(pos[:, c], right[:, c + 1] + 1, 0)
    left = np.zeros((h, w1 + 1), np.int32)
    run = np.zeros(h, np.int32)
    for c in range(1, w1 + 1):
        run = np.where(pos[:, c - 1], run + 1, 0)
        left[:, c] = run
    return right, left


def cpbd(gray: np.ndarray) -> float:
    """CPBD sharpness of one luma image (H, W) 0..255 (see module docstring); NaN without edges."""
    import cv2

    img = np.clip(gray, 0, 255).astype(np.uint8)
    edges = cv2.Canny(img, 100, 200) > 0
    f = img.astype(np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    edges &= np.abs(gx) >= np.abs(gy)
    d = np.diff(f, axis=1)                                              # (H, W-1)
    up_r, up_l = _run_lengths(d > 0)
    dn_r, dn_l = _run_lengths(d < 0)
    rising = gx > 0
    width = np.where(rising, up_r + up_l, dn_r + dn_l).astype(np.float32)   # extrema distance
    h, w = img.shape
    blk = 64
    widths, jnbs = [], []
    for y in range(0, h - blk + 1, blk):
        for x in range(0, w - blk + 1, blk):
            e = edges[y:y + blk, x:x + blk]
            if e.sum() <= 0.002 * blk * blk:
                continue
            block = f[y:y + blk, x:x + blk]
            contrast = float(block.max() - block.min())
            ww = width[y:y + blk, x:x + blk][e]
            ww = ww[ww > 0]
            widths.append(ww)
            jnbs.append(np.full(len(ww), 5.0 if contrast <= 50 else 3.0, np.float32))
    if not widths or sum(len(x) for x in widths) == 0:
        return float("nan")
    wv, jv = np.concatenate(widths), np.concatenate(jnbs)
    p_blur = 1 - np.exp(-np.abs(wv / jv) ** 3.6)
    return float(np.mean(p_blur <= 0.63))


def normalised_landmarks(lms: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, 478, 3) MediaPipe landmarks -> (T, 478, 2) relative to the eye midpoint, in IOD units."""
    p = lms[..., :2] * np.array([width, height], np.float32)
    er, el = p[:, EYE_R].mean(1), p[:, EYE_L].mean(1)                  # (T, 2)
    iod = np.linalg.norm(el - er, axis=-1).clip(1e-6)                   # (T,)
    return (p - ((er + el) / 2)[:, None]) / iod[:, None, None]


def lmd(gen: np.ndarray, ref: np.ndarray, points: list[int] | None = None) -> float:
    """Mean landmark distance between (T, 478, 2) normalised landmark sets (IOD units)."""
    if points is not None:
        gen, ref = gen[:, points], ref[:, points]
    if len(gen) == 0:
        return float("nan")
    return float(np.linalg.norm(gen - ref, axis=-1).mean())


def parse_au_phrases(text: str, table=None) -> dict[int, int]:
    """AU phrases in a caption -> {AU: level}: "<noun> [adverb] <verb>" per the AU table;
    the level is the adverb's (no adverb matches the level whose adverb is empty)."""
    from talkclip.annotate.au import load_au_table

    table = table or load_au_table()
    low = " ".join(re.findall(r"[a-z]+", text.lower()))
    found: dict[int, int] = {}
    for i, au in enumerate(AU_IDS):
        verbs = "|".join(re.escape(v) for v in table.verbs[i] if v)
        advs = [a for a in table.adverbs[i]]
        pat = rf"\b{re.escape(table.nouns[i])} (?:(\w+(?: \w+)?) )?(?:{verbs})\b"
        for m in re.finditer(pat, low):
            adv = m.group(1) or ""
            if adv in advs:
                found[au] = advs.index(adv) + 1
                break
    return found


# ---------------------------------------------------------------- videos

def _pairs(generated: Path, reference: Path) -> list[tuple[str, Path, Path]]:
    generated, reference = Path(generated), Path(reference)
    for p, what in ((generated, "--generated"), (reference, "--reference")):
        if not p.exists():
            raise InputError(f"{what} not found: {p}")
    if generated.is_dir() != reference.is_dir():
        raise InputError("--generated and --reference must both be files or both be folders")
    if generated.is_file():
        return [(generated.name, generated, reference)]
    gen = {p.name: p for p in sorted(generated.glob("*.mp4"))}
    ref = {p.name: p for p in sorted(reference.glob("*.mp4"))}
    common = sorted(set(gen) & set(ref))
    if not common:
        raise InputError(f"no mp4 file names in common between {generated} and {reference}")
    return [(n, gen[n], ref[n]) for n in common]


def _resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    if rgb.shape[:2] == (h, w):
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))


def evaluate_pair(name: str, gen_path: Path, ref_path: Path, *, text: str | None = None,
                  landmarker: str | Path | None = None, estimator: str = "mediapipe") -> PairResult:
    """All metrics for one generated/reference pair (frames paired by index)."""
    from talkclip.annotate.tracker import FaceTracker, Track, iter_tracked

    ssims, cp_g, cp_r = [], [], []
    lm_g, lm_r, face_g, face_r, bs_g, pose_g, ts = [], [], [], [], [], [], []
    size_g = size_r = (0, 0)
    zero_lm = np.zeros((NUM_LANDMARKS, 3), np.float32)
    with FaceTracker(landmarker, mode="video") as tg, FaceTracker(landmarker, mode="video") as tr:
        batch_g, batch_r = [], []

        def flush():
            if batch_g:
                a, b = np.stack(batch_g), np.stack(batch_r)
                ssims.extend(ssim(a, b).tolist())
                batch_g.clear()
                batch_r.clear()

        n = 0
        for (fg, rg), (fr, rr) in zip(iter_tracked(gen_path, tg), iter_tracked(ref_path, tr)):
            h, w = fg.rgb.shape[:2]
            size_g, size_r = (w, h), (fr.rgb.shape[1], fr.rgb.shape[0])
            ref_small = _resize(fr.rgb, h, w)
            yg, yr = luma(fg.rgb), luma(ref_small)
            batch_g.append(yg)
            batch_r.append(yr)
            if len(batch_g) >= 16:
                flush()
            if n % 2 == 0:  # CPBD on every other frame: it changes slowly and costs the most
                cp_g.append(cpbd(yg))
                cp_r.append(cpbd(yr))
            face_g.append(rg is not None)
            face_r.append(rr is not None)
            lm_g.append(rg.landmarks if rg is not None else zero_lm)
            lm_r.append(rr.landmarks if rr is not None else zero_lm)
            bs_g.append(rg.blendshapes if rg is not None else np.zeros(52, np.float32))
            pose_g.append(rg.pose if rg is not None else np.zeros((4, 4), np.float32))
            ts.append(fg.timestamp_ms)
            n += 1
        flush()
    if n == 0:
        raise MediaError(f"no frames to compare in {name}")
    both = np.asarray(face_g) & np.asarray(face_r)
    G = normalised_landmarks(np.stack(lm_g)[both], *size_g)
    R = normalised_landmarks(np.stack(lm_r)[both], *size_r)
    res = PairResult(name=name, frames=n, ssim=float(np.mean(ssims)),
                     cpbd=_nanmean(cp_g), cpbd_reference=_nanmean(cp_r),
                     f_lmd=lmd(G, R), m_lmd=lmd(G, R, LIP_POINTS), lmd_frames=int(both.sum()))
    if text:
        from talkclip.annotate.au import clip_au, get_estimator, load_au_table

        table = load_au_table()
        wanted = parse_au_phrases(text, table)
        track = Track(str(gen_path), 0.0, size_g[0], size_g[1], np.asarray(ts, np.int64),
                      np.asarray(face_g), np.stack(bs_g), np.stack(pose_g), np.stack(lm_g))
        levels = table.levels(clip_au(get_estimator(estimator).estimate(track)))
        measured = {au: int(levels[AU_IDS.index(au)]) for au in wanted}
        res.style_aus, res.style_levels = wanted, measured
        if wanted:
            res.style_score = float(np.mean([measured[a] >= 1 for a in wanted]))
            res.style_exact = float(np.mean([measured[a] == wanted[a] for a in wanted]))
    return res


# ---------------------------------------------------------------- SyncNet (issue 5)

SYNCNET_CROP_SCALE = 0.4        # syncnet_python run_pipeline --crop_scale
SYNCNET_MEDIAN = 13             # its median filter over the face track


def resample_indices(timestamps_ms: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """Source frame index for each output frame at ``fps``: the frame nearest in time to k / fps,
    for k while k / fps is before the end of the last source frame. (T,) -> (T',) int64."""
    ts = np.asarray(timestamps_ms, np.float64)
    if ts.ndim != 1 or not len(ts):
        raise MediaError("no frame timestamps to resample: the video has no frames")
    step = float(np.median(np.diff(ts))) if len(ts) > 1 else 1000.0 / fps
    end = ts[-1] + step                                                  # ms
    n_out = max(1, int(np.floor((end - ts[0]) * fps / 1000.0 + 1e-6)))
    if len(ts) == 1:
        return np.zeros(n_out, np.int64)
    t = ts[0] + np.arange(n_out) * 1000.0 / fps
    right = np.clip(np.searchsorted(ts, t), 1, len(ts) - 1)
    left = right - 1
    return np.where(np.abs(ts[right] - t) < np.abs(t - ts[left]), right, left).astype(np.int64)


def _medfilt_zero(x: np.ndarray, k: int) -> np.ndarray:
    """Running median of (T,) with window k (odd), zeros beyond the ends (scipy.signal.medfilt's way)."""
    h = k // 2
    padded = np.pad(np.asarray(x, np.float64), h)
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, k), axis=1)


def syncnet_crop(rgb: np.ndarray, cx: float, cy: float, s: float, scale: float = SYNCNET_CROP_SCALE) -> np.ndarray:
    """One (H, W, 3) RGB frame -> (224, 224, 3) uint8 BGR face crop around a face box with centre
    (cx, cy) and half-size s: rows cy - s .. cy + s (1 + 2 scale), columns cx -+ s (1 + scale),
    grey 110 outside the image (integer bounds truncated the way run_pipeline truncates them)."""
    import cv2

    s = max(float(s), 1.0)
    pad = int(s * (1 + 2 * scale))            # run_pipeline pads the frame by this much first
    my, mx = cy + pad, cx + pad
    r0, r1 = int(my - s) - pad, int(my + s * (1 + 2 * scale)) - pad
    c0, c1 = int(mx - s * (1 + scale)) - pad, int(mx + s * (1 + scale)) - pad
    h, w = rgb.shape[:2]
    out = np.full((r1 - r0, c1 - c0, 3), 110, np.uint8)
    y0, y1, x0, x1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    if y1 > y0 and x1 > x0:
        out[y0 - r0:y1 - r0, x0 - c0:x1 - c0] = rgb[y0:y1, x0:x1]
    out = cv2.resize(out, (224, 224), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(out[..., ::-1])                        # RGB -> BGR


def syncnet_crops(video: Path, landmarker: str | Path | None = None) -> np.ndarray:
    """(T', 224, 224, 3) uint8 BGR face crops of a video resampled to 25 fps (module docstring).
    Raises NoFaceError when no frame shows a face. Decodes the video twice (track, then crop);
    holds all crops in memory (150 KB a frame, about 225 MB per minute of video)."""
    from talkclip.annotate.media import iter_frames
    from talkclip.annotate.tracker import FaceTracker, iter_tracked

    ts, boxes = [], []
    with FaceTracker(landmarker, mode="video") as tracker:
        for fr, r in iter_tracked(video, tracker):
            h, w = fr.rgb.shape[:2]
            ts.append(fr.timestamp_ms)
            if r is None:
                boxes.append([np.nan] * 4)
            else:
                xy = r.landmarks[:, :2] * np.array([w, h], np.float32)
                boxes.append([*xy.min(0), *xy.max(0)])
    box = np.asarray(boxes, np.float64)                                  # (T, 4) x0 y0 x1 y1, NaN = no face
    if not np.isfinite(box[:, 0]).any():
        raise NoFaceError(f"no face in any frame of {video}: no SyncNet crop")
    sel = resample_indices(np.asarray(ts))                               # (T',)
    b = box[sel]
    ok = np.isfinite(b[:, 0])
    k = np.arange(len(b))
    b = np.stack([np.interp(k, k[ok], b[ok, j]) for j in range(4)], 1)  # fill frames without a face
    s = _medfilt_zero(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 2, SYNCNET_MEDIAN)
    cx = _medfilt_zero((b[:, 0] + b[:, 2]) / 2, SYNCNET_MEDIAN)
    cy = _medfilt_zero((b[:, 1] + b[:, 3]) / 2, SYNCNET_MEDIAN)
    crops = np.zeros((len(sel), 224, 224, 3), np.uint8)
    wanted: dict[int, list[int]] = {}
    for out_i, src_i in enumerate(sel):
        wanted.setdefault(int(src_i), []).append(out_i)
    for fr in iter_frames(video):
        for out_i in wanted.get(fr.index, ()):
            crops[out_i] = syncnet_crop(fr.rgb, cx[out_i], cy[out_i], s[out_i])
    return crops


def syncnet_confidence(model, video: Path, landmarker: str | Path | None = None):
    """SyncNet offset / confidence of one video against its own audio track -> SyncResult.
    ``model`` is a loaded talkclip.model.syncnet.SyncNet. MediaError when the video has no
    audio, NoFaceError without a face, InputError when shorter than 6 frames at 25 fps."""
    from talkclip.annotate.media import load_audio
    from talkclip.model.syncnet import SAMPLE_RATE, sync_score

    audio = load_audio(video, SAMPLE_RATE)
    return sync_score(model, syncnet_crops(video, landmarker), audio)


def evaluate(generated: str | Path, reference: str | Path, *, text: str | None = None,
             syncnet: str | Path | None = None, landmarker: str | Path | None = None,
             estimator: str = "mediapipe") -> EvalReport:
    """Evaluate one pair or every same-named pair of two folders (see module docstring)."""
    pairs = _pairs(Path(generated), Path(reference))
    notes = []
    sync_model = None
    if syncnet is not None:
        if not Path(syncnet).is_file():
            raise InputError(f"no such SyncNet weights file: {syncnet}")
        from talkclip.model.syncnet import load_syncnet

        sync_model = load_syncnet(syncnet)   # CheckpointError before any video work
        notes.append("SyncNet: scored on each generated video against its own audio, MediaPipe face crops "
                     "(not S3FD); never checked against syncnet_python with the released weights")
    else:
        notes.append("SyncNet confidence skipped: pass --syncnet WEIGHTS.safetensors to compute it")
    results = [evaluate_pair(n, g, r, text=text, landmarker=landmarker, estimator=estimator) for n, g, r in pairs]
    if sync_model is not None:
        for r, (n, g, _) in zip(results, pairs):
            try:
                sr = syncnet_confidence(sync_model, g, landmarker)
            except (MediaError, NoFaceError, InputError) as e:  # record and go on with the other pairs
                notes.append(f"{n}: SyncNet skipped: {e}")
                continue
            r.syncnet_offset, r.syncnet_confidence, r.syncnet_min_dist = sr.offset, sr.confidence, sr.min_dist
    if text and not any(r.style_aus for r in results):
        notes.append("the text names no AU phrase the AU table knows (e.g. 'inner brows raised'): no style score")
    for r in results:
        if r.lmd_frames == 0:
            notes.append(f"{r.name}: no frame with a face in both videos: LMD undefined")
    return EvalReport(results, notes)
