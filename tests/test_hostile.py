"""Hostile and odd input: every case is a real file run through the real pipeline, with one outcome.

Each case below is built from real audio (tests/data via tests/media.py) in a tmp dir, then the
whole folder is tagged once (models loaded once). A case's documented outcome (docs/reliability.md)
is one of: tagged (genres written, audio payload unchanged), unchanged (nothing to write), or failed
with a one-line reason naming the file, and then the file is byte-for-byte as it was. Nothing may
crash the run or hang it.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from media import clip_path, encode
from mutagen.apev2 import APEv2
from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC, ID3, TCON

from mgctag import pipeline, tags
from mgctag.audio import decode
from mgctag.library.db import Library
from mgctag.library.scan import scan
from mgctag.models.inputs import InputPlan, InputSpec, prepare

CLIP = "Kevin_MacLeod_-_Vibe_Ace"
NOBODY = 65534


def clip(seconds: float = 4.0, start: float = 20.0, name: str = CLIP) -> tuple[np.ndarray, int]:
    """(channels, n) float32 of a real recording, from `start` s."""
    with sf.SoundFile(clip_path(name)) as f:
        f.seek(int(start * f.samplerate))
        y = f.read(int(seconds * f.samplerate), dtype="float32", always_2d=True)
        return np.ascontiguousarray(y.T), f.samplerate


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def truncated(src: Path, dest: Path, keep: float = 0.4) -> None:
    data = src.read_bytes()
    dest.write_bytes(data[: int(len(data) * keep)])


def long_mp3(dest: Path, hours: float = 2.0, rate: int = 8000) -> None:
    """A cheap 2-hour MP3: 10 s of real audio at 8 kHz mono 8 kb/s, its frames repeated (~7 MB).

    No Xing header, so the duration comes from the CBR bit rate, as for many ripped files.
    """
    y, sr = clip(10.0)
    seg = dest.with_suffix(".seg")
    with av.open(
        str(seg), "w", format="mp3", options={"write_xing": "0", "id3v2_version": "0"}
    ) as o:
        stream = o.add_stream("libmp3lame", rate=rate, layout="mono")
        stream.codec_context.bit_rate = 8000
        frame = av.AudioFrame.from_ndarray(y[:1], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sr, 0, Fraction(1, sr)
        resampler = av.AudioResampler(format="s16p", layout="mono", rate=rate)
        for f in [*resampler.resample(frame), *resampler.resample(None)]:
            o.mux(stream.encode(f))
        o.mux(stream.encode(None))
    data = seg.read_bytes()
    seg.unlink()
    with dest.open("wb") as fh:
        for _ in range(int(hours * 360)):
            fh.write(data)


def id3v1_block(title: str, genre: int) -> bytes:
    def field(text: str, n: int) -> bytes:
        return text.encode("latin-1")[:n].ljust(n, b"\0")

    fields = field(title, 30) + field("Artist", 30) + field("Album", 30) + b"2001" + field("", 30)
    return b"TAG" + fields + bytes([genre])


def id3v22_tag(title: str) -> bytes:
    """An ID3v2.2 tag (3-character frame ids), which mutagen reads but never writes."""
    frames = b""
    for fid, text in ((b"TT2", title), (b"TP1", "Old Artist"), (b"TCO", "")):
        body = b"\x00" + text.encode("latin-1")
        if text:
            frames += fid + len(body).to_bytes(3, "big") + body
    size = len(frames)
    synchsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x02\x00\x00" + synchsafe + frames


def broken_flac_metadata(src: Path, dest: Path) -> None:
    """A FLAC whose VORBIS_COMMENT block claims to be longer than the file."""
    data = bytearray(src.read_bytes())
    pos = 4
    while True:
        header = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 4], "big")
        if header & 0x7F == 4:
            data[pos + 1 : pos + 4] = (0xFFFFF0).to_bytes(3, "big")
            break
        assert not header & 0x80, "no comment block"
        pos += 4 + length
    dest.write_bytes(bytes(data))


# Digital silence is reported, not tagged: no window is loud enough to say anything about genre.
SILENCE = "skipped: silent"
# Outcome of every case: "tagged", "unchanged", or "failed: <words in the reason>".
EXPECTED: dict[str, str] = {}


def case(name: str, outcome: str) -> str:
    EXPECTED[name] = outcome
    return name


def build(root: Path) -> None:
    """Every hostile case in one folder (names are the keys of EXPECTED)."""
    y, sr = clip(6.0)
    good = {ext: encode(y, sr, root / f".src.{ext}") for ext in ("mp3", "flac", "ogg")}
    for ext, src in good.items():
        # A truncated Ogg decodes, but its last page is cut, so the payload hash that proves a tag
        # write left the audio alone cannot be computed: analysed, never written.
        outcome = "failed: cannot read the audio data" if ext == "ogg" else "tagged"
        truncated(src, root / case(f"truncated.{ext}", outcome), keep=0.6)  # 3.6 s: > 2 s
    (root / case("zero.mp3", "failed: empty file")).write_bytes(b"")
    (root / case("zero.flac", "failed: empty file")).write_bytes(b"")
    rng = np.random.default_rng(7)
    (root / case("random.mp3", "failed: not audio")).write_bytes(rng.bytes(65536))
    (root / case("random.flac", "failed: not audio")).write_bytes(rng.bytes(65536))
    (root / case("text.mp3", "failed: not audio")).write_text("These are liner notes.\n" * 200)
    broken_flac_metadata(
        _with_comment(good["flac"], root / ".c.flac"), root / case("broken_meta.flac", "failed")
    )

    cover = rng.bytes(10 << 20)
    shutil.copy(good["flac"], root / case("cover10mb.flac", "tagged"))
    flac = FLAC(root / "cover10mb.flac")
    pic = Picture()
    pic.type, pic.mime, pic.data = 3, "image/jpeg", b"\xff\xd8\xff\xe0" + cover
    flac.add_picture(pic)
    flac.save()
    shutil.copy(good["mp3"], root / case("cover10mb.mp3", "tagged"))
    id3 = ID3()
    id3.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="", data=b"\xff\xd8\xff" + cover))
    id3.save(root / "cover10mb.mp3")

    raw = good["mp3"].read_bytes()
    (root / case("id3v1_only.mp3", "tagged")).write_bytes(raw + id3v1_block("V1 Title", 255))
    (root / case("id3v22.mp3", "tagged")).write_bytes(id3v22_tag("V22 Title") + raw)
    shutil.copy(good["mp3"], root / case("apev2.mp3", "tagged"))
    ape = APEv2()
    ape["Title"] = "APE Title"
    ape.save(root / "apev2.mp3")
    shutil.copy(good["mp3"], root / case("apev2_genre.mp3", "unchanged"))
    ape["Genre"] = "Jazz"
    ape.save(root / "apev2_genre.mp3")
    shutil.copy(good["flac"], root / case("multi_genre.flac", "unchanged"))
    flac = FLAC(root / "multi_genre.flac")
    flac["genre"] = ["Rock", "Blues"]
    flac.save()
    shutil.copy(good["mp3"], root / case("numeric_genre.mp3", "unchanged"))
    id3 = ID3()
    id3.add(TCON(encoding=0, text=["(17)"]))
    id3.save(root / "numeric_genre.mp3", v2_version=3)

    shutil.copy(good["mp3"], root / case("read_only.mp3", "failed: file is read-only"))
    os.chmod(root / "read_only.mp3", 0o444)
    ro = root / "ro_folder"
    ro.mkdir()
    shutil.copy(good["mp3"], ro / case("in_ro_folder.mp3", "failed: folder is read-only"))
    EXPECTED["ro_folder/in_ro_folder.mp3"] = EXPECTED.pop("in_ro_folder.mp3")
    os.chmod(ro, 0o555)

    for form in ("NFC", "NFD"):
        name = unicodedata.normalize(form, f"Café {form}.ogg")
        shutil.copy(good["ogg"], root / case(name, "tagged"))
    latin1 = os.fsdecode(b"caf\xe9 latin1.flac")
    shutil.copy(good["flac"], os.path.join(root, case(latin1, "tagged")))
    deep = root
    for i in range(8):
        deep = deep / (f"{i}" * 200)
    deep.mkdir(parents=True)
    long_name = "L" * 240 + ".mp3"
    shutil.copy(good["mp3"], deep / long_name)
    case(str((deep / long_name).relative_to(root)), "tagged")
    loops = root / "loops"
    loops.mkdir()
    (loops / "up").symlink_to("..")
    (loops / "self.mp3").symlink_to("self.mp3")

    long_mp3(root / case("two_hours.mp3", "tagged"))
    encode(*clip(0.5), root / case("half_second.flac", "skipped: too short"))
    sf.write(root / case("silence.wav", SILENCE), np.zeros(16000 * 4), 16000)
    multi = np.tile(clip(4.0)[0][:1], (6, 1))
    sf.write(root / case("surround_5_1.wav", "tagged"), multi.T, sr)
    sf.write(root / case("surround_5_1.flac", "tagged"), multi.T, sr)
    sf.write(root / case("mono.wav", "tagged"), clip(4.0)[0][0], sr)
    import soxr

    for rate in (8000, 22050, 96000, 192000):
        z = soxr.resample(clip(4.0)[0].T, sr, rate)
        sf.write(
            root / case(f"rate_{rate}.flac" if rate <= 96000 else f"rate_{rate}.wav", "tagged"),
            z,
            rate,
        )
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        sf.write(root / case(f"bits_{subtype}.wav", "tagged"), clip(4.0)[0].T, sr, subtype=subtype)

    for name in ("deleted.mp3", "replaced.mp3"):  # changed by HostileProgress at the write stage
        shutil.copy(good["mp3"], root / name)
    case("deleted.mp3", "failed: gone")
    case("replaced.mp3", "failed: changed since it was scanned")
    for src in root.glob(".*"):
        src.unlink()


def _with_comment(src: Path, dest: Path) -> Path:
    shutil.copy(src, dest)
    f = FLAC(dest)
    f["title"] = "Has comments"
    f.save()
    return dest


class HostileProgress(pipeline.Progress):
    """At the write stage, delete one analysed file and replace another with different audio."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def stage(self, name: str, total: int) -> None:
        if name == "writing":
            (self.root / "deleted.mp3").unlink()
            encode(
                *clip(4.0, start=5.0, name="music/electronic/northern_lights_1"),
                self.root / "replaced.mp3",
            )


