"""Corpus recipes: one small file per corpus, all feeding the same build (``talkclip-data build``).

A recipe knows one thing: how a corpus names its files. It lists the clips of a corpus root as
:class:`ClipSpec` rows (speaker, the corpus's own emotion and intensity words, the spoken
sentence, the video and an optional separate audio file, the caption subject) plus one warning
per file whose name does not follow the corpus's scheme. Everything after that (tracking, AUs,
levels and labels from the recipe's label table, captions, split, card) is the generic build in
:mod:`talkclip.pipelines.build_ta_mead`, so every corpus ends in the same tables.

Adding a corpus = one file in this folder defining ``RECIPE = Recipe(...)`` plus one label CSV
in ``annotate/data/`` (columns ``emotion, intensity, level, labels``: the corpus's emotion and
intensity words -> TA-MEAD level 1-3 (0 = unspecified) and labels from the 135 categories).
The registry below finds the file by itself; see the README ("Corpora").
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

from talkclip import InputError, LayoutError
from talkclip.annotate.au import DATA_DIR

from ..mead import MediaRef

__all__ = ["ClipSpec", "Corpus", "Listing", "MediaRef", "Recipe", "RecipeSource", "Selection", "get_recipe",
           "recipes", "select_clips"]


@dataclass(frozen=True)
class Corpus:
    """What the dataset card says about the source corpus."""

    dataset: str                # the built dataset's name: "TA-RAVDESS"
    title: str                  # "RAVDESS (Ryerson Audio-Visual Database of Emotional Speech and Song)"
    homepage: str
    licence: str                # the card's ``license:`` value (an HF licence id, or "other")
    licence_name: str           # human-readable licence / terms
    licence_link: str
    terms: str                  # one paragraph: what the corpus's terms mean for derived data
    citation: str               # BibTeX of the corpus paper ("" when there is none)


@dataclass(frozen=True)
class ClipSpec:
    """One clip of a corpus, as a recipe lists it."""

    clip_id: str                # unique within the corpus, stable across runs
    speaker: str
    gender: str                 # caption subject word: "man", "woman", "person"
    emotion: str                # the corpus's emotion word ("" = unlabelled)
    intensity: str              # the corpus's intensity word ("" = none given)
    video: MediaRef
    audio: MediaRef | None = None   # a separate audio file (else the video's own track)
    audio_kind: str = "m4a"     # ``audio_source`` recorded when ``audio`` is used ("m4a", "wav")
    sentence: str | None = None     # the spoken text, where the corpus defines it
    view: str = "front"
    take: str | None = None
    level: int = 0              # TA-MEAD level if the naming fixes it (MEAD); else set from the label table


@dataclass(frozen=True)
class Selection:
    """Which clips of a corpus to build. Options a recipe does not support must stay at their defaults."""

    speakers: tuple[str, ...] | None = None
    emotions: tuple[str, ...] | None = None
    views: tuple[str, ...] | None = ("front",)   # MEAD only (None = all views)
    limit: int | None = None
    include_song: bool = False                   # RAVDESS only


@dataclass
class Listing:
    clips: list[ClipSpec]
    skipped: list[str] = field(default_factory=list)   # one warning per file not following the scheme
    notes: list[str] = field(default_factory=list)     # other listing warnings (e.g. a damaged archive)


@dataclass(frozen=True)
class Recipe:
    name: str                   # the --corpus value
    version: str                # bumped when what the recipe lists or how it names things changes
    summary: str                # one line for `build --list`
    layout: str                 # the expected folder layout (errors, --list, README)
    labels: Path                # packaged label table (annotate/data/<name>_groups.csv)
    corpus: Corpus
    list_clips: Callable[[Path, Selection], Listing]
    groups: tuple[tuple[str, str], ...] | None = None   # (emotion, intensity) keys a label table must cover
    options: frozenset[str] = frozenset()               # Selection fields beyond speakers/emotions/limit

    def label_table(self, path: str | Path | None = None):
        """(emotion, intensity) -> LabelRow from ``path`` (``--groups``) or the packaged table."""
        from talkclip.annotate.emotions import load_label_table

        return load_label_table(Path(path) if path else self.labels, self.groups, corpus=self.name)

    def list(self, root: str | Path, selection: Selection = Selection()) -> Listing:
        """The selected clips of ``root`` (sorted by clip id) and the skipped-name warnings."""
        root = Path(root)
        if not root.exists():
            raise InputError(f"no such folder: {root}")
        if not root.is_dir():
            raise LayoutError(f"{root} is not a folder; expected a {self.name} root: {self.layout}")
        self._check_options(selection)
        listing = self.list_clips(root, selection)
        return Listing(select_clips(listing.clips, selection, self), listing.skipped, listing.notes)

    def _check_options(self, selection: Selection) -> None:
        default = Selection()
        for name in ("views", "include_song"):
            if name not in self.options and getattr(selection, name) != getattr(default, name):
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{flag} does not apply to the {self.name} recipe")


class RecipeSource:
    """A recipe applied to one corpus root and selection: the clip source the generic build reads
    (:func:`talkclip.pipelines.build_ta_mead.build`).

    ``list_clips`` returns the selected clips and collects the skipped-name warnings in
    ``warnings`` (their number in ``skipped_names``); :meth:`label_table` loads the label table
    (``--groups`` or the recipe's packaged one) and refuses, before anything is tracked, a table
    without a row for an emotion/intensity of the listed clips.
    """

    def __init__(self, recipe: Recipe, root: str | Path, selection: Selection = Selection()):
        self.recipe = recipe
        self.name = recipe.name
        self.root = Path(root).resolve()
        self.selection_ = selection
        self.warnings: list[str] = []
        self.skipped_names = 0
        self._listed: list[ClipSpec] = []
        self.labels = recipe.labels

    def list_clips(self) -> list[ClipSpec]:
        listing = self.recipe.list(self.root, self.selection_)
        self.warnings = list(listing.skipped) + list(listing.notes)
        self.skipped_names = len(listing.skipped)
        self._listed = listing.clips
        return listing.clips

    def label_table(self, groups: str | Path | None = None) -> dict:
        """(emotion, intensity) -> LabelRow; InputError when a listed clip's pair has no row."""
        table = self.recipe.label_table(groups)
        missing = sorted({(c.emotion, c.intensity) for c in self._listed
                          if c.emotion and (c.emotion, c.intensity) not in table})
        if missing:
            where = Path(groups).name if groups else self.recipe.labels.name
            shown = ", ".join(f"{e}/{i or '(no intensity)'}" for e, i in missing[:6])
            raise InputError(f"the label table {where} has no row for {shown}"
                             f"{' ...' if len(missing) > 6 else ''}; add rows or pass --groups")
        return table

    def selection(self) -> dict:
        s = self.selection_
        return dict(recipe_version=self.recipe.version, speakers=sorted(s.speakers) if s.speakers else None,
                    emotions=sorted(s.emotions) if s.emotions else None,
                    views=sorted(s.views) if s.views and "views" in self.recipe.options else None,
                    include_song=s.include_song if "include_song" in self.recipe.options else None,
                    limit=s.limit)

    def card_source(self) -> dict:
        """The source corpus as the manifest and the dataset card name it."""
        return dict(corpus=self.name, recipe_version=self.recipe.version, labels=self.recipe.labels.name,
                    **asdict(self.recipe.corpus))


def data_file(name: str) -> Path:
    """A packaged label table next to MEAD's (``annotate/data/<name>``)."""
    return DATA_DIR / name


def select_clips(clips: Sequence[ClipSpec], selection: Selection, recipe: Recipe) -> list[ClipSpec]:
    """Apply --speakers / --emotions / --limit to a corpus's clips; InputError for unknown values."""
    if selection.limit is not None and selection.limit < 1:
        raise InputError(f"--limit must be >= 1, got {selection.limit}")
    clips = sorted(clips, key=lambda c: c.clip_id)
    if not clips:
        raise LayoutError(f"no clip found; expected a {recipe.name} root: {recipe.layout}")
    for kind, wanted, have in (("speaker", selection.speakers, sorted({c.speaker for c in clips})),
                               ("emotion", selection.emotions, sorted({c.emotion for c in clips}))):
        if wanted is None:
            continue
        unknown = [w for w in wanted if w not in have]
        if unknown:
            shown = ", ".join(have[:8]) + (" ..." if len(have) > 8 else "")
            raise InputError(f"unknown {kind}(s) {', '.join(unknown)}: this {recipe.name} corpus has {shown}")
        clips = [c for c in clips if getattr(c, kind) in wanted]
    return clips[:selection.limit] if selection.limit else clips


@lru_cache(maxsize=1)
def recipes() -> dict[str, Recipe]:
    """Every recipe in this folder, by name (each module's ``RECIPE``)."""
    found: dict[str, Recipe] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        recipe = getattr(module, "RECIPE", None)
        if isinstance(recipe, Recipe):
            assert recipe.name not in found, f"two recipes named {recipe.name}"
            found[recipe.name] = recipe
    return dict(sorted(found.items()))


def get_recipe(name: str) -> Recipe:
    table = recipes()
    key = (name or "").strip().lower()
    if key not in table:
        raise InputError(f"unknown corpus {name!r}; recipes: {', '.join(table)} (see `talkclip-data build --list`)")
    return table[key]


def build_corpus(corpus: str, root: str | Path, out_dir: str | Path, *, speakers: Sequence[str] | None = None,
                 emotions: Sequence[str] | None = None, views: Sequence[str] | None = (), limit: int | None = None,
                 include_song: bool = False, progress=None, **options):
    """``talkclip-data build``: list ``root`` with the ``corpus`` recipe and run the generic build.

    ``views`` follows ``build-ta-mead``'s rule (empty = front, "all" = every view; MEAD only);
    ``options`` are :class:`~talkclip.pipelines.build_ta_mead.BuildOptions` fields. Returns the
    build's Summary; raises InputError / LayoutError for unusable input (nothing tracked then).
    """
    from ..build_ta_mead import BuildOptions, build
    from ..mead import view_selection

    recipe = get_recipe(corpus)
    chosen = view_selection(views)
    selection = Selection(speakers=tuple(speakers) if speakers else None,
                          emotions=tuple(emotions) if emotions else None,
                          views=tuple(chosen) if chosen is not None else None, limit=limit, include_song=include_song)
    return build(RecipeSource(recipe, root, selection), out_dir, BuildOptions(**options), progress=progress)
