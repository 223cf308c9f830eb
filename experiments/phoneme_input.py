"""Log-mel versus phoneme labels as the audio input (the paper's choice), measured offline.

The paper's audio encoder reads phoneme labels; this project defaults to log-mel features.
This trains the tiny config three ways, ``model.audio_input`` = ``mel``, ``phoneme`` and
``mel+phoneme``, with the same seed, steps and data, and reports on held-out clips:

- the reconstruction loss ``L_rec = mu L1 + (1 - mu)(1 - SSIM)`` of the generated blendshapes
  (style from the clip's own video, as in stage 1), and the L1 of the mouth channels alone;
- the lip-sync discriminator's score (mean sigmoid of its logits over sliding windows) of the
  generated curves against their audio; the same discriminator scores the true curves and the
  true curves shifted by 5 frames, to show what "in sync" and "out of sync" read as.

Data (no talking-face corpus with matching speech exists on this machine): speech made with
espeak-ng (Debian package ``espeak-ng``) from sentences written for this experiment, six voices
as six speakers (one held out for the test split), and *synthetic* target curves: each frame's
mouth shape follows the viseme class of the phone the forced alignment of the known sentence
puts there (a hand-written viseme -> blendshape table, smoothed over ~2 frames for
coarticulation), plus a per-clip emotion style on brows/cheeks. The phoneme track the models
read comes from **recognition** (as a MEAD build makes it, since MEAD's sentences are not known)
by default, or from the alignment with ``--phones alignment`` (as RAVDESS/CREMA-D builds make it;
the targets are then a function of the input, so that run only checks the plumbing).

Results (README, "Phoneme labels"): with exact (aligned) phone ids the phoneme inputs reach a
third of the mel model's mouth error, so the path carries the information; with recognised
ids (59% of frames right) no input is reliably better (the gaps are as large as between two
seeds). The data are synthetic in the targets and tiny, and the discriminator barely tells true
from shifted curves, so nothing here speaks to real faces or real lip sync. Run from the
repository root:
``python experiments/phoneme_input.py [--steps 600] [--sync-steps 600] [--seed 0] [--phones recognition]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

SENTENCES = [
    "Kids are talking by the door.", "Dogs are sitting by the door.",
    "Please bring me a warm cup of milk.", "The weather was bright and sunny all week.",
    "She sells fresh fish at the market on Friday.", "My brother plays the violin very well.",
    "Who opened the window in the kitchen?", "A big yellow boat moved along the shore.",
    "We should meet again before the summer ends.", "The thief stole both of the gold watches.",
    "Put the books on the shelf by the wall.", "Fifty people waited outside the old theater.",
    "Could you pass the pepper and the salt?", "The baby slept quietly through the night.",
    "Move the chair away from the fire.", "Our teacher showed us a map of the world.",
    "He jumped over the puddle with a shout.", "Every morning she runs around the park.",
    "The pilot checked the engine twice.", "Bob keeps a blue box under his bed.",
    "Why would anyone leave the oven on?", "The zoo has a new family of zebras.",
    "Five thousand voices sang the same song.", "Sharp rocks cut through the thin rope.",
]
VOICES = ["en-us", "en-us+f3", "en-gb", "en-gb-x-rp+m3", "en-029+f2", "en-gb-scotland"]
TEST_VOICE = "en-gb-scotland"
FPS = 30.0
# viseme class -> mouth blendshapes (MediaPipe names), this experiment's own hand-made shapes
VISEME_SHAPES = {
    "sil": {},
    "PP": {"mouthClose": 0.6, "mouthPressLeft": 0.5, "mouthPressRight": 0.5},
    "FF": {"mouthRollLower": 0.6, "mouthUpperUpLeft": 0.3, "mouthUpperUpRight": 0.3, "jawOpen": 0.1},
    "TH": {"jawOpen": 0.2, "mouthLowerDownLeft": 0.2, "mouthLowerDownRight": 0.2},
    "DD": {"jawOpen": 0.2, "mouthStretchLeft": 0.2, "mouthStretchRight": 0.2},
    "kk": {"jawOpen": 0.3, "mouthStretchLeft": 0.15, "mouthStretchRight": 0.15},
    "CH": {"mouthFunnel": 0.5, "mouthPucker": 0.3, "jawOpen": 0.15},
    "SS": {"mouthStretchLeft": 0.4, "mouthStretchRight": 0.4, "jawOpen": 0.08},
    "nn": {"jawOpen": 0.2, "mouthUpperUpLeft": 0.15, "mouthUpperUpRight": 0.15},
    "RR": {"mouthPucker": 0.4, "mouthFunnel": 0.2, "jawOpen": 0.2},
    "aa": {"jawOpen": 0.65, "mouthLowerDownLeft": 0.4, "mouthLowerDownRight": 0.4},
    "E": {"jawOpen": 0.4, "mouthStretchLeft": 0.35, "mouthStretchRight": 0.35},
    "ih": {"jawOpen": 0.25, "mouthSmileLeft": 0.3, "mouthSmileRight": 0.3},
    "oh": {"jawOpen": 0.45, "mouthFunnel": 0.55},
    "ou": {"mouthPucker": 0.7, "mouthFunnel": 0.3, "jawOpen": 0.12},
}
STYLES = {  # emotion -> (channels raised, caption phrase)
    "happy": (("cheekSquintLeft", "cheekSquintRight", "eyeSquintLeft", "eyeSquintRight"), "is happy"),
    "surprised": (("browInnerUp", "browOuterUpLeft", "browOuterUpRight", "eyeWideLeft", "eyeWideRight"),
                  "is surprised with brows raised"),
    "angry": (("browDownLeft", "browDownRight", "noseSneerLeft", "noseSneerRight"), "is angry with brows lowered"),
    "neutral": ((), "is calm"),
}
SHIFT = 5  # frames: the "out of sync" reference


def speak(text: str, voice: str, speed: int, path: Path) -> np.ndarray:
    """espeak-ng speech of ``text`` as (N,) float32 at 16 kHz."""
    from talkclip.annotate.media import load_audio

    if shutil.which("espeak-ng") is None:
        raise SystemExit("this experiment needs espeak-ng (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True,
                   capture_output=True)
    return load_audio(path, 16_000)


def target_curves(ids: np.ndarray, style: tuple[str, ...], level: float, rng) -> np.ndarray:
    """(T,) phone ids -> (T, 52) synthetic blendshapes: viseme mouth shapes (smoothed) + style."""
    from talkclip.annotate.phonemes import visemes
    from talkclip.schemas import BLENDSHAPE_NAMES

    idx = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}
    T = len(ids)
    bs = np.full((T, len(BLENDSHAPE_NAMES)), 0.02, dtype=np.float32)
    for t, v in enumerate(visemes(ids)):
        for name, value in VISEME_SHAPES[v].items():
            bs[t, idx[name]] = value
    k = np.exp(-0.5 * (np.arange(-3, 4) / 1.2) ** 2)
    k /= k.sum()
    pad = np.pad(bs, ((3, 3), (0, 0)), mode="edge")
    bs = np.stack([np.convolve(pad[:, c], k, mode="valid") for c in range(bs.shape[1])], 1)
    for name in style:
        bs[:, idx[name]] += level
    bs += rng.normal(0, 0.005, bs.shape).astype(np.float32)
    return bs.clip(0, 1).astype(np.float32)


def make_data(out: Path, phones: str, seed: int) -> dict:
    """Write a TA-MEAD-shaped build (clips, frames, audio, phonemes, failures, manifest)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from talkclip.annotate.phonemes import align, clip_track
    from talkclip.schemas import cast_table
    from talkclip.schemas.tamead import (AUDIO_SCHEMA, CLIPS_SCHEMA, FAILURES_SCHEMA, FRAMES_SCHEMA,
                                         PHONEMES_SCHEMA, AudioRow, ClipRow, FramesRow, PhonemesRow)

    rng = np.random.default_rng(seed)
    rows = {"clips": [], "frames": [], "audio": [], "phonemes": []}
    agree = []
    with tempfile.TemporaryDirectory() as tmp:
        for v, voice in enumerate(VOICES):
            for s, text in enumerate(SENTENCES):
                wav = speak(text, voice, int(rng.integers(135, 175)), Path(tmp) / "s.wav")
                wav = np.concatenate([np.zeros(int(rng.uniform(0.1, 0.4) * 16000), np.float32), wav])
                T = int(len(wav) / 16000 * FPS)
                truth = align(wav, text)
                gt_ids = truth.ids(FPS, T)
                track = clip_track(wav, FPS, T, text if phones == "alignment" else None)
                agree.append(float((np.asarray(track["frame_ids"]) == gt_ids).mean()))
                emo = list(STYLES)[(v + s) % len(STYLES)]
                bs = target_curves(gt_ids, STYLES[emo][0], float(rng.uniform(0.3, 0.6)), rng)
                cid, spk = f"V{v}_{s:03d}", f"V{v}"
                caps = [f"A person {STYLES[emo][1]}.", f"The speaker {STYLES[emo][1]}."]
                rows["clips"].append(ClipRow(
                    clip_id=cid, speaker=spk, gender="person", view="front", emotion=emo, level=1, take=f"{s:03d}",
                    video_path=f"{cid}.mp4", audio_path=f"{cid}.wav", audio_source="m4a", fps=FPS, frames=T,
                    frames_with_face=T, duration_s=T / FPS, audio_duration_s=len(wav) / 16000, av_mismatch=False,
                    au_intensity_raw=[0.0] * 12, au_intensity=[0.0] * 12, au_level=[0] * 12, emotion_labels=[emo],
                    captions=caps, split="test" if voice == TEST_VOICE else "train", sentence=text))
                rows["frames"].append(FramesRow(
                    clip_id=cid, fps=FPS, timestamp_ms=[int(i * 1000 / FPS) for i in range(T)], face=[True] * T,
                    blendshapes=bs.tolist(), pose=[np.eye(4, dtype=np.float32).ravel().tolist()] * T, landmarks=None))
                rows["audio"].append(AudioRow(clip_id=cid, sample_rate=16000,
                                              samples=(wav * 32767).astype(np.int16).tolist()))
                rows["phonemes"].append(PhonemesRow(clip_id=cid, **track))
    schemas = {"clips": CLIPS_SCHEMA, "frames": FRAMES_SCHEMA, "audio": AUDIO_SCHEMA, "phonemes": PHONEMES_SCHEMA}
    for name, schema in schemas.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        table = cast_table(pa.Table.from_pylist([dataclasses.asdict(r) for r in rows[name]]), schema)
        pq.write_table(table, out / name / "part-00000.parquet")
    (out / "failures").mkdir(exist_ok=True)
    pq.write_table(FAILURES_SCHEMA.empty_table(), out / "failures" / "part-00000.parquet")
    (out / "manifest.json").write_text(json.dumps({"tool": "experiments/phoneme_input.py",
                                                   "phonemes": {"method": phones}}))
    return {"clips": len(rows["clips"]), "frame_agreement_with_alignment": float(np.mean(agree))}


