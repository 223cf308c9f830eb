"""MEAD (Wang et al. 2020): the corpus TA-MEAD is built from; ``build-ta-mead`` is this recipe.

Layouts (extracted folders and the per-speaker tars as downloaded), clip ids and the audio rule
are those of :mod:`talkclip.pipelines.mead`, which walks the corpus; this file only turns its
clips into :class:`ClipSpec` rows. Emotion = MEAD's folder name, intensity = the level number
("1"-"3"), labels and level from ``mead_groups.csv`` (this project's own annotation). MEAD has no
per-clip sentence in its file names, so ``sentence`` stays empty.
"""

from __future__ import annotations

from pathlib import Path

from talkclip.annotate.captions import subject_for_speaker
from talkclip.annotate.emotions import GROUPS_PATH, MEAD_GROUPS

from ..mead import EXPECTED, walk_mead
from . import ClipSpec, Corpus, Listing, Recipe, Selection

MEAD_TERMS = ("MEAD's authors distribute it for research use under their own terms. This derived data "
              "(which includes MEAD's speech audio and per-frame face measurements of MEAD's actors) is for "
              "research use under those same terms; do not publish it publicly unless MEAD's terms allow it.")


def list_clips(root: Path, selection: Selection) -> Listing:
    notes: list[str] = []      # a damaged speaker archive is listed as far as it can be read
    clips = walk_mead(root, speakers=selection.speakers, views=selection.views, emotions=selection.emotions,
                      warnings=notes)
    return Listing(notes=notes, clips=[
        ClipSpec(clip_id=c.clip_id, speaker=c.speaker, gender=subject_for_speaker(c.speaker), emotion=c.emotion,
                 intensity=str(c.level), video=c.video, audio=c.audio, audio_kind="m4a", view=c.view, take=c.take,
                 level=c.level) for c in clips])


RECIPE = Recipe(
    name="mead",
    version="1",
    summary="MEAD: 60 actors, 8 emotions x 3 levels, 7 views (extracted folders or video.tar/audio.tar)",
    layout=EXPECTED,
    labels=GROUPS_PATH,
    corpus=Corpus(
        dataset="TA-MEAD",
        title="MEAD (A Large-scale Audio-visual Dataset for Emotional Talking-face Generation)",
        homepage="https://wywu.github.io/projects/MEAD/MEAD.html",
        licence="other",
        licence_name="mead-research-terms",
        licence_link="https://wywu.github.io/projects/MEAD/MEAD.html",
        terms=MEAD_TERMS,
        citation="""@inproceedings{wang2020mead,
  title     = {MEAD: A Large-scale Audio-visual Dataset for Emotional Talking-face Generation},
  author    = {Wang, Kaisiyuan and Wu, Qianyi and Song, Linsen and Yang, Zhuoqian and Wu, Wayne and
               Qian, Chen and He, Ran and Qiao, Yu and Loy, Chen Change},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2020}
}"""),
    list_clips=list_clips,
    groups=tuple((e, str(lv)) for e, lv in MEAD_GROUPS),
    options=frozenset({"views"}),
)
