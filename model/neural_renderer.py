"""A trainable, PIRenderer-style neural renderer: portrait + motion -> frames.

Structurally follows PIRenderer (Ren et al., ICCV 2021) with MediaPipe blendshapes in place of
3DMM coefficients. It is trained FROM SCRATCH by ``talkclip train-renderer`` on TA-MEAD frames:
there are no pretrained weights, and no VGG perceptual loss (no VGG weights offline), so the
image loss is L1 + SSIM only. Quality from a CPU smoke run (a few hundred steps at 64 x 64) is
not meaningful; the default renderer of ``talkclip generate`` stays the training-free rig
(:mod:`talkclip.model.renderer`).

Three networks, one module (:class:`PIRenderNet`)::

    motion (B, C_m, W) --MappingNet--> z (B, L)                     C_m = 52 + 6 + 52, W = 2k+1
    source (B, 3, S, S) --WarpNet(z)--> flow (B, 2, S, S) --grid_sample--> warped (B, 3, S, S)
    [warped, source] --EditNet(z)--> output (B, 3, S, S) in (0, 1)

- motion descriptor (:func:`motion_descriptor`), per frame of a window of 2k+1 target frames
  centred on the frame to render: the target's 52 blendshapes, its head pose relative to the
  source frame as 6 numbers (rotation vector, radians; translation / 10 in MediaPipe's metric
  units), and the source frame's own 52 blendshapes (constant over the window), so the network
  sees where the face is and where it must go.
- MappingNet: 1-D convolutions over the window, mean-pooled, -> latent z.
- WarpNet: an hourglass (U-Net) over the source image whose residual blocks are modulated by z
  through AdaIN; its head predicts a dense flow (offsets in normalised [-1, 1] coordinates),
  initialised to zero so an untrained warp is the identity.
- EditNet: a smaller AdaIN-modulated U-Net over [warped, source] predicting a residual in
  logit space: output = sigmoid(logit(warped) + residual); zero-initialised, so an untrained
  renderer returns the warped (= source) image, and the output is always inside (0, 1).

``PIRenderNet.forward(source, motion, target=None) -> (output, losses)``; losses (with a
target): ``l1``, ``ssim`` (1 - SSIM), ``warp`` (L1 of the warped image alone, PIRenderer's
warping-stage objective), ``smooth`` (flow total variation) and their weighted ``total``.

:class:`NeuralRenderer` wraps a checkpoint behind the renderer interface shared with the rig
(:class:`talkclip.model.renderer.FrameRenderer`): ``prepare(portrait_rgb, size, face=None) ->
state`` and ``render(state, blendshapes (T, 52), pose=None, start=0, stop=None) -> frames
[start, stop)``, reading ``context`` = ``window`` neighbouring rows on each side. The network renders at its config's size; frames are resized to
``size`` (bicubic) when that differs.

Checkpoint directory: ``model.safetensors`` (metadata kind = "neural-renderer") +
``config.json`` (a :class:`RendererConfig`), read with safetensors/JSON only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from talkclip import CheckpointError, ConfigError, InputError
from talkclip.schemas import NUM_BLENDSHAPES

# the same square face crop as the rig renderer (crop_scale from the config, default 1.9)
from .renderer import check_motion, check_portrait, crop_box, crop_face, track_portrait

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
KIND = "neural-renderer"
POSE_DIM = 6
MOTION_CHANNELS = NUM_BLENDSHAPES + POSE_DIM + NUM_BLENDSHAPES   # target bs + relative pose + source bs
TRANSLATION_SCALE = 10.0   # MediaPipe's metric translation (about cm) is divided by this


# ---------------------------------------------------------------- config

@dataclass
class RendererLoss:
    l1: float = 1.0
    ssim: float = 1.0
    warp: float = 1.0           # L1 of the warped source vs the target (warping-stage loss)
    smooth: float = 0.01        # total variation of the flow
    ssim_window: int = 7


@dataclass
class RendererTrain:
    batch_size: int = 8
    lr: float = 1e-4
    steps: int = 1000
    log_every: int = 10
    checkpoint_every: int = 0    # 0 = only at the end
    crop_scale: float = 1.9      # crop side / face-oval extent (same convention as the rig renderer)
    frame_stride: int = 1        # keep every n-th frame of a clip in the in-memory cache
    max_clips: int = 0           # 0 = every clip of the build


@dataclass
class RendererConfig:
    name: str = "renderer"
    size: int = 256              # S: square face crop rendered by the network
    window: int = 13             # k: the mapping net reads 2k+1 frames centred on the target
    latent_dim: int = 256        # L
    mapping_channels: int = 256
    mapping_layers: int = 3
    warp_channels: int = 32      # hourglass width at full resolution (doubles per level)
    warp_max_channels: int = 256
    warp_levels: int = 5         # down-sampling steps of the warping hourglass
    edit_channels: int = 64
    edit_max_channels: int = 256
    edit_levels: int = 3
    loss: RendererLoss = field(default_factory=RendererLoss)
    train: RendererTrain = field(default_factory=RendererTrain)

    def to_dict(self) -> dict:
        return asdict(self)


def _from_dict(cls, d: dict, where: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a JSON object")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}")
    kw = {}
    for k, v in d.items():
        if k == "loss":
            kw[k] = _from_dict(RendererLoss, v, f"{where}.loss")
        elif k == "train":
            kw[k] = _from_dict(RendererTrain, v, f"{where}.train")
        else:
            kw[k] = v
    return cls(**kw)


def config_from_dict(d: dict) -> RendererConfig:
    cfg = _from_dict(RendererConfig, d, "renderer config")
    checks = [
        (cfg.size >= 32 and cfg.size % (2 ** max(cfg.warp_levels, cfg.edit_levels)) == 0,
         f"size {cfg.size} must be >= 32 and divisible by 2^levels"),
        (cfg.window >= 0, "window must be >= 0"),
        (min(cfg.latent_dim, cfg.mapping_channels, cfg.warp_channels, cfg.edit_channels) > 0, "widths must be > 0"),
        (cfg.mapping_layers >= 1 and cfg.warp_levels >= 1 and cfg.edit_levels >= 1, "layers/levels must be >= 1"),
        (cfg.train.batch_size >= 1 and cfg.train.lr > 0 and cfg.train.frame_stride >= 1, "bad train settings"),
        (cfg.loss.ssim_window % 2 == 1, "loss.ssim_window must be odd"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"renderer config {cfg.name}: {msg}")
    return cfg


def load_renderer_config(name_or_path: str | Path) -> RendererConfig:
    """A packaged renderer config ("renderer-tiny", "renderer-base") or a JSON path."""
    from talkclip.model.config import read_config_json

    return config_from_dict(read_config_json(name_or_path, renderer=True))


# ---------------------------------------------------------------- motion descriptors

def rotation_vectors(R: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations (columns may carry a scale) -> (T, 3) axis * angle, radians."""
    R = np.asarray(R, np.float64)
    R = R / np.linalg.norm(R, axis=1, keepdims=True).clip(1e-9)          # drop scale
    v = 0.5 * np.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], -1)
    s = np.linalg.norm(v, axis=-1, keepdims=True)                         # sin(angle)
    c = (np.trace(R, axis1=1, axis2=2)[:, None] - 1) / 2                  # cos(angle)
    ang = np.arctan2(s, c)
    return (v * np.where(s > 1e-8, ang / np.maximum(s, 1e-12), 1.0)).astype(np.float32)