# --- the run ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Build every case, hash every file, tag the folder once through the real pipeline."""
    root = tmp_path_factory.mktemp("hostile")
    build(root)
    before = {p: sha(p) for p in _files(root)}
    payload = {p: tags.audio_payload_hash(p) for p in before if _outcome_of(root, p) == "tagged"}
    lib = Library(root.parent / "hostile.db")
    summary = pipeline.tag_paths(lib, [root], pipeline.TagOptions(), progress=HostileProgress(root))
    yield {"root": root, "lib": lib, "summary": summary, "before": before, "payload": payload}
    lib.close()
    os.chmod(root / "ro_folder", 0o755)


def _files(root: Path) -> list[Path]:
    return [Path(d) / f for d, _, fs in os.walk(root) for f in fs if not (Path(d) / f).is_symlink()]


def _outcome_of(root: Path, path: Path) -> str | None:
    return EXPECTED.get(os.path.relpath(path, root))


def _got(hostile: dict, name: str) -> str:
    path = str(hostile["root"] / name)
    s = hostile["summary"]
    written = [c for c in s.changes if c.path == path]
    reasons = [r for p, r in s.failures if p == path]
    skips = [r for p, r in s.skips if p == path]
    if written:
        return "tagged"
    if skips and not reasons:
        return "skipped: " + " | ".join(skips)
    return "failed: " + " | ".join(reasons) if reasons else "unchanged"