def evaluate(ckpt: Path, sync_ckpt: Path, data: Path) -> dict:
    """Held-out L_rec, mouth L1 and lip-sync scores of a checkpoint on the test split."""
    import torch

    from talkclip.model import losses as L
    from talkclip.model.checkpoint import load_checkpoint, load_sync_checkpoint
    from talkclip.model.data import load_tamead

    model = load_checkpoint(ckpt)
    sync = load_sync_checkpoint(sync_ckpt)
    sync = getattr(sync, "sync_disc", sync)
    cfg = model.config
    test = load_tamead(data, cfg, split="test")
    mouth = sorted({c for shapes in VISEME_SHAPES.values() for c in shapes})
    from talkclip.schemas import BLENDSHAPE_NAMES

    mi = [BLENDSHAPE_NAMES.index(c) for c in mouth]
    rec, l1m, s_gen, s_true, s_shift = [], [], [], [], []
    with torch.no_grad():
        for c in test.clips:
            gt = torch.from_numpy(np.array(c.blendshapes))                        # (T, 52)
            S = cfg.model.style_frames                                            # the encoder's most frames
            style = model.video_style(gt[None, :S], torch.from_numpy(c.face[:S])[None])[0]
            ph = torch.from_numpy(c.phonemes) if getattr(c, "phonemes", None) is not None else None
            pred = model.generate(torch.from_numpy(c.audio), style, phonemes=ph)  # (T, 52)
            r, _, _ = L.rec_loss(pred[None], gt[None], cfg.loss.mu, cfg.loss.ssim_window)
            rec.append(float(r))
            l1m.append(float((pred[:, mi] - gt[:, mi]).abs().mean()))
            aud = torch.from_numpy(c.audio)[None]
            score = lambda seq: float(torch.sigmoid(sync.sequence_logits(seq[None], aud)).mean())
            s_gen.append(score(pred))
            s_true.append(score(gt))
            s_shift.append(score(torch.roll(gt, SHIFT, 0)))
    return {"rec": float(np.mean(rec)), "mouth_l1": float(np.mean(l1m)), "sync": float(np.mean(s_gen)),
            "sync_true": float(np.mean(s_true)), "sync_shifted": float(np.mean(s_shift)), "clips": len(rec)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--sync-steps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phones", choices=("recognition", "alignment"), default="recognition")
    ap.add_argument("--out", type=Path, default=None, help="keep data and checkpoints here (default: temp); "
                    "its data are reused by a later run with the same --out")
    args = ap.parse_args()
    import torch

    from talkclip.model.config import load_config
    from talkclip.pipelines.train import train, train_sync

    torch.set_num_threads(1)
    work = args.out or Path(tempfile.mkdtemp(prefix="phoneme_input_"))
    data = work / "data"
    t0 = time.perf_counter()
    if (data / "manifest.json").is_file():           # --out of an earlier run: reuse its data
        info = json.loads((data / "info.json").read_text())
    else:
        info = make_data(data, args.phones, args.seed)
        (data / "info.json").write_text(json.dumps(info))
    print(f"data: {info['clips']} clips ({len(SENTENCES)} sentences x {len(VOICES)} voices; test voice "
          f"{TEST_VOICE}); phoneme track by {args.phones}: {100 * info['frame_agreement_with_alignment']:.0f}% "
          f"of frames agree with the alignment ({time.perf_counter() - t0:.0f} s)")
    train_sync(data, "tiny", work / "sync", steps=args.sync_steps, seed=args.seed)
    results = {}
    for kind in ("mel", "phoneme", "mel+phoneme"):
        cfg = load_config("tiny")
        cfg.model.audio_input = kind
        cfg.name = f"tiny-{kind}"
        t = time.perf_counter()
        train(data, cfg, work / kind.replace("+", "_"), steps=args.steps, seed=args.seed,
              sync_checkpoint=work / "sync", stage="1")
        results[kind] = {**evaluate(work / kind.replace("+", "_"), work / "sync", data),
                         "train_s": time.perf_counter() - t}
    print(f"\n{'audio input':<14}{'L_rec (test)':>14}{'mouth L1':>10}{'sync score':>12}   "
          f"(true curves {results['mel']['sync_true']:.3f}, shifted {SHIFT} frames "
          f"{results['mel']['sync_shifted']:.3f})")
    for kind, r in results.items():
        print(f"{kind:<14}{r['rec']:>14.4f}{r['mouth_l1']:>10.4f}{r['sync']:>12.3f}")
    print(json.dumps({"steps": args.steps, "sync_steps": args.sync_steps, "seed": args.seed,
                      "phones": args.phones, **info, "results": results}))
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