def relative_pose6(pose: np.ndarray, pose_src: np.ndarray | None) -> np.ndarray:
    """Head poses (T, 4, 4) -> (T, 6) [rotation vector of R_t R_src^T, (t_t - t_src) / 10].

    ``pose_src`` None: ``pose`` already holds rotations relative to the source (the rig
    renderer's convention, e.g. from :func:`talkclip.model.renderer.relative_poses`)."""
    pose = np.asarray(pose, np.float64)
    R = pose[:, :3, :3] / np.linalg.norm(pose[:, :3, :3], axis=1, keepdims=True).clip(1e-9)
    if pose_src is None:
        return np.concatenate([rotation_vectors(R), np.zeros((len(pose), 3), np.float32)], 1)
    Rs = pose_src[:3, :3] / np.linalg.norm(pose_src[:3, :3], axis=0, keepdims=True).clip(1e-9)
    rel = R @ Rs.T[None]
    tr = (pose[:, :3, 3] - pose_src[None, :3, 3]) / TRANSLATION_SCALE
    return np.concatenate([rotation_vectors(rel), tr.astype(np.float32)], 1)


def motion_descriptor(bs: np.ndarray, pose6: np.ndarray, bs_src: np.ndarray, centres: np.ndarray,
                      window: int) -> np.ndarray:
    """Windows of per-frame motion around ``centres`` -> (N, C_m, 2k+1) float32.

    bs: (T, 52) target blendshapes of a sequence; pose6: (T, 6) relative poses; bs_src: (52,)
    the source frame's blendshapes; centres: (N,) frame indices; indices past either end are
    clamped (edge frames repeat)."""
    T = bs.shape[0]
    assert bs.shape == (T, NUM_BLENDSHAPES) and pose6.shape == (T, POSE_DIM), \
        f"expected (T, 52) and (T, 6), got {bs.shape} and {pose6.shape}"
    idx = np.clip(np.asarray(centres)[:, None] + np.arange(-window, window + 1)[None], 0, T - 1)  # (N, W)
    per = np.concatenate([bs, pose6], 1)[idx]                                          # (N, W, 58)
    src = np.broadcast_to(np.asarray(bs_src, np.float32)[None, None], (len(idx), idx.shape[1], NUM_BLENDSHAPES))
    return np.ascontiguousarray(np.concatenate([per, src], 2).transpose(0, 2, 1), dtype=np.float32)