def _matches(expected: str, got: str) -> bool:
    for outcome in ("failed", "skipped"):
        if expected.startswith(outcome):
            return got.startswith(outcome) and expected.removeprefix(outcome).strip(": ") in got
    return got == expected


@pytest.mark.slow
def test_every_case_has_its_documented_outcome(hostile: dict) -> None:
    wrong = {
        name: (want, _got(hostile, name))
        for name, want in EXPECTED.items()
        if not _matches(want, _got(hostile, name))
    }
    assert wrong == {}
    s = hostile["summary"]
    assert not s.interrupted and s.run_id is not None
    known = {str(hostile["root"] / name) for name in EXPECTED}
    assert {p for p, _ in s.failures} <= known  # no other file failed (symlink loops skipped)


@pytest.mark.slow
def test_digital_silence_is_not_given_a_genre(hostile: dict) -> None:
    assert _matches(SILENCE, _got(hostile, "silence.wav"))


@pytest.mark.slow
def test_files_not_written_are_byte_for_byte_unchanged(hostile: dict) -> None:
    root = hostile["root"]
    for path, digest in hostile["before"].items():
        if (
            path.name in ("deleted.mp3", "replaced.mp3")
            or _got(hostile, _rel(root, path)) == "tagged"
        ):
            continue
        assert sha(path) == digest, path


