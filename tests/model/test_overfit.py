"""The tiny model can fit one batch of (synthetic, structured) TA-MEAD windows."""

from __future__ import annotations

import pytest
import torch

from talkclip.model.config import load_config
from talkclip.model.data import TAMEADWindows, load_tamead, make_loader
from talkclip.model.talkclip import TalkCLIP

from support import write_synthetic_tamead


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tiny_model_overfits_one_batch(tmp_path):
    cfg = load_config("tiny")
    data = load_tamead(write_synthetic_tamead(tmp_path / "ta", n_clips=4, frames=64, seed=1), cfg)
    batch = next(iter(make_loader(TAMEADWindows(data, cfg, seed=0), 4, 0, 1)))
    torch.manual_seed(0)
    model = TalkCLIP(cfg).train()
    opt = torch.optim.Adam(model.generator_parameters(), lr=3e-3)
    history = []
    for _ in range(260):
        _, losses = model(batch, False, with_tem=False)
        opt.zero_grad()
        losses["rec"].backward()
        opt.step()
        history.append(float(losses["rec"].detach()))
    assert all(map(lambda v: v == v, history)), "NaN in L_rec"
    assert history[0] / min(history[-10:]) >= 10, f"L_rec only fell from {history[0]:.4f} to {min(history[-10:]):.4f}"
    # the text path is trainable towards the video style code too (L_cos falls)
    cos0 = None
    for _ in range(100):
        _, losses = model(batch, False, with_tem=False)
        cos0 = cos0 if cos0 is not None else float(losses["cos"].detach())
        opt.zero_grad()
        losses["cos"].backward()
        opt.step()
    assert float(losses["cos"].detach()) < 0.7 * cos0