# ---------------------------------------------------------------- building blocks

class AdaIN(nn.Module):
    """Instance norm whose per-channel scale and shift come from the latent z."""

    def __init__(self, channels: int, latent_dim: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.fc = nn.Linear(latent_dim, 2 * channels)

    def forward(self, x, z):
        # x: (B, C, H, W), z: (B, L)
        gamma, beta = self.fc(z)[:, :, None, None].chunk(2, dim=1)       # (B, C, 1, 1) each
        return self.norm(x) * (1 + gamma) + beta


class AdaResBlock(nn.Module):
    """AdaIN -> LeakyReLU -> conv3x3, twice, plus a (1x1 if needed) skip."""

    def __init__(self, c_in: int, c_out: int, latent_dim: int):
        super().__init__()
        self.n1, self.c1 = AdaIN(c_in, latent_dim), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.n2, self.c2 = AdaIN(c_out, latent_dim), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, z):
        h = self.c1(F.leaky_relu(self.n1(x, z), 0.2))
        h = self.c2(F.leaky_relu(self.n2(h, z), 0.2))
        return self.skip(x) + h


class MappingNet(nn.Module):
    """(B, C_m, W) motion window -> (B, L) latent: 1-D convs, mean over time, linear."""

    def __init__(self, cfg: RendererConfig):
        super().__init__()
        ch = cfg.mapping_channels
        self.inp = nn.Conv1d(MOTION_CHANNELS, ch, 3, padding=1)
        self.convs = nn.ModuleList([nn.Conv1d(ch, ch, 3, padding=1) for _ in range(cfg.mapping_layers)])
        self.out = nn.Linear(ch, cfg.latent_dim)

    def forward(self, motion):
        h = F.leaky_relu(self.inp(motion), 0.2)                        # (B, ch, W)
        for conv in self.convs:
            h = h + F.leaky_relu(conv(h), 0.2)                         # residual 1-D conv
        return self.out(h.mean(-1))                                    # (B, L)


