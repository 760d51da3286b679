"""Training and evaluation on personal labels, on real audio features and real files.

The features are MFCC statistics (mean and std of 20 coefficients) of the in-repo genre set (34
real 10 s excerpts of 17 songs by 9 artists in five genres, tests/data/music), cached by pytest: a
cheap, real stand-in for musicnn embeddings that does separate genres. Artists come from
tests/data/music/genres.csv.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import librosa
import media
import numpy as np
import pytest
import torch
from conftest import cache_dir
from matplotlib.image import imread

from mgctag.audio import decode
from mgctag.genres import normalize_genre
from mgctag.library.db import Library
from mgctag.library.rows import Track
from mgctag.models import registry
from mgctag.models.inputs import InputPlan, InputSpec, prepare, select_input
from mgctag.train import distill, transfer
from mgctag.train.eval_protocols import compute_metrics, evaluate_protocol, learning_curve
from mgctag.train.heads import GenreHead, HeadConfig, predict_proba, train_head
from mgctag.train.labels import (
    LabelError,
    build_label_set,
    dataset_from_library,
    label_counts,
    labels_from_tags,
    merge_rare,
    read_label_csv,
)
from mgctag.train.report import (
    save_confusion_json,
    save_confusion_png,
    to_json,
    user_model_card,
)
from mgctag.train.splits import (
    SplitError,
    find_split_files,
    kfold_splits,
    leaked_groups,
    split_from_files,
    trial_splits,
)
from mgctag.train.workflow import NetworkData, fit_network

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
MUSIC_SET = media.MUSIC
GTZAN_SPLITS = media.SHARED / "gtzan-splits" / "kereliuk-dnn-mgr" / "gtzan"
SPEECH = ["198-209-0000", "3436-172162-0000", "5703-47212-0000"]  # three LibriSpeech readers
MUSIC = [
    "music/classical/knolls_1",
    "music/metal/war_of_freedom_1",
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra)",
    "Karissa_Hobbs_-_Lets_Go_Fishin",
    "music/classical/p_i_tchaikovsky_dance_of_the_sugar_plum_fairy_1",
    "Kevin_MacLeod_-_Vibe_Ace",
    "music/electronic/northern_lights_1",
]


def _mfcc_stats(path: Path) -> np.ndarray:
    mfcc = librosa.feature.mfcc(y=decode.load(path, 22050), sr=22050, n_mfcc=20)
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]).astype(np.float32)


@pytest.fixture(scope="module")
def tracks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """names (below tests/data/music), raw genres, artists and MFCC features of the genre set
    (features cached by pytest)."""
    rows = media.genre_set()
    names = [str(p.relative_to(MUSIC_SET)) for p, _, _ in rows]
    cache = cache_dir(request.config, tmp_path_factory, "mgctag-features") / "music_mfcc20_v1.npz"
    cached = np.load(cache) if cache.is_file() else None
    if cached is not None and list(cached["names"]) == names:
        X = cached["X"]
    else:
        X = np.stack([_mfcc_stats(p) for p, _, _ in rows])
        np.savez(cache, names=np.array(names), X=X)
    return {"names": names, "genres": [g for _, g, _ in rows], "artists": [a for *_, a in rows],
            "X": X}  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tracks: dict) -> dict:
    """Learning-curve labels: normalised; genres with under 5 tracks merged into their parent,
    or left out when they have none (Jazz, Folk: 2 excerpts each)."""
    pairs = labels_from_tags(zip(tracks["names"], ([g] for g in tracks["genres"]), strict=True))
    labels = build_label_set(merge_rare(pairs, min_count=5), min_count=5)
    rows = [tracks["names"].index(p) for p in labels.paths]
    assert len(rows) == 30 and labels.labels == ["Classical", "Electronic", "Metal"]
    # grouped by song, as Nexuiz's and Wesnoth's credits name a project, not one artist
    groups = np.array([tracks["names"][i].rsplit("_", 1)[0] for i in rows])
    return {"X": tracks["X"][rows], "Y": labels.matrix(), "labels": labels.labels, "groups": groups}


@pytest.fixture(scope="module")
def speech_music() -> dict:
    """3-s windows (4 per recording) of 3 speech and 7 music recordings; group = recording."""
    X, y, groups = [], [], []
    for cls, names in enumerate((SPEECH, MUSIC)):
        for name in names:
            audio, sr = decode.load(media.clip_path(name), 22050), 22050
            for start in range(0, min(len(audio) - 3 * sr, 12 * sr) + 1, 3 * sr):
                mfcc = librosa.feature.mfcc(y=audio[start : start + 3 * sr], sr=sr, n_mfcc=20)
                X.append(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]))
                y.append(cls)
                groups.append(name)
    return {
        "X": np.array(X, np.float32),
        "Y": np.eye(2, dtype=np.float32)[y],
        "groups": np.array(groups),
        "labels": ["speech", "music"],
    }


# --- labels ---


def test_labels_from_tags_normalise_and_leave_out_rare_classes():
    tracks = [
        ("a.mp3", ["Hip Hop"]),
        ("b.mp3", ["hip-hop"]),
        ("c.mp3", ["HIPHOP; Jazz"]),
        ("d.mp3", ["Jazz"]),
        ("e.mp3", ["Polka"]),
        ("f.mp3", None),
        ("g.mp3", ["  "]),
    ]
    pairs = labels_from_tags(tracks)
    assert [p for p, _ in pairs] == ["a.mp3", "b.mp3", "c.mp3", "d.mp3", "e.mp3"]
    assert pairs[2][1] == ["Hip-Hop", "Jazz"]
    counts = label_counts([g for _, g in pairs], min_count=2)
    assert counts.counts == {"Hip-Hop": 3, "Jazz": 2, "Polka": 1}
    assert counts.dropped == {"Polka": 1} and counts.kept == ["Hip-Hop", "Jazz"]
    labels = build_label_set(pairs, min_count=2)
    assert labels.labels == ["Hip-Hop", "Jazz"] and labels.n_unlabelled == 1
    assert labels.multi_label
    assert labels.matrix().tolist() == [[1, 0], [1, 0], [1, 1], [0, 1]]


def test_merge_rare_lifts_into_parent_then_other():
    pairs = [(f"{i}", ["Punk"]) for i in range(2)] + [(f"r{i}", ["Rock"]) for i in range(3)]
    pairs += [("j", ["Jazz"])]
    merged = dict(merge_rare(pairs, min_count=5))
    assert merged["0"] == ["Rock"] and merged["r0"] == ["Rock"]  # Punk's parent is Rock: 5 now
    assert merged["j"] == ["Other"]  # Jazz has no parent


def test_label_csv_real_file(tracks: dict):
    known = [str(MUSIC_SET / n) for n in tracks["names"]]
    pairs = read_label_csv(MUSIC_SET / "genres.csv", known_paths=known, base_dir=MUSIC_SET)
    assert len(pairs) == 34
    got = dict(pairs)
    assert got[str(MUSIC_SET / "metal" / "armygeddon_1.ogg")] == [normalize_genre("Metal")]
    assert got[str(MUSIC_SET / "folk" / "let_s_go_fishin_2.ogg")] == [normalize_genre("Folk")]


def test_label_csv_several_genres_and_suffix_paths(tmp_path: Path):
    known = ["/music/A/x.flac", "/music/B/y.mp3", "/music/C/y.mp3"]
    src = tmp_path / "labels.csv"
    src.write_text("path,genre\nA/x.flac,Rock\nA/x.flac,jazz\nB/y.mp3,Folk;Hip Hop\n")
    pairs = dict(read_label_csv(src, known_paths=known))
    assert pairs == {"/music/A/x.flac": ["Rock", "Jazz"], "/music/B/y.mp3": ["Folk", "Hip-Hop"]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("path,genre\n/music/a.mp3,Rock\n/music/zz.mp3,Rock\n", ":3: unknown path '/music/zz.mp3'"),
        ("/music/a.mp3,Rock\n/music/b.mp3,  \n", ":2: empty genre for '/music/b.mp3'"),
        ("path,genre\n/music/a.mp3\n", ":2: expected a path and a genre"),
        ("path,genre\n,Rock\n", ":2: empty path"),
        ("path,genre\n", ": no label rows found"),
    ],
)
def test_label_csv_errors_name_file_and_line(tmp_path: Path, body: str, message: str):
    src = tmp_path / "labels.csv"
    src.write_text(body)
    with pytest.raises(LabelError) as err:
        read_label_csv(src, known_paths=["/music/a.mp3", "/music/b.mp3"])
    assert str(err.value).startswith(str(src)) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_label_csv_unreadable(tmp_path: Path):
    src = tmp_path / "labels.csv"
    src.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(LabelError, match="cannot read labels CSV"):
        read_label_csv(src)
    with pytest.raises(LabelError, match="cannot read"):
        read_label_csv(tmp_path / "missing.csv")


# --- splits ---


def test_kfold_grouped_stratified_no_leak(dataset: dict):
    folds = kfold_splits(dataset["Y"], dataset["groups"], k=5, seed=3)
    assert len(folds) == 5
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested.tolist()) == list(range(len(dataset["Y"])))
    for fold in folds:
        assert leaked_groups(fold, dataset["groups"]) == set()
        assert len(np.intersect1d(fold.train, fold.test)) == 0
    again = kfold_splits(dataset["Y"], dataset["groups"], k=5, seed=3)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again, strict=True))


def test_trials_count_size_and_no_leak(dataset: dict):
    trials = trial_splits(dataset["Y"], dataset["groups"], n_trials=7, test_size=0.25, seed=1)
    assert len(trials) == 7
    assert len({tuple(t.test) for t in trials}) > 1  # different draws
    for t in trials:
        assert leaked_groups(t, dataset["groups"]) == set()
        assert 0.1 < len(t.test) / len(dataset["Y"]) < 0.45


def test_leak_detector_catches_a_shared_source(dataset: dict):
    g = dataset["groups"]
    first = np.flatnonzero(g == "metal/armygeddon")
    assert len(first) == 2
    split = kfold_splits(dataset["Y"], g, k=5)[0]
    bad = type(split)("bad", np.array([first[0]]), np.array([first[1]]))
    assert leaked_groups(bad, g) == {"metal/armygeddon"}


def test_too_few_groups(dataset: dict):
    with pytest.raises(SplitError, match="only 2 artist/album group"):
        kfold_splits(dataset["Y"][:4], np.array(["a", "a", "b", "b"]), k=3)


def test_split_files_gtzan_fault_filtered_lists():
    files = find_split_files(media.need(GTZAN_SPLITS), variant="filtered")
    assert set(files) == {"train", "valid", "test"}
    listed = [e for f in files.values() for e in f.read_text().split()]
    # The user's copy: converted to FLAC, in another root, one genre folder missing entirely.
    paths = [f"/home/u/GTZAN/genres/{e[:-4]}.flac" for e in listed if not e.startswith("reggae/")]
    split = split_from_files(paths, files)
    n_reggae = sum(e.startswith("reggae/") for e in listed)
    assert (len(split.train), len(split.valid), len(split.test)) == (443, 197, 290) or n_reggae
    assert len(split.train) + len(split.valid) + len(split.test) == len(paths)
    assert split.unmatched == n_reggae > 0
    assert len(set(split.train) | set(split.valid) | set(split.test)) == len(paths)


def test_split_files_errors(tmp_path: Path):
    (tmp_path / "train.txt").write_text("rock/a.wav\nrock/b.wav\n")
    (tmp_path / "test.txt").write_text("rock/b.wav\n")
    paths = ["/m/rock/a.mp3", "/m/rock/b.mp3"]
    with pytest.raises(SplitError, match="also in the train list"):
        split_from_files(paths, find_split_files(tmp_path))
    (tmp_path / "test.txt").write_text("jazz/q.wav\n")
    with pytest.raises(SplitError, match="none of its 1 files"):
        split_from_files(paths, find_split_files(tmp_path))
    with pytest.raises(SplitError, match="needs at least a train"):
        find_split_files(tmp_path / "nowhere")


# --- heads and evaluation ---


@pytest.mark.slow
def test_head_beats_chance_on_real_features(speech_music: dict):
    """Recordings never straddle a split, so this is speech vs music on unseen recordings."""
    d = speech_music
    report = evaluate_protocol(d["X"], d["Y"], d["labels"], d["groups"], protocol="kfold", k=3)
    majority = d["Y"].sum(axis=0).max() / len(d["Y"])
    assert len(report.folds) == 3 and all(f.leaked_groups == 0 for f in report.folds)
    assert report.pooled.accuracy > max(0.9, majority + 0.15), (report.pooled.accuracy, majority)
    assert report.pooled.macro_f1 > 0.85


def test_kfold_protocol_report_on_musdb(dataset: dict):
    report = evaluate_protocol(
        dataset["X"], dataset["Y"], dataset["labels"], dataset["groups"], protocol="kfold", k=5
    )
    assert len(report.folds) == 5 and report.pooled.n == len(dataset["Y"])
    assert sum(f.test.n for f in report.folds) == len(dataset["Y"])
    assert all(f.leaked_groups == 0 for f in report.folds)
    data = json.loads(to_json(report))
    assert data["protocol"] == "kfold" and data["train_config"]["seed"] == 0
    assert data["params"] == {"k": 5} and data["n_groups"] == len(set(dataset["groups"]))
    assert np.array(data["pooled"]["confusion"]).sum() == len(dataset["Y"])
    per = data["pooled"]["per_genre"]
    assert sum(v["support"] for v in per.values()) == len(dataset["Y"])


def test_trials_protocol_mean_std(dataset: dict):
    report = evaluate_protocol(
        dataset["X"], dataset["Y"], dataset["labels"], dataset["groups"],
        protocol="trials", n_trials=4, test_size=0.3, seed=2,
    )  # fmt: skip
    assert len(report.folds) == 4 and report.params == {"n_trials": 4, "test_size": 0.3}
    mean, std = report.macro_f1
    assert mean == pytest.approx(np.mean([f.test.macro_f1 for f in report.folds]))
    assert std > 0


def test_mlp_and_adam_train(dataset: dict):
    X, Y, labels = dataset["X"], dataset["Y"], dataset["labels"]
    mlp, rep = train_head(X, Y, labels, hidden=32, seed=1)
    assert rep.iterations > 0 and rep.train_accuracy > 0.9 and not rep.multi_label
    P = predict_proba(mlp, X)
    assert P.shape == (len(Y), len(labels)) and np.allclose(P.sum(axis=1), 1.0, atol=1e-5)
    _, rep_adam = train_head(X, Y, labels, optimizer="adam", epochs=50, dropout=0.2, hidden=16)
    assert rep_adam.train_accuracy > 1.0 / len(labels)


def test_multi_label_head_uses_sigmoid(dataset: dict):
    X, Y = dataset["X"], dataset["Y"].copy()
    Y[:10, 0] = 1.0  # first ten tracks also carry the first genre
    head, rep = train_head(X, Y, dataset["labels"])
    assert rep.multi_label and head.multi_label
    P = predict_proba(head, X)
    assert not np.allclose(P.sum(axis=1), 1.0)
    m = compute_metrics(Y, P, dataset["labels"], multi_label=True)
    assert 0.0 < m.macro_f1 <= 1.0 and np.array(m.confusion).sum() >= len(Y)


def test_bad_training_input(dataset: dict):
    with pytest.raises(ValueError, match="do not match"):
        train_head(dataset["X"], dataset["Y"][:, :2], dataset["labels"])
    with pytest.raises(ValueError, match="dropout needs"):
        train_head(dataset["X"], dataset["Y"], dataset["labels"], dropout=0.5)


def test_save_load_round_trip_identical(tmp_path: Path, dataset: dict, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    X, Y, labels = dataset["X"], dataset["Y"], dataset["labels"]
    head, rep = train_head(X, Y, labels, hidden=16, seed=4)
    card = user_model_card(
        "my-genres", head, rep, embedding_model="mfcc20", stems=["mix"], metrics={"k": 1}
    )
    weights = registry.save_model(head, registry.ModelCard.from_dict(card), tmp_path / "models")
    loaded, loaded_card = registry.load_model(weights, cache=False)
    assert isinstance(loaded, GenreHead) and loaded_card.labels == labels
    assert np.array_equal(predict_proba(loaded, X), predict_proba(head, X))
    assert loaded_card.preprocessing["embedding_model"] == "mfcc20"
    assert loaded_card.to_dict()["source"]["seed"] == 4


# --- library adapter, reports, learning curve ---


def test_dataset_from_real_library(tmp_path: Path, tracks: dict):
    lib = Library(tmp_path / "lib.db")
    for name, genre, artist, x in zip(
        tracks["names"], tracks["genres"], tracks["artists"], tracks["X"], strict=True
    ):
        path = f"/music/{name}"
        tid = lib.upsert_track({"path": path, "artist": artist, "genres": [genre], "status": "ok"})
        if "war_of_freedom" not in name:  # two tracks not analysed yet
            lib.save_analysis(tid, "mfcc20", "none", {}, [], {"mix": x, "vocals": -x})
    data = dataset_from_library(lib, model="mfcc20", stems=("mix", "vocals"), min_count=5)
    lib.close()
    assert data.n_without_embedding == 2 and data.X.shape[1] == 80
    assert set(data.labels) == {"Classical", "Electronic", "Metal"}
    assert data.label_set.counts.dropped == {"Jazz": 2, "Folk": 2}
    row = data.paths.index("/music/metal/armygeddon_1.ogg")
    x = tracks["X"][tracks["names"].index("metal/armygeddon_1.ogg")]
    # embeddings are stored as float16 (the compact store): equal to float16's precision
    assert np.allclose(data.X[row], np.concatenate([x, -x]), rtol=2e-3, atol=1e-3)
    assert data.groups[row] == "artist:muldjord (el senator)"


def test_confusion_png_and_json(tmp_path: Path, dataset: dict):
    cm = [[5, 1, 0], [2, 3, 0], [0, 0, 4]]
    png = save_confusion_png(cm, ["Rock", "Jazz", "Folk"], tmp_path / "cm.png", title="test")
    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 200 and image.std() > 0.01
    saved = save_confusion_json(cm, ["Rock", "Jazz", "Folk"], tmp_path / "cm.json")
    data = json.loads(saved.read_text())
    assert data["matrix"] == cm and data["labels"] == ["Rock", "Jazz", "Folk"]


def test_learning_curve_small(dataset: dict):
    curve = learning_curve(
        dataset["X"], dataset["Y"], dataset["labels"], dataset["groups"],
        sizes=(1, 5, None), repeats=3, seed=0, config=HeadConfig(),
    )  # fmt: skip
    assert [p.per_class for p in curve.points] == [1, 5, None]
    n = [p.n_train_mean for p in curve.points]
    assert n[0] <= len(dataset["labels"]) < n[1] < n[2]
    assert curve.points[-1].accuracy[0] > curve.points[0].accuracy[0] - 0.05


def test_printed_macro_f1_matches_the_per_genre_table(dataset: dict):
    """The table pools every split's test tracks; the pooled macro-F1 printed beside it is the
    mean of its F1 column, and the mean over splits is named as such (issue 17)."""
    from mgctag.cli.output import out
    from mgctag.cli.train import print_eval

    report = evaluate_protocol(
        dataset["X"], dataset["Y"], dataset["labels"], dataset["groups"], protocol="kfold", k=5
    )
    per = report.pooled.per_genre
    table_mean = np.mean([m["f1"] for m in per.values() if m["support"] > 0])
    assert report.pooled.macro_f1 == pytest.approx(table_mean)
    with out.capture() as captured:
        print_eval(report)
    assert f"the table pools every split's test tracks: macro-F1 {table_mean:.3f}" in (
        captured.get()
    )


def test_trials_put_every_genre_in_some_test_split(dataset: dict):
    """Stratified trials: over the trials, each genre is tested (issue 17)."""
    splits = trial_splits(dataset["Y"], dataset["groups"], n_trials=10, test_size=0.2, seed=0)
    tested = np.zeros(len(dataset["labels"]), dtype=bool)
    for split in splits:
        tested |= dataset["Y"][split.test].sum(axis=0) > 0
    missing = [g for g, t in zip(dataset["labels"], tested, strict=True) if not t]
    assert missing == []
    for split in splits:  # and each trial tests most genres, not a lucky few
        assert (dataset["Y"][split.test].sum(axis=0) > 0).mean() >= 0.8


def test_eval_without_a_source_uses_the_labels_train_uses(tmp_path: Path, tracks: dict):
    """Genres mgctag wrote itself are not labels for eval either (scoring the model on its own
    output is circular); eval says where its labels come from and how many tracks (issue 17)."""
    from conftest import cli

    from mgctag.train import workflow

    lib = Library(tmp_path / "lib.db")
    ours = set()
    for i, (name, genre, artist, x) in enumerate(
        zip(tracks["names"], tracks["genres"], tracks["artists"], tracks["X"], strict=True)
    ):
        path = f"/music/{name}"
        tid = lib.upsert_track({"path": path, "artist": artist, "genres": [genre], "status": "ok"})
        lib.save_analysis(tid, "musicnn", "none", {}, [], {"mix": x})
        if i % 3 == 0:  # mgctag tagged these: their genre now is its own prediction
            write = lib.begin_write(None, tid, path, [], ["Electronic"])
            lib.confirm_write(write, 1, 1)
            ours.add(path)
    pairs = workflow.library_pairs(lib)
    ds = workflow.dataset(lib, None, ["mix"], 5)
    lib.close()
    assert ours and not ours & set(ds.paths) and set(ds.paths) <= {p for p, _ in pairs}
    result = cli("eval", "--db", tmp_path / "lib.db", "--folds", "3")
    assert result.code == 0, result.output
    assert (
        f"labels: the genre tags you wrote (mgctag's own left out); {len(ds.labels)} genres over "
        f"{len(ds.Y)} tracks"
    ) in result.stdout


# --- starting a network from a distilled student (`--arch ARCH --init STUDENT`) ---


def _previews(per_genre: int, genres: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(path, genre, artist) of the first `per_genre` songs of each genre in the genre set."""
    return [
        (str(path), genre, artist)
        for want in genres
        for path, genre, artist in [r for r in media.songs() if r[1] == want][:per_genre]
    ]


