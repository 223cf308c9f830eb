"""TalkCLIP: text/video style encoders + audio content encoder + style-conditioned decoder.

Batch (as made by :mod:`talkclip.model.data`):
    blendshapes (B, L, 52) float in [0, 1]   target sequence
    frame_mask  (B, L) bool                  True where the target frame had a tracked face
    audio       (B, L + 2w, n_mels) float    features of the L frames plus w context frames each side
    phonemes    (B, L + 2w) long, optional   only when model.audio_input uses phonemes
    style_bs    (B, S, 52), style_mask (B, S) bool   the style reference clip (S <= style_frames)
    captions    list[str] (B)

``forward(batch, use_text_mask)`` returns (outputs, losses): outputs hold ``pred`` (B, L, 52),
``s_t``, ``s_v``, ``style``; losses hold every term and ``total`` (the generator objective,
L = l_rec L_rec + l_cos L_cos + l_sync L_sync + l_tem L_tem). The temporal discriminator's own
hinge loss comes from :meth:`TalkCLIP.disc_loss`.
"""

from __future__ import annotations

import torch
from torch import nn

from talkclip.schemas import NUM_BLENDSHAPES

from . import losses as L
from .audio import SILENCE, ContentEncoder
from .config import TalkCLIPConfig
from .decoder import StyleDecoder
from .discriminators import SyncDiscriminator, TemporalDiscriminator
from .style import VideoStyleEncoder
from .text import TextStyleEncoder


class TalkCLIP(nn.Module):
    def __init__(self, config: TalkCLIPConfig, *, load_text_weights: bool = True):
        super().__init__()
        self.config = config
        m = config.model
        self.w = m.window
        self.text = TextStyleEncoder(config.text, m.style_dim, load_weights=load_text_weights)
        self.video = VideoStyleEncoder(m)
        self.content = ContentEncoder(m, config.audio.n_mels)
        self.decoder = StyleDecoder(m)
        self.tem_disc = TemporalDiscriminator(m)
        self.sync_disc = SyncDiscriminator(m, config.audio.n_mels).freeze()
        # 1 once pre-trained sync weights were loaded (saved with the checkpoint)
        self.register_buffer("sync_ready", torch.zeros((), dtype=torch.uint8))

    # ------------------------------------------------------------------ freezing
    def train(self, mode: bool = True):
        super().train(mode)
        self.sync_disc.eval()  # always frozen here; trained by `talkclip train-sync`
        return self

    def generator_parameters(self) -> list[nn.Parameter]:
        skip = {id(p) for p in self.tem_disc.parameters()} | {id(p) for p in self.sync_disc.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in skip]

    def load_sync_discriminator(self, sync: SyncDiscriminator) -> None:
        self.sync_disc.load_state_dict(sync.state_dict())
        self.sync_disc.freeze()
        self.sync_ready.fill_(1)

    # ------------------------------------------------------------------ styles
    def text_style(self, texts: list[str]) -> torch.Tensor:
        return self.text(list(texts))                                  # (B, style_dim)

    def video_style(self, blendshapes: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.video(blendshapes, mask)                          # (B, style_dim)

    # ------------------------------------------------------------------ motion
    def decode(self, audio: torch.Tensor, style: torch.Tensor, phonemes: torch.Tensor | None = None) -> torch.Tensor:
        """audio: (B, L+2w, n_mels) with w context frames each side; style: (B, style_dim) -> (B, L, 52)."""
        B, T2, F = audio.shape
        K = 2 * self.w + 1
        Lq = T2 - 2 * self.w
        assert Lq >= 1, f"audio of {T2} frames has no frame with {self.w} context frames each side"
        win = audio.unfold(1, K, 1).permute(0, 1, 3, 2).reshape(B * Lq, K, F)     # (B*L, K, F)
        ph = None
        if phonemes is not None:
            ph = phonemes.unfold(1, K, 1).reshape(B * Lq, K)                        # (B*L, K)
        h = self.content(win, ph)                                                  # (B*L, K, d)
        out = self.decoder(h, style.repeat_interleave(Lq, dim=0))                  # (B*L, 52)
        return out.view(B, Lq, NUM_BLENDSHAPES)

    @torch.no_grad()
    def generate(self, audio_feats: torch.Tensor, style: torch.Tensor, phonemes: torch.Tensor | None = None,
                 chunk: int = 512) -> torch.Tensor:
        """audio_feats: (T, n_mels) from audio_features(); style: (style_dim,) -> (T, 52) in [0, 1]."""
        was = self.training
        self.eval()
        try:
            dev = next(self.decoder.parameters()).device
            T = audio_feats.shape[0]
            if T == 0:
                return torch.zeros(0, NUM_BLENDSHAPES)
            a = nn.functional.pad(audio_feats.to(dev).float().T[None], (self.w, self.w), value=SILENCE)[0].T  # (T+2w, F)
            p = None
            if phonemes is not None:
                p = nn.functional.pad(phonemes.to(dev).long(), (self.w, self.w), value=0)
            s = style.to(dev).float().reshape(1, -1)
            outs = []
            for i in range(0, T, chunk):
                j = min(T, i + chunk)
                outs.append(self.decode(a[None, i:j + 2 * self.w], s,
                                        None if p is None else p[None, i:j + 2 * self.w])[0])
            return torch.cat(outs).cpu()                                           # (T, 52)
        finally:
            self.train(was)

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict, use_text_mask: torch.Tensor | bool | None = None, *,
                with_tem: bool = True) -> tuple[dict, dict]:
        cfg = self.config.loss
        target = batch["blendshapes"]                                             # (B, L, 52)
        B, Lq, _ = target.shape
        s_v = self.video_style(batch["style_bs"], batch["style_mask"])            # (B, D)
        s_t = self.text_style(batch["captions"])                                  # (B, D)
        if use_text_mask is None or use_text_mask is False:
            style = s_v
        else:
            if use_text_mask is True:
                use_text_mask = torch.ones(B, dtype=torch.bool, device=target.device)
            style = torch.where(use_text_mask.to(target.device)[:, None], s_t, s_v)
        pred = self.decode(batch["audio"], style, batch.get("phonemes"))          # (B, L, 52)
        assert pred.shape == target.shape, f"pred {tuple(pred.shape)} vs target {tuple(target.shape)}"

        rec, l1, lssim = L.rec_loss(pred, target, cfg.mu, cfg.ssim_window, batch.get("frame_mask"))
        lcos = L.cos_loss(s_t, s_v.detach() if cfg.cos_detach_video else s_v)
        losses = {"rec": rec, "l1": l1, "ssim": lssim, "cos": lcos}
        total = cfg.rec * rec + cfg.cos * lcos
        if bool(self.sync_ready) and cfg.sync > 0:
            aud = batch["audio"][:, self.w:self.w + Lq]                           # (B, L, F) aligned
            losses["sync"] = L.sync_loss(self.sync_disc.sequence_logits(pred, aud))
            total = total + cfg.sync * losses["sync"]
        if with_tem and cfg.tem > 0:
            losses["tem"] = L.hinge_g_loss(self.tem_disc(pred))
            total = total + cfg.tem * losses["tem"]
        losses["total"] = total
        return {"pred": pred, "s_t": s_t, "s_v": s_v, "style": style}, losses

    def disc_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Hinge loss of the temporal discriminator on real (B, L, 52) vs generated (detached)."""
        return L.hinge_d_loss(self.tem_disc(target), self.tem_disc(pred.detach()))