class AdaUNet(nn.Module):
    """Hourglass with skip connections; every block AdaIN-modulated by z.

    (B, c_in, S, S) -> (B, widths[0], S, S): ``levels`` down-samplings (avg-pool), then up
    (nearest x2, concat the skip, block)."""

    def __init__(self, c_in: int, base: int, max_ch: int, levels: int, latent_dim: int):
        super().__init__()
        widths = [min(base * 2 ** i, max_ch) for i in range(levels + 1)]   # per resolution level
        self.inp = nn.Conv2d(c_in, widths[0], 3, padding=1)
        self.down = nn.ModuleList([AdaResBlock(widths[i], widths[i + 1], latent_dim) for i in range(levels)])
        self.mid = AdaResBlock(widths[-1], widths[-1], latent_dim)
        self.up = nn.ModuleList([AdaResBlock(widths[i + 1] + widths[i], widths[i], latent_dim)
                                 for i in reversed(range(levels))])
        self.out_channels = widths[0]

    def forward(self, x, z):
        h = self.inp(x)                                                # (B, w0, S, S)
        skips = []
        for blk in self.down:
            skips.append(h)
            h = F.avg_pool2d(blk(h, z), 2)                             # (B, w_{i+1}, S/2^(i+1), ...)
        h = self.mid(h, z)
        for blk in self.up:
            s = skips.pop()
            h = blk(torch.cat([F.interpolate(h, size=s.shape[-2:], mode="nearest"), s], 1), z)
        return F.leaky_relu(h, 0.2)                                    # (B, w0, S, S)


class WarpNet(nn.Module):
    """Source image + z -> dense flow (B, 2, S, S) (normalised offsets) and the warped source."""

    def __init__(self, cfg: RendererConfig):
        super().__init__()
        self.body = AdaUNet(3, cfg.warp_channels, cfg.warp_max_channels, cfg.warp_levels, cfg.latent_dim)
        self.flow = nn.Conv2d(self.body.out_channels, 2, 3, padding=1)
        nn.init.zeros_(self.flow.weight)                               # identity warp at init
        nn.init.zeros_(self.flow.bias)

    def forward(self, source, z):
        flow = self.flow(self.body(source * 2 - 1, z))                 # (B, 2, S, S), (dx, dy)
        return flow, warp(source, flow)


class EditNet(nn.Module):
    """[warped, source] + z -> output image, a residual on the warped image in logit space."""

    def __init__(self, cfg: RendererConfig):
        super().__init__()
        self.body = AdaUNet(6, cfg.edit_channels, cfg.edit_max_channels, cfg.edit_levels, cfg.latent_dim)
        self.res = nn.Conv2d(self.body.out_channels, 3, 3, padding=1)
        nn.init.zeros_(self.res.weight)                                # output = warped at init
        nn.init.zeros_(self.res.bias)

    def forward(self, warped, source, z):
        h = self.body(torch.cat([warped, source], 1) * 2 - 1, z)       # (B, w0, S, S)
        base = torch.logit(warped.clamp(1e-3, 1 - 1e-3))
        return torch.sigmoid(base + self.res(h))                       # (B, 3, S, S) in (0, 1)


