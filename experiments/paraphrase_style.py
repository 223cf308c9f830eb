"""Does the text-to-style encoder generalise to unseen paraphrases? (the paper's OOD claim, offline)

Synthetic data where the true style of every clip is known: five groups (happy, surprised,
angry, sad, neutral). Every clip shares the same kind of "speech" motion (jaw/mouth channels
following a random syllable envelope that is also in its audio) and adds its group's style: a
distinct set of blendshape channels raised by a per-clip intensity. Training captions are
templates in the TA-MEAD manner ("A man is happy and speaks with lip corners pulled.", the
emotion-only and AU-only variants). TalkCLIP is trained as in the paper (stage 1 video style
only, stage 2 text style with rising p, L_cos throughout), then *unseen paraphrases*
("She is beaming.", "He looks stunned.", ...) are encoded by the text branch and compared by
cosine similarity with each group's mean video style code on held-out clips.

Reported per text backend (MiniLM vs a randomly initialised, frozen CLIP-style text tower of the
same width): top-1 accuracy over paraphrases (chance = 1/5), mean margin (cosine to the own
group's mean minus the best other group's), and the same for the training captions as a sanity
check. Run from the repository root (experiments/ is not part of the installed package):
``python experiments/paraphrase_style.py [--steps N] [--seeds 0 1 2] [--show]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

GROUPS = {
    # group: (channels raised, training phrases (emotion words, AU phrases), unseen paraphrases)
    "happy": (("mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft", "cheekSquintRight"),
              ("happy", "lip corners pulled and cheeks raised"),
              ("She is beaming.", "He grins from ear to ear.", "She looks delighted and cheerful.",
               "He is overjoyed.")),
    "surprised": (("browInnerUp", "browOuterUpLeft", "browOuterUpRight", "eyeWideLeft", "eyeWideRight", "jawOpen"),
                  ("surprised", "brows raised and upper lids lifted"),
                  ("He looks stunned.", "She is astonished.", "He stares in amazement.",
                   "She cannot believe what she sees.")),
    "angry": (("browDownLeft", "browDownRight", "noseSneerLeft", "noseSneerRight", "mouthPressLeft", "mouthPressRight"),
              ("angry", "brows lowered and nose wrinkled"),
              ("She is furious.", "He is enraged.", "She glares with hostility.", "He is livid.")),
    "sad": (("mouthFrownLeft", "mouthFrownRight", "browInnerUp", "mouthShrugLower"),
            ("sad", "lip corners depressed and chin raised"),
            ("He seems heartbroken.", "She is in deep sorrow.", "He looks gloomy and miserable.",
             "She is grieving.")),
    "neutral": ((), ("neutral", "relaxed face"),
                ("He shows no emotion.", "She has a blank expression.", "He looks calm and composed.",
                 "She is expressionless.")),
}
SUBJECTS = ("man", "woman", "person")


def training_captions(group: str) -> list[str]:
    emo, au = GROUPS[group][1]
    caps = []
    for s in SUBJECTS:
        caps += [f"A {s} is {emo} and speaks with {au}.", f"A {s} is {emo}.", f"A {s} speaks with {au}.",
                 f"The {s} talks, {emo}, with {au}."]
    return caps


def make_clips(n_per_group: int, frames: int, seed: int, cfg):
    """In-memory TA-MEAD-like clips (model.data.Clip) with known group labels."""
    from talkclip.model.audio import audio_features
    from talkclip.model.data import Clip
    from talkclip.schemas import BLENDSHAPE_NAMES

    idx = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}
    rng = np.random.default_rng(seed)
    sr, fps = 16000, 30.0
    clips, labels = [], []
    for g, group in enumerate(GROUPS):
        for k in range(n_per_group):
            n = int(frames / fps * sr)
            t = np.arange(n) / sr
            rate = rng.uniform(2.5, 4.5)
            env = np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.3)), 0, None) ** 2
            env *= (rng.uniform(size=int(t[-1] * rate) + 2) > 0.25)[(t * rate).astype(int)]
            wav = (env * rng.normal(0, 0.3, n) * np.sin(2 * np.pi * rng.uniform(120, 300) * t)).astype(np.float32)
            fenv = env[(np.arange(frames) / fps * sr).astype(int).clip(0, n - 1)]
            bs = np.full((frames, 52), 0.03, dtype=np.float32)
            bs[:, idx["jawOpen"]] = 0.05 + 0.5 * fenv
            bs[:, idx["mouthLowerDownLeft"]] = bs[:, idx["mouthLowerDownRight"]] = 0.03 + 0.3 * fenv
            bs[:, idx["mouthClose"]] = 0.2 * (1 - fenv)
            amp = rng.uniform(0.3, 0.7)
            for name in GROUPS[group][0]:
                bs[:, idx[name]] += amp * (0.9 + 0.2 * rng.uniform()) + 0.05 * np.sin(np.arange(frames) * rng.uniform(0.05, 0.2))
            bs = (bs + rng.normal(0, 0.005, bs.shape)).clip(0, 1).astype(np.float32)
            feats = audio_features(wav, fps, frames, cfg).numpy()
            clips.append(Clip(f"{group}_{k:03d}", fps, training_captions(group), bs, np.ones(frames, bool), feats))
            labels.append(g)
    return clips, np.array(labels)


def experiment_config(backend: str):
    from talkclip.model.config import config_from_dict, load_config

    c = load_config("tiny").to_dict()
    c["name"] = f"paraphrase_{backend}"
    c["model"].update(d_model=64, n_heads=4, n_layers=2, ffn=128, dropout=0.1, seq_len=24, style_dim=64,
                      style_frames=64, style_tokens=2)
    if backend == "minilm":
        c["text"].update(backend="minilm", width=None, layers=None, heads=None, context_length=None)
    else:  # a random frozen text tower of the same width as MiniLM, so only pretraining differs
        c["text"].update(backend="clip-random", width=384, layers=6, heads=6, context_length=40)
    c["train"].update(batch_size=12, lr=1e-3, p_ramp_steps=100, stage1_fraction=0.5)
    c["loss"].update(tem=0.0)   # no temporal discriminator: the experiment is about the style codes
    return config_from_dict(c)


def run(backend: str, seed: int, steps: int) -> dict:
    from talkclip.model.data import TAMEADData, TAMEADWindows, make_loader
    from talkclip.model.talkclip import TalkCLIP
    from talkclip.pipelines.train import TalkCLIPSolver, TrainOptions

    cfg = experiment_config(backend)
    torch.manual_seed(seed)
    train_clips, _ = make_clips(12, 96, seed, cfg)
    test_clips, test_labels = make_clips(6, 96, seed + 1000, cfg)
    # the training step of `talkclip train` (stage 1 for the first half, then stage 2 with rising p)
    solver = TalkCLIPSolver(TrainOptions(seed=seed, stage="both")).attach(TalkCLIP(cfg), cfg, total=steps)
    model = solver.model
    ds = TAMEADWindows(TAMEADData(train_clips), cfg, seed)
    t0 = time.time()
    for step, batch in enumerate(make_loader(ds, cfg.train.batch_size, 0, steps)):
        losses, _ = solver.run_step(step, batch)
    train_s = time.time() - t0
    model.eval()
    with torch.no_grad():
        S = cfg.model.style_frames
        codes = torch.stack([model.video_style(torch.from_numpy(c.blendshapes[:S])[None])[0] for c in test_clips])
        means = torch.stack([codes[torch.from_numpy(test_labels == g)].mean(0) for g in range(len(GROUPS))])
        means = torch.nn.functional.normalize(means, dim=-1)

        names = list(GROUPS)

        def score(texts_by_group: list[list[str]]) -> dict:
            correct, margins, predicted = [], [], {}
            for g, texts in enumerate(texts_by_group):
                s = torch.nn.functional.normalize(model.text_style(texts), dim=-1)  # (n, D)
                sims = s @ means.T                                                # (n, groups)
                correct += (sims.argmax(1) == g).tolist()
                other = sims.clone()
                other[:, g] = -2
                margins += (sims[:, g] - other.max(1).values).tolist()
                predicted.update({t: names[int(k)] for t, k in zip(texts, sims.argmax(1))})
            return {"accuracy": float(np.mean(correct)), "margin": float(np.mean(margins)), "n": len(correct),
                    "predicted": predicted}

        para = score([list(GROUPS[g][2]) for g in GROUPS])
        seen = score([training_captions(g) for g in GROUPS])
        # how well the video codes themselves separate the groups (nearest group mean)
        vid = torch.nn.functional.normalize(codes, dim=-1) @ means.T
        video_acc = float((vid.argmax(1).numpy() == test_labels).mean())
    return {"backend": backend, "seed": seed, "steps": steps, "paraphrase": para, "train_captions": seen,
            "video_code_accuracy": video_acc, "final_rec": losses["rec"], "final_cos": losses["cos"],
            "train_seconds": round(train_s, 1)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--backends", nargs="+", default=["minilm", "clip-random"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON line per run")
    ap.add_argument("--show", action="store_true", help="list the group predicted for every paraphrase")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    results = []
    for backend in a.backends:
        for seed in a.seeds:
            r = run(backend, seed, a.steps)
            results.append(r)
            if a.json:
                print(json.dumps(r), flush=True)
            else:
                print(f"{backend:12s} seed {seed}: paraphrase acc {r['paraphrase']['accuracy']:.2f} "
                      f"margin {r['paraphrase']['margin']:+.3f} | train captions acc {r['train_captions']['accuracy']:.2f} "
                      f"margin {r['train_captions']['margin']:+.3f} | video codes acc {r['video_code_accuracy']:.2f} "
                      f"| L_rec {r['final_rec']:.4f} L_cos {r['final_cos']:.3f} ({r['train_seconds']} s)", flush=True)
                if a.show:
                    for g in GROUPS:
                        for t in GROUPS[g][2]:
                            got = r["paraphrase"]["predicted"][t]
                            print(f"    {'ok ' if got == g else 'BAD'} {t!r:45s} {g:9s} -> {got}")
    print("\nsummary (mean over seeds; chance accuracy = 0.20):")
    for backend in a.backends:
        rs = [r for r in results if r["backend"] == backend]
        acc = [r["paraphrase"]["accuracy"] for r in rs]
        mar = [r["paraphrase"]["margin"] for r in rs]
        print(f"  {backend:12s} unseen paraphrases: accuracy {np.mean(acc):.2f} (min {min(acc):.2f}, max {max(acc):.2f}), "
              f"margin {np.mean(mar):+.3f}; training captions accuracy "
              f"{np.mean([r['train_captions']['accuracy'] for r in rs]):.2f}")


if __name__ == "__main__":
    main()