def _rel(root: Path, path: Path) -> str:
    return os.path.relpath(path, root)


@pytest.mark.slow
def test_tagged_files_decode_keep_their_audio_and_hold_the_new_genres(hostile: dict) -> None:
    changes = {c.path: c.new for c in hostile["summary"].changes}
    assert len(changes) >= 25
    for path, payload in hostile["payload"].items():
        assert tags.audio_payload_hash(path) == payload, path
        assert tags.read_tags(path).genres == changes[str(path)]
        assert decode.load_windows(path, 16000, [(0.0, 0.25)])[0].size > 0
    assert not list(hostile["root"].rglob("*" + tags.TEMP_SUFFIX))


@pytest.mark.slow
def test_odd_tags_survive_the_write(hostile: dict) -> None:
    root = hostile["root"]
    v1 = (root / "id3v1_only.mp3").read_bytes()[-128:]
    assert v1.startswith(b"TAG") and b"V1 Title" in v1
    assert ID3(root / "id3v22.mp3").version == (2, 2, 0)  # kept: nothing is converted
    assert str(ID3(root / "id3v22.mp3")["TIT2"]) == "V22 Title"
    assert str(APEv2(root / "apev2.mp3")["Title"]) == "APE Title"
    (pic,) = FLAC(root / "cover10mb.flac").pictures
    assert len(pic.data) == (10 << 20) + 4
    assert len(ID3(root / "cover10mb.mp3").getall("APIC")[0].data) == (10 << 20) + 3
    assert tags.read_tags(root / "numeric_genre.mp3").genres == ["Rock"]
    assert tags.read_tags(root / "multi_genre.flac").genres == ["Rock", "Blues"]
    assert tags.read_tags(root / "apev2_genre.mp3").genres == ["Jazz"]


@pytest.mark.slow
def test_odd_names_round_trip_through_the_database(hostile: dict) -> None:
    lib, root = hostile["lib"], hostile["root"]
    odd = ("Café", "latin1")
    names = [n for n in EXPECTED if any(o in unicodedata.normalize("NFC", n) for o in odd)]
    names += [n for n in EXPECTED if len(n) > 1000]
    assert len(names) == 4
    for name in names:
        track = lib.track_by_path(str(root / name))
        assert track is not None and track["status"] == "ok"
        assert tags.read_tags(track["path"]).genres  # the stored path opens the file again


@pytest.mark.slow
def test_every_failure_is_one_line(hostile: dict) -> None:
    for path, reason in hostile["summary"].failures:
        assert reason and "\n" not in reason and "Traceback" not in reason, (path, reason)