def identity_grid(b: int, h: int, w: int, device, dtype=torch.float32):
    """(b, h, w, 2) sampling grid of the identity, align_corners=False convention."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * (2.0 / h) - 1
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * (2.0 / w) - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1)[None].expand(b, h, w, 2)


def warp(image, flow):
    """Backward warp: out(p) = image(p + flow(p)); image (B, C, H, W), flow (B, 2, H, W) normalised."""
    B, _, H, W = image.shape
    # float32 even under bf16 autocast: bf16 cannot resolve one pixel step of a 256 px grid near +-1
    grid = identity_grid(B, H, W, image.device) + flow.float().permute(0, 2, 3, 1)     # (B, H, W, 2)
    return F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def ssim(x, y, window: int = 7, sigma: float = 1.5):
    """Mean SSIM of two image batches (B, C, H, W) in [0, 1], Gaussian window, per channel."""
    C = x.shape[1]
    g = torch.exp(-0.5 * ((torch.arange(window, device=x.device, dtype=x.dtype) - window // 2) / sigma) ** 2)
    g = g / g.sum()
    k = (g[:, None] * g[None, :]).expand(C, 1, window, window).contiguous()   # (C, 1, w, w)

    def blur(t):
        return F.conv2d(t, k, groups=C)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean()


# ---------------------------------------------------------------- the network

class PIRenderNet(nn.Module):
    """Mapping + warping + editing networks (see the module docstring)."""

    def __init__(self, cfg: RendererConfig):
        super().__init__()
        self.config = cfg
        self.mapping = MappingNet(cfg)
        self.warp = WarpNet(cfg)
        self.edit = EditNet(cfg)

    def forward(self, source, motion, target=None):
        """source (B, 3, S, S) in [0, 1]; motion (B, C_m, 2k+1) (:func:`motion_descriptor`);
        target (B, 3, S, S) or None -> (output (B, 3, S, S) in (0, 1), losses dict)."""
        S = self.config.size
        assert source.shape[1:] == (3, S, S), f"source must be (B, 3, {S}, {S}), got {tuple(source.shape)}"
        assert motion.shape[1:] == (MOTION_CHANNELS, 2 * self.config.window + 1), \
            f"motion must be (B, {MOTION_CHANNELS}, {2 * self.config.window + 1}), got {tuple(motion.shape)}"
        z = self.mapping(motion)                                       # (B, L)
        flow, warped = self.warp(source, z)                            # (B, 2, S, S), (B, 3, S, S)
        out = self.edit(warped, source, z)                             # (B, 3, S, S)
        losses: dict[str, torch.Tensor] = {}
        if target is not None:
            lc = self.config.loss
            out32, tgt32, warped32 = out.float(), target.float(), warped.float()
            losses["l1"] = (out32 - tgt32).abs().mean()
            losses["ssim"] = 1 - ssim(out32, tgt32, lc.ssim_window)
            losses["warp"] = (warped32 - tgt32).abs().mean()
            f = flow.float()
            losses["smooth"] = (f[..., 1:, :] - f[..., :-1, :]).abs().mean() + (f[..., 1:] - f[..., :-1]).abs().mean()
            losses["total"] = lc.l1 * losses["l1"] + lc.ssim * losses["ssim"] + lc.warp * losses["warp"] \
                + lc.smooth * losses["smooth"]
        return out, losses


# ---------------------------------------------------------------- checkpoints

def save_renderer(model: PIRenderNet, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` (kind neural-renderer) + ``config.json`` into ``out_dir``
    (:func:`talkclip.model.checkpoint.save_checkpoint`, the one checkpoint writer)."""
    from talkclip.model.checkpoint import save_checkpoint

    return save_checkpoint(model, out_dir, kind=KIND)


def load_renderer(path: str | Path, device: str | torch.device = "cpu") -> PIRenderNet:
    """Load a renderer checkpoint directory (or Hub id org/name[@rev]); CheckpointError (one
    line) when missing/corrupt, not a renderer (a TalkCLIP checkpoint, say) or holding
    non-finite weights."""
    from talkclip.model.checkpoint import load_tensors, read_checkpoint_config, require_finite
    from talkclip.model.hub import resolve_checkpoint

    p = resolve_checkpoint(path, "renderer checkpoint")   # a local directory, or a Hub id org/name[@rev]
    if p.is_dir() and (p / MODEL_FILE).is_file():   # the kind first: a TalkCLIP config is not a bad renderer config
        sd, meta = load_tensors(p / MODEL_FILE)
        if meta.get("kind") != KIND:
            what = "a TalkCLIP" if meta.get("kind", "talkclip") == "talkclip" else f"a {meta.get('kind')!r}"
            raise CheckpointError(f"{p} holds {what} checkpoint, not a neural renderer")
    cfg = read_checkpoint_config(p, config_from_dict, "renderer checkpoint")
    sd, meta = load_tensors(p / MODEL_FILE)
    require_finite(sd, p)
    model = PIRenderNet(cfg)
    own = model.state_dict()
    if set(own) != set(sd) or any(own[k].shape != v.shape for k, v in sd.items()):
        raise CheckpointError(f"renderer checkpoint {p} does not match its config")
    model.load_state_dict(sd)
    return model.to(device).eval()