def _network_data(kind: str, per_genre: int = 2) -> NetworkData:
    """Real patches of a few previews, made by the pipeline's own `prepare` (no library)."""
    tracks = _previews(per_genre, ("Metal", "Classical"))
    plan = InputPlan((InputSpec(kind),))
    xs, ys, owners = [], [], []
    for i, (path, _, _) in enumerate(tracks):
        x = select_input(prepare(Track.of_file(path), plan).features, kind)
        xs.append(x)
        ys.append(np.full(len(x), i // per_genre))
        owners.append(np.full(len(x), i))
    y_track = np.arange(len(tracks)) // per_genre
    return NetworkData(
        "swishnet" if kind == "mfcc" else "stemcnn",
        kind,
        np.concatenate(xs),
        np.concatenate(ys),
        np.concatenate(owners),
        y_track,
        np.eye(2)[y_track],
        ["Metal", "Classical"],
        [artist for _, _, artist in tracks],
        None,
    )


@pytest.mark.parametrize("name", transfer.students())
def test_init_keeps_every_weight_but_the_output_layer(name: str):
    student = transfer.load_student(name, registry.ModelCard.read(WEIGHTS / f"{name}.json").arch)
    before = {k: v.clone() for k, v in student.model.state_dict().items()}
    model = transfer.with_new_output(student, 4)
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    assert kept and all(torch.equal(v, before[k]) for k, v in kept.items())
    classifier = model.classifier
    out = classifier[-1] if isinstance(classifier, torch.nn.Sequential) else classifier
    assert isinstance(out, torch.nn.Linear) and out.out_features == 4
    assert model.config["n_classes"] == 4
    assert model(torch.zeros(2, *_shape(student)))[0].shape == (2, 4)
    # the card written from model.config rebuilds exactly this network
    card = registry.ModelCard(name="x", arch=student.card.arch, labels=list("abcd"))
    rebuilt = registry.build(replace(card, arch_args=model.config))
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    # the student itself is untouched; the new layer starts from zero: every genre equally likely
    assert all(torch.equal(v, before[k]) for k, v in student.model.state_dict().items())
    assert not out.weight.any() and (out.bias is None or not out.bias.any())


def _shape(student: transfer.Student) -> tuple[int, ...]:
    prep = student.card.preprocessing
    bins = 20 if prep["input"] == "mfcc" else 96
    return (len(prep["stems"]), 187, bins) if prep["input"] == "stems" else (187, bins)


def test_init_refuses_another_architecture_or_a_model_that_is_no_student():
    with pytest.raises(registry.ModelError, match=r"^--init crnn_small: a crnn network, not"):
        transfer.load_student("crnn_small", "swishnet")
    for name in ("segmenter_swishnet", "MSD_musicnn"):  # a speech/music segmenter, a port
        with pytest.raises(registry.ModelError, match=rf"^--init {name}: not a genre network"):
            transfer.load_student(name, "swishnet")
    with pytest.raises(registry.ModelError, match=r"^--init nope: unknown model"):
        transfer.load_student("nope", "crnn")


def test_mfcc_student_reads_its_own_standardize_statistics():
    """swishnet_slim learned on MFCCs standardised with its training set's statistics: from it,
    the user's patches are standardised with those, not with statistics of the user's tracks."""
    student = transfer.load_student("swishnet_slim", "swishnet")
    data = _network_data("mfcc")
    train = np.array([0, 2])
    model, prep, x_t = fit_network(data, train, epochs=1, seed=0, student=student)
    stats = student.card.preprocessing["standardize"]
    assert prep["standardize"] == stats
    expected = (torch.as_tensor(data.x) - torch.tensor(stats["mean"])) / torch.tensor(stats["std"])
    assert torch.allclose(x_t, expected)
    own = distill.standardizer(torch.as_tensor(data.x[np.isin(data.owner, train)]))
    assert own["mean"] != stats["mean"]  # from scratch, these would have been used
    _, scratch_prep, _ = fit_network(data, train, epochs=1, seed=0)
    assert scratch_prep["standardize"] == own
    assert model.classifier.out_features == 2


def test_the_card_not_the_architecture_says_what_a_student_reads(tmp_path: Path, monkeypatch):
    """A stem CNN distilled on the mix (as `stemcnn_mix`) reads the mel, not stems."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    from mgctag import config
    from mgctag.models.stemcnn import StemCnn

    net = StemCnn(n_classes=5, in_channels=1, separable=True)
    prep = {"input": "mel", "patch_frames": 187, "sample_rate": 16000}
    card = registry.ModelCard(
        "mix_student", "stemcnn", list("abcde"), net.config, prep,
        source={"trained_by": "mgctag, by knowledge distillation"},
    )  # fmt: skip
    registry.save_model(net, card, config.user_models_dir())
    student = transfer.load_student("mix_student", "stemcnn")
    assert transfer.network_input("stemcnn", student) == ("mel", None, ("drums", "bass", "other"))
    assert transfer.network_input("stemcnn", None)[:2] == ("stems", "hpss")
    data = _network_data("mel")
    model, got, x_t = fit_network(data, np.array([0, 2]), epochs=3, seed=0, student=student)
    assert got == prep and x_t.shape[1:] == (187, 96) and model.config["in_channels"] == 1
    before = student.model.state_dict()["features.0.0.weight"]
    # trained (the first step reaches only the zero-started output layer; the later ones go on)
    assert not torch.equal(model.state_dict()["features.0.0.weight"], before)


@pytest.mark.slow
def test_train_and_eval_from_a_distilled_student(tmp_path: Path, monkeypatch):
    """`train NAME --arch crnn --init crnn_small` on real excerpts: the saved model keeps the
    student's features and reloads from its card with one output per user genre; `eval --init`
    runs a protocol from the same student."""
    from conftest import cli

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    db = tmp_path / "lib.db"
    lib = Library(db)
    pairs = [(p, g) for p, g, _ in _previews(5, ("Metal", "Classical", "Electronic"))]  # 5: 20 %
    for path, _ in pairs:  # artist: the song (Nexuiz's and Wesnoth's credits name a project)
        st = Path(path).stat()  # as scanned: size and mtime recorded, so not "retagged since"
        info = {"path": path, "size": st.st_size, "mtime": st.st_mtime_ns}
        lib.upsert_track({**info, "artist": Path(path).stem, "status": "ok"})
    lib.close()
    labels = tmp_path / "labels.csv"
    labels.write_text("path,genre\n" + "".join(f'"{p}",{g}\n' for p, g in pairs))
    common = ("--arch", "crnn", "--init", "crnn_small", "--labels", labels, "--min-count", "3")
    result = cli("train", "mine", *common, "--epochs", "2", "--db", db, "--json")
    assert result.code == 0, result.output
    card = json.loads(result.stdout)["card"]
    assert card["source"]["init"] == "crnn_small" and card["source"]["lr"] == transfer.FINE_TUNE_LR
    assert card["labels"] == ["Classical", "Electronic", "Metal"]
    student = registry.ModelCard.read(WEIGHTS / "crnn_small.json")
    assert card["preprocessing"] == student.preprocessing
    model, loaded = registry.load_model("mine", cache=False)
    assert loaded.arch_args == {**student.arch_args, "n_classes": 3}
    assert model.classifier[-1].out_features == 3

    eval_args = ("eval", labels, *common[:4], "--min-count", "3", "--folds", "2", "--epochs", "1")
    result = cli(*eval_args, "--db", db, "--json")
    assert result.code == 0, result.output
    report = json.loads(result.stdout)
    assert report["init"] == "crnn_small" and report["splits"] == 2 and report["input"] == "mel"
    assert report["n_tracks"] == len(pairs)


def test_train_refuses_a_model_of_one_genre(tmp_path: Path, tracks: dict):
    """One genre is no model: train saved it and printed "accuracy 1.000" (issue #25); now it
    says why before anything is trained or saved."""
    from conftest import cli

    lib = Library(tmp_path / "lib.db")
    for name, artist, x in zip(tracks["names"], tracks["artists"], tracks["X"], strict=True):
        tid = lib.upsert_track(
            {"path": f"/music/{name}", "artist": artist, "genres": ["Metal"], "status": "ok"}
        )
        lib.save_analysis(tid, "musicnn", "none", {}, [], {"mix": x})
    lib.close()
    result = cli("train", "mono", "--db", tmp_path / "lib.db")
    assert result.code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "only one genre (Metal) has 5 or more labelled tracks" in line
    assert "accuracy" not in result.output


def test_eval_reads_a_labels_csv_as_train_does(tmp_path: Path, tracks: dict):
    """Relative paths in a CSV name library tracks for eval as for train --labels (issue #25)."""
    from conftest import cli

    lib = Library(tmp_path / "lib.db")
    for name, artist, x in zip(tracks["names"], tracks["artists"], tracks["X"], strict=True):
        tid = lib.upsert_track({"path": f"/music/{name}", "artist": artist, "status": "ok"})
        lib.save_analysis(tid, "musicnn", "none", {}, [], {"mix": x})
    lib.close()
    labels = tmp_path / "elsewhere" / "labels.csv"
    labels.parent.mkdir()
    rows = zip(tracks["names"], tracks["genres"], strict=True)
    labels.write_text("".join(f"{name},{genre}\n" for name, genre in rows))
    result = cli("eval", labels, "--db", tmp_path / "lib.db", "--folds", "3", "--json")
    assert result.code == 0, result.output  # before: "unknown path ... (not in the library ...)"
    assert json.loads(result.stdout)["n_tracks"] >= 30


def _stored_genre_set(db: Path, tracks: dict) -> None:
    """The genre set as a library: each excerpt's artist and genre tag, and its MFCC statistics
    stored as the default embedding (the real features stand in for musicnn's)."""
    lib = Library(db)
    for name, genre, artist, x in zip(
        tracks["names"], tracks["genres"], tracks["artists"], tracks["X"], strict=True
    ):
        path = f"/music/{name}"
        tid = lib.upsert_track({"path": path, "artist": artist, "genres": [genre], "status": "ok"})
        lib.save_analysis(tid, "musicnn", "none", {}, [], {"mix": x})
    lib.close()


def test_train_warns_once_per_genre_whose_tracks_all_come_from_one_artist(home: Path, tracks: dict):
    """All ten Electronic excerpts are by one artist (Nexuiz's): a head learns that artist's
    sound, not the genre. One line says so; Metal (two artists) and Classical (four) are fine."""
    from conftest import cli

    db = home / "lib.db"
    _stored_genre_set(db, tracks)
    result = cli("train", "mine", "--db", db)
    assert result.code == 0, result.output
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings == [
        "warning: genre Electronic: every labelled track comes from one artist (alientrap / "
        "nexuiz contributors); the model learns that artist, not the genre: label tracks of others"
    ]


def test_train_and_eval_share_the_fold_default(home: Path, tracks: dict):
    """`train` evaluated with 5 folds and `eval` with 10 (issue #25): one default now, from
    mgctag.options, in both commands' help and in what they run."""
    from conftest import cli

    from mgctag.options import TRAIN

    db = home / "lib.db"
    _stored_genre_set(db, tracks)
    trained = cli("train", "mine", "--db", db, "--json")
    assert trained.code == 0, trained.output
    evaluated = cli("eval", "--db", db, "--json")
    assert evaluated.code == 0, evaluated.output
    train_folds = json.loads(trained.stdout)["evaluation"]["folds"]
    eval_folds = json.loads(evaluated.stdout)["folds"]
    assert len(train_folds) == len(eval_folds) == TRAIN.folds
    assert [f["split"] for f in train_folds] == [f["split"] for f in eval_folds]  # same splits