@pytest.mark.slow
def test_cli_reports_hostile_files_without_a_traceback(hostile: dict) -> None:
    """The same folder and database through the real command: rc 1, one line per failure."""
    db = hostile["lib"].path
    proc = subprocess.run(
        [sys.executable, "-c", "from mgctag.cli import run; run()", "tag", str(hostile["root"])]
        + ["--db", str(db)],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "read_only.mp3: file is read-only" in proc.stderr
    assert "zero.flac: empty file (0 bytes)" in proc.stderr


def test_scan_survives_files_deleted_and_replaced_during_it(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    y, sr = clip(3.0)
    for i in range(4):
        encode(y, sr, root / f"{i}.flac")

    def meddle(done: int, total: int, path: str) -> None:
        if done == 1:
            (root / "2.flac").unlink()
            (root / "3.flac").write_text("not audio any more")

    with Library(tmp_path / "lib.db") as lib:
        report = scan(lib, [root], on_progress=meddle)
        failed = dict(report.failures)
        assert report.new == 2 and report.failed == 2
        assert set(failed) == {str(root / "2.flac"), str(root / "3.flac")}
        assert all(reason and "\n" not in reason for reason in failed.values())
        again = scan(lib, [root])
        assert again.removed == 1  # the deleted file is gone on the next scan, no crash


def test_symlink_loops_end_even_when_following_links(tmp_path: Path) -> None:
    root = tmp_path / "m"
    (root / "a").mkdir(parents=True)
    encode(*clip(2.0), root / "a" / "x.flac")
    (root / "a" / "back").symlink_to("..")
    (root / "self.flac").symlink_to("self.flac")
    with Library(tmp_path / "lib.db") as lib:
        report = scan(lib, [root], follow_symlinks=True)
    assert report.new == 1
    assert any("self.flac" in p for p, _ in report.failures)


@pytest.mark.slow
def test_per_file_time_limit_turns_a_slow_decode_into_a_failure(
    hostile: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """decode.TIME_LIMIT bounds every decode the pipeline makes; set to 0 it trips at once."""
    track = hostile["lib"].track_by_path(str(hostile["root"] / "two_hours.mp3"))
    assert track["duration"] > 7000
    plan = InputPlan((InputSpec("mel"),))
    assert prepare(track, plan).error is None
    monkeypatch.setattr(decode, "TIME_LIMIT", 0.0)
    prepared = prepare(track, plan)
    assert not prepared.features and "longer than 0 s" in prepared.error


def _write_as_nobody(db: str, root: str, out: mp.Queue) -> None:
    """The write stage as an ordinary user, so the kernel (not mgctag's mode check) refuses."""
    try:
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        with Library(db) as lib:
            summary = pipeline.Summary(run_id=lib.start_run("tag", {}))
            tracks = list(lib.iter_tracks([root]))
            pipeline.write_tags(
                lib,
                tracks,
                pipeline.TagOptions(),
                summary,
                pipeline.Progress(),
                pipeline.StopFlag(),
            )
            out.put(("ok", summary.failures, summary.tagged))
    except BaseException as exc:  # report to the parent instead of dying silently
        out.put(("error", repr(exc), 0))


@pytest.fixture
def world_tmp() -> Path:
    """A tmp dir `nobody` can reach (pytest's own tmp dirs sit below a 0700 folder)."""
    base = Path(tempfile.mkdtemp(prefix="mgctag-perm-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it writes as the user nobody")
def test_permissions_are_enforced_for_an_ordinary_user(world_tmp: Path) -> None:
    """Analysed as root, written as `nobody`: an unwritable file and folder are reported, an
    unreadable file fails to read, a file nobody owns in a folder it owns is written."""
    tmp_path = world_tmp
    y, sr = clip(3.0)
    shared, own = tmp_path / "shared", tmp_path / "own"
    shared.mkdir()
    own.mkdir()
    for name in ("root_owned.mp3", "nobody_owned.mp3"):
        encode(y, sr, shared / name)
    encode(y, sr, own / "mine.mp3")
    encode(y, sr, own / "unreadable.mp3")
    db = tmp_path / "db" / "lib.db"
    with Library(db) as lib:
        opts = pipeline.TagOptions(dry_run=True)
        planned = pipeline.tag_paths(lib, [tmp_path / "shared", own], opts)
        assert len(planned.changes) == 4
    for path in [
        db.parent,
        *db.parent.iterdir(),
        own,
        own / "mine.mp3",
        shared / "nobody_owned.mp3",
    ]:
        os.chown(path, NOBODY, NOBODY)
    os.chown(own / "unreadable.mp3", 0, 0)
    os.chmod(own / "unreadable.mp3", 0o000)
    before = {p: sha(p) for p in (shared / "root_owned.mp3", own / "unreadable.mp3")}
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_write_as_nobody, args=(str(db), str(tmp_path), out))
    child.start()
    status, failures, tagged = out.get(timeout=300)
    child.join(60)
    assert status == "ok", failures
    reasons = {os.path.basename(p): r for p, r in failures}
    assert reasons == {
        "root_owned.mp3": "file is read-only",
        "nobody_owned.mp3": "folder is read-only (mgctag writes a temporary copy beside the file)",
        "unreadable.mp3": reasons["unreadable.mp3"],
    }
    # mutagen wraps the PermissionError: "cannot parse tags: [Errno 13] Permission denied: PATH"
    assert "permission denied" in reasons["unreadable.mp3"].lower()
    assert tagged == 1 and tags.read_tags(own / "mine.mp3").genres
    assert all(sha(p) == digest for p, digest in before.items())


# --- security -----------------------------------------------------------------------------------


class _Exploit:
    """Unpickling this runs a command (what a hostile .pt checkpoint can do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_model_registry_never_unpickles_weights(tmp_path: Path) -> None:
    from mgctag.models.cards import ModelError
    from mgctag.models.registry import load_model

    marker = tmp_path / "pwned"
    payload = pickle.dumps({"weight": _Exploit(marker)})
    for name in ("evil.pt", "evil.pth", "evil.ckpt", "evil.bin", "evil.safetensors"):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(ModelError):
            load_model(str(tmp_path / name))
    assert not marker.exists()
    pickle.loads(payload)  # the file really is an exploit: loading it the unsafe way runs it
    assert marker.exists()