# ---------------------------------------------------------------- the renderer interface

@dataclass
class NeuralRenderState:
    size: int                    # output frame size
    src: torch.Tensor            # (1, 3, S, S) float32 in [0, 1]: the portrait crop at the network's size
    b0: np.ndarray               # (52,) the portrait's tracked blendshapes
    pose0: np.ndarray            # (4, 4) the portrait's facial transformation matrix
    crop_box: tuple[float, float, float]


class NeuralRenderer:
    """A trained :class:`PIRenderNet` behind the rig renderer's interface.

    ``pose`` in :meth:`render` follows the rig's convention: head rotations relative to the
    portrait (T, 4, 4), e.g. from :func:`talkclip.model.renderer.relative_poses`; translation is
    taken as unchanged. The motion window of a sequence's first/last frames repeats the edge
    frames; render long sequences in chunks with ``start``/``stop`` to avoid seams."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu", landmarker: str | Path | None = None,
                 chunk: int = 16):
        from .device import resolve_device

        self.device = resolve_device(str(device))
        self.model = load_renderer(checkpoint, self.device)
        self.config = self.model.config
        self.landmarker = landmarker
        self.chunk = chunk

    @property
    def context(self) -> int:
        """Neighbouring rows read on each side of a rendered range: the motion window k."""
        return int(self.config.window)

    def prepare(self, rgb: np.ndarray, size: int = 256, face=None) -> NeuralRenderState:
        """Track the portrait (image mode; or take the given ``face`` of ``rgb``), crop the face
        at the network's size."""
        check_portrait(rgb)
        if size < 32 or size > 2048:
            raise InputError(f"render size must be within 32..2048, got {size}")
        if face is None:
            face = track_portrait(rgb, self.landmarker)
        box = crop_box(face.landmarks, rgb.shape[1], rgb.shape[0], self.config.train.crop_scale)
        crop = crop_face(rgb, box, self.config.size)                             # (S, S, 3) uint8
        src = torch.from_numpy(np.array(crop)).permute(2, 0, 1)[None].float().div(255).to(self.device)
        return NeuralRenderState(size=size, src=src, b0=face.blendshapes.astype(np.float32),
                                 pose0=face.pose.astype(np.float32), crop_box=box)

    @torch.no_grad()
    def render(self, state: NeuralRenderState, blendshapes: np.ndarray, pose: np.ndarray | None = None,
               start: int = 0, stop: int | None = None) -> np.ndarray:
        """blendshapes (T, 52) [+ pose (T, 4, 4) relative rotations] -> frames [start, stop) as
        (n, size, size, 3) uint8, their motion windows reading the neighbouring rows of the
        sequence (so a long sequence renders in chunks without seams)."""
        bs, pose, stop = check_motion(blendshapes, pose, start, stop)
        T = bs.shape[0]
        if stop == start:
            return np.zeros((0, state.size, state.size, 3), np.uint8)
        pose6 = np.zeros((T, POSE_DIM), np.float32) if pose is None else relative_pose6(pose, None)
        motion = motion_descriptor(bs, pose6, state.b0, np.arange(start, stop), self.config.window)  # (t, C_m, W)
        out = []
        for s in range(0, len(motion), self.chunk):
            m = torch.from_numpy(motion[s:s + self.chunk]).to(self.device)
            src = state.src.expand(m.shape[0], -1, -1, -1)
            frames, _ = self.model(src, m)                                      # (t, 3, S, S)
            if state.size != self.config.size:
                frames = F.interpolate(frames, size=(state.size, state.size), mode="bicubic", align_corners=False)
            out.append((frames.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out, 0)
