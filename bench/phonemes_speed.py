"""Speed of phoneme extraction (annotate/phonemes.py) against decoding the same audio and
against a build's per-clip work, measured in one run; prints real-time factors and ratios.

    .venv/bin/python bench/phonemes_speed.py [--rounds 3]

Audio: the fixture speech (speech/*.wav, espeak-ng, 16 kHz) joined into one clip and stored as
AAC in an .m4a (MEAD's audio format); alignment runs on kids_door + dogs_door joined, against
their two sentences. Each round runs every stage once (interleaved, so load from other work
hits all stages alike); each stage's best round counts. Wall time and CPU time (this process,
all threads) are both printed; CPU time stays comparable on a loaded machine:

- decode: ``load_audio`` of the m4a to 16 kHz mono (what the build does for every clip);
- recognition / alignment: phone extraction from the decoded samples (decoders created once
  per process before timing; their one-off creation time is printed separately);
- track: decode + face tracking, the bulk of a build's per-clip time (the build adds AUs and
  table writes on top), per second of video: ``faces/talking_pexels.mp4`` as it is (640x360),
  and its first ``--video-s`` seconds upscaled 3x to MEAD's 1920x1080.

Goal (issue 13): extraction adds under 10% to a build's per-clip time, i.e.
``extraction_s_per_media_s / track_s_per_media_s < 0.10``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("TALKCLIP_FIXTURES", ROOT.parent / "shared" / "fixtures"))
SENTENCES = "Kids are talking by the door. Dogs are sitting by the door."


class Upscaled:
    """Frames of a video repeated ``k`` times in both axes, made on demand (a 1080p copy of the
    fixture without holding it in memory)."""

    def __init__(self, frames, k: int):
        self.frames, self.k = frames, k

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i):
        import numpy as np

        return np.repeat(np.repeat(self.frames[i], self.k, axis=0), self.k, axis=1)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--video-s", type=float, default=4.0, help="seconds of the 1080p copy")
    args = ap.parse_args()
    import numpy as np

    from talkclip.annotate import phonemes as P
    from talkclip.annotate.media import load_audio
    from talkclip.annotate.tracker import track_media
    from talkclip.pipelines.sample import read_video, write_m4a, write_mp4

    speech = FIXTURES / "speech"
    names = ["hello_en", "weather_en", "kids_door_en", "dogs_door_en", "silence_2s"]
    joined = np.concatenate([load_audio(speech / f"{n}.wav", P.SAMPLE_RATE) for n in names])
    pair = np.concatenate([load_audio(speech / f"{n}.wav", P.SAMPLE_RATE) for n in names[2:4]])
    with tempfile.TemporaryDirectory() as tmp:
        m4a = write_m4a(Path(tmp) / "speech.m4a", joined)
        wav = load_audio(m4a, P.SAMPLE_RATE)
        dur, pair_dur = len(wav) / P.SAMPLE_RATE, len(pair) / P.SAMPLE_RATE
        t = time.perf_counter(); P._decoder("recognition"); init_rec = time.perf_counter() - t
        t = time.perf_counter(); P._decoder("alignment"); init_ali = time.perf_counter() - t
        assert P.align(pair, SENTENCES).method == "alignment"
        res = P.recognize(wav)
        video = FIXTURES / "faces" / "talking_pexels.mp4"
        frames, fps = read_video(video)
        big = write_mp4(Path(tmp) / "big.mp4", Upscaled(frames[:int(args.video_s * fps)], 3), fps)
        media_s = {"track 640x360": len(frames) / fps, "track 1920x1080": int(args.video_s * fps) / fps}
        del frames
        stages = {"decode": (lambda: load_audio(m4a, P.SAMPLE_RATE), dur),
                  "recognition": (lambda: P.recognize(wav), dur),
                  "alignment": (lambda: P.align(pair, SENTENCES), pair_dur),
                  "frame grid": (lambda: res.ids(30.0), dur),
                  "track 640x360": (lambda: track_media(video), media_s["track 640x360"]),
                  "track 1920x1080": (lambda: track_media(big), media_s["track 1920x1080"])}
        wall = {k: [] for k in stages}
        cpu = {k: [] for k in stages}
        for _ in range(args.rounds):          # rounds interleave the stages: load hits all alike
            for k, (fn, seconds) in stages.items():
                w, c = timed(fn)
                wall[k].append(w / seconds)
                cpu[k].append(c / seconds)
    per = {k: min(v) for k, v in wall.items()}
    per_cpu = {k: min(v) for k, v in cpu.items()}
    track = [k for k in per if k.startswith("track")]
    print(f"audio: {dur:.1f} s of speech (m4a); alignment on {pair_dur:.1f} s; best of {args.rounds} "
          f"interleaved rounds; load average {os.getloadavg()[0]:.2f}")
    print(f"{'stage (track = decode + landmarker)':<36}{'wall s per s':>14}{'x real time':>13}{'CPU s per s':>13}")
    for k in per:
        print(f"{k:<36}{per[k]:>14.4f}{1 / per[k]:>13.1f}{per_cpu[k]:>13.4f}")
    print(f"decoder creation (once per worker process): recognition {init_rec:.2f} s, alignment {init_ali:.2f} s")
    for k in ("recognition", "alignment"):
        shares = ", ".join(f"{100 * per[k] / per[t]:.1f}% wall / {100 * per_cpu[k] / per_cpu[t]:.1f}% CPU "
                           f"at {t.split()[1]}" for t in track)
        print(f"{k}: {per[k] / per['decode']:.0f}x the audio decoding; adds {shares} to the tracking "
              "of a clip (goal < 10%)")


if __name__ == "__main__":
    main()
