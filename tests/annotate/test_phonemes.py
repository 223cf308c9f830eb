"""Phoneme labels (annotate/phonemes.py, issue 13): recognition, forced alignment, the frame grid
and `talkclip-data phonemes`, on the fixtures' real speech."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest

from talkclip import InputError
from talkclip.annotate import phonemes as P
from talkclip.annotate.media import load_audio
from talkclip.model.audio import audio_features
from talkclip.model.config import AudioConfig, ModelConfig, TalkCLIPConfig, validate

from support import FACES, SPEECH, assert_one_line_error, run_data_cli

SENTENCES = {"kids_door_en": "Kids are talking by the door.", "dogs_door_en": "Dogs are sitting by the door."}


def _wav(name: str) -> np.ndarray:
    return load_audio(SPEECH / f"{name}.wav", P.SAMPLE_RATE)


def _check_cover(res: P.PhonemeResult) -> None:
    """Segments are ordered, contiguous (no gap, no overlap), non-empty and cover [0, duration]."""
    segs = res.segments
    assert segs and segs[0].start == 0.0 and segs[-1].end == pytest.approx(res.duration)
    for a, b in zip(segs, segs[1:]):
        assert a.end == pytest.approx(b.start, abs=1e-9)
    assert all(s.end > s.start for s in segs)
    symbols = {p.symbol for p in P.phone_table()}
    assert {s.phone for s in segs} <= symbols


def test_phone_table_is_the_model_vocabulary():
    table = P.phone_table()
    assert [p.id for p in table] == list(range(len(table))) and table[0].symbol == "SIL"
    assert P.n_phonemes() == ModelConfig().n_phonemes == 42
    # every phone of the CMU dictionary (stress dropped) has an id and a viseme class
    dict_phones = {p for prons in P._dictionary().values() for pron in prons for p in pron}
    assert {P.phone_table()[P.phone_id(p)].symbol for p in dict_phones} == {p.symbol for p in table[1:40]}
    assert len({p.viseme for p in table}) == 15
    cfg = TalkCLIPConfig()
    cfg.model.audio_input = "phoneme"
    cfg.model.n_phonemes = 41
    with pytest.raises(Exception, match="phone table"):
        validate(cfg)


@pytest.mark.parametrize("name", ["weather_en", "hello_en", "kids_door_en"])
def test_recognition_covers_the_audio_with_table_phones(name):
    res = P.recognize(_wav(name))
    assert res.method == "recognition"
    _check_cover(res)
    speech = [s for s in res.segments if s.phone != "SIL"]
    assert len(speech) >= 10                      # several phones per second of speech
    assert sum(s.end - s.start for s in speech) > 0.4 * res.duration


def test_silence_is_all_silence():
    res = P.recognize(_wav("silence_2s"))
    assert [s.phone for s in res.segments] == ["SIL"] and res.duration == pytest.approx(2.0)
    assert (res.ids(25) == 0).all() and len(res.ids(25)) == 50


@pytest.mark.parametrize("name", sorted(SENTENCES))
def test_alignment_returns_the_dictionary_phones(name):
    wav = _wav(name)
    res = P.align(wav, SENTENCES[name])
    assert res.method == "alignment" and res.note is None and res.oov == ()
    _check_cover(res)
    words = P.normalize_text(SENTENCES[name])
    assert [w for w, _, _ in res.words] == words
    phones = [s for s in res.segments if s.phone != "SIL"]
    got, i = [], 0
    for word, start, end in res.words:            # each word: one of its dictionary pronunciations
        options = P.pronunciations(word)
        pron = next(p for p in options if tuple(s.phone for s in phones[i:i + len(p)]) == p)
        assert all(start - 1e-6 <= s.start < s.end <= end + 1e-6 for s in phones[i:i + len(pron)])
        got += pron
        i += len(pron)
    assert i == len(phones)                       # nothing but the sentence's phones
    assert 0.0 <= phones[0].start and phones[-1].end < res.duration   # inside the audio
    assert (res.ids(25) != 0).sum() >= 0.5 * len(res.ids(25))


def test_out_of_vocabulary_words_are_spelled_by_rule():
    assert P.pronunciations("kidz") == [] and P.pronunciations("tawking") == []
    assert P.spell_out("kidz") == ("K", "IH", "D", "Z")
    assert P.spell_out("tawking") == ("T", "AO", "K", "IH", "NG")
    res = P.align(_wav("kids_door_en"), "Kidz are tawking by the door")
    assert res.method == "alignment" and res.oov == ("kidz", "tawking")
    ref = P.align(_wav("kids_door_en"), SENTENCES["kids_door_en"])
    assert [s.phone for s in res.segments] == [s.phone for s in ref.segments]


def test_a_sentence_that_does_not_fit_falls_back_to_recognition():
    res = P.align(_wav("silence_2s"), "Kids are talking by the door.")
    assert res.method == "recognition" and "could not be aligned" in res.note
    assert [s.phone for s in res.segments] == ["SIL"]
    with pytest.raises(InputError, match="no words"):
        P.align(_wav("silence_2s"), " ...! ")
    with pytest.raises(InputError, match="NaN"):
        P.recognize(np.array([0.0, np.nan] * 800, dtype=np.float32))


def _resampled(tmp_path, rate: int):
    """kids_door_en.wav resampled to ``rate`` (16-bit mono wav)."""
    x = load_audio(SPEECH / "kids_door_en.wav", rate)
    path = tmp_path / f"kids_{rate}.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


@pytest.mark.parametrize("fps", [25, 30])
def test_frame_ids_line_up_with_log_mel_rows(tmp_path, fps):
    cfg = AudioConfig()
    ref = P.align(_wav("kids_door_en"), SENTENCES["kids_door_en"]).ids(fps)
    for rate in (8000, 16000, 44100, 48000):
        path = _resampled(tmp_path, rate)
        wav = load_audio(path, cfg.sample_rate)                  # what training and generate read
        mel = audio_features(wav, fps, None, cfg)                # (T, n_mels)
        res = P.extract_file(path, SENTENCES["kids_door_en"])
        ids = res.ids(fps)
        assert ids.shape == (mel.shape[0],) and ids.dtype == np.int64, rate
        # the same phones on the same rows at every input rate
        m = min(len(ids), len(ref))
        assert abs(len(ids) - len(ref)) <= 1 and (ids[:m] == ref[:m]).mean() >= 0.85, rate
        # silence rows are the quiet rows of the log-mel features
        loud = mel.mean(dim=1).numpy()
        assert loud[ids == 0].mean() < loud[ids != 0].mean() - 0.2, rate


def test_frame_grid_majority_rule():
    segs = (P.Segment("SIL", 0.0, 0.03), P.Segment("AA", 0.03, 0.1), P.Segment("B", 0.1, 0.12))
    ids = P.frame_ids(segs, 25, None, 0.12)                        # frames [0,.04) [.04,.08) [.08,.12)
    assert ids.tolist() == [0, P.phone_id("AA"), P.phone_id("AA")]
    assert P.frame_ids(segs, 25, 5).tolist()[3:] == [0, 0]           # past the audio: silence
    with pytest.raises(InputError, match="frame rate"):
        P.frame_ids(segs, 0)


def test_cli_json_and_table(fixtures):
    proc = run_data_cli("phonemes", "--audio", SPEECH / "dogs_door_en.wav", "--text",
                        SENTENCES["dogs_door_en"], "--fps", "30", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["method"] == "alignment" and out["fps"] == 30
    assert len(out["frame_ids"]) == int(out["duration_s"] * 30 + 1e-6)
    assert [s["phone"] for s in out["segments"]][:4] == ["D", "AA", "G", "Z"]
    proc = run_data_cli("phonemes", "--audio", FACES / "single_face.mp4")      # audio of a video (mp3)
    assert proc.returncode == 0, proc.stderr
    assert "recognition" in proc.stdout and "frame ids at 25 fps:" in proc.stdout


def test_cli_bad_input_is_one_line(tmp_path, fixtures):
    assert "no such file" in assert_one_line_error(run_data_cli("phonemes", "--audio", tmp_path / "nope.wav"))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    assert "cannot read media" in assert_one_line_error(run_data_cli("phonemes", "--audio", bad))
    assert "no audio stream" in assert_one_line_error(run_data_cli("phonemes", "--audio", FACES / "happy.jpg"))
    assert "frame rate" in assert_one_line_error(run_data_cli("phonemes", "--audio", SPEECH / "hello_en.wav",
                                                              "--fps", "-1"))
