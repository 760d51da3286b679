"""The segmenter's data definitions (tools.data.segments_corpus): one split per package, nothing
reserved, and OpenArena-style music archives unpacked."""

import re
import zipfile
from pathlib import Path

import soundfile as sf

from tools.data import fetch_segment_noise
from tools.data import segments_corpus as corpus

METAL = Path(__file__).parent / "data" / "music" / "metal"


def test_every_package_belongs_to_one_split_and_none_is_reserved() -> None:
    splits: dict[str, set[str]] = {}
    for s in corpus.SOURCES:
        splits.setdefault(s.package, set()).add(s.split)
    for package in fetch_segment_noise.PACKAGES:  # the fifth build's noise (NOISE3)
        if package not in corpus.NOISE3_SKIP:
            splits.setdefault(package, set()).add(corpus.NOISE3_SPLIT.get(package, "train"))
    assert {p: s for p, s in splits.items() if len(s) > 1} == {}
    assert not set(splits) & set(corpus.RESERVED)
    assert set(corpus.WHOLE_TRACKS) <= set(splits)


def test_music_inside_a_pk3_is_unpacked_and_nothing_else(tmp_path) -> None:
    track = sorted(METAL.glob("*.ogg"))[0]
    pk3 = tmp_path / "usr" / "share" / "games" / "pak6.pk3"
    pk3.parent.mkdir(parents=True)
    with zipfile.ZipFile(pk3, "w") as z:
        z.write(track, "music/OA01.ogg")
        z.writestr("music/readme.txt", "not audio")
        z.writestr("sound/weapons/shot.wav", b"RIFF")
    corpus.unpack_pk3_music(tmp_path)
    found = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "pk3").rglob("*.*"))
    assert found == ["pk3/music/OA01.ogg"]
    assert sf.info(tmp_path / found[0]).duration == sf.info(track).duration
    rows = [s for s in corpus.SOURCES if s.package == "openarena-088-data"]
    assert rows and all(re.search(s.keep, "/pk3/music/OA01.ogg") for s in rows)
