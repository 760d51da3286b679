"""The seed-paper genre networks: shapes, learning on real features, weight round-trips, CCS.

Features are the project's own log-mel / MFCC of real recordings: four in-repo recordings of
four genres (tests/data) for the mix models (one class per recording) and real MUSDB18 stems
(drums, bass, other streams of the .stem.mp4 previews, optional: ../shared) for the stem CNN.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import cache_dir
from media import LIBROSA, MUSDB, MUSIC, need
from safetensors.torch import load_file, save_file
from torch import nn

from mgctag.audio import decode, features
from mgctag.genres import GenreMap
from mgctag.models import registry
from mgctag.models.crnn import Cnn1d, Cnn2d, Crnn
from mgctag.models.ecapa import EcapaTdnn
from mgctag.models.inputs import select_input
from mgctag.models.mobilenet import TAPS, MobileNetV2
from mgctag.models.stemcnn import StemCnn
from mgctag.models.swishnet import SwishNet
from mgctag.train.distill import (
    DistillConfig,
    Teacher,
    cache_track,
    class_weights,
    distillation_loss,
    load_patches,
    teacher_agreement,
    teacher_classes,
    train_student,
    weight_penalty,
)

N_CLASSES = 4
MIX_CLIPS = (  # jazz, orchestra, metal, electronic
    LIBROSA / "Kevin_MacLeod_-_Vibe_Ace.hq.ogg",
    LIBROSA / "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).hq.ogg",
    MUSIC / "metal" / "chaos_god_1.ogg",
    MUSIC / "electronic" / "digital_pursuit_1.ogg",
)
STEM_TRACKS = (  # one per genre
    "ANiMAL - Clinic A.stem.mp4",
    "Chris Durban - Celebrate.stem.mp4",
    "Young Griffo - Facade.stem.mp4",
    "Patrick Talbot - Set Me Free.stem.mp4",
)

# name -> (builder, input kind); the defaults that will be bundled, plus the variants the papers
# compare. "mel": (B, 187, 96); "stems": (B, 3, 187, 96); "mfcc": (B, 187, 20).
MODELS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "stemcnn": (lambda: StemCnn(N_CLASSES), "stems"),
    "stemcnn_separable": (lambda: StemCnn(N_CLASSES, separable=True), "stems"),
    "stemcnn_mix": (lambda: StemCnn(N_CLASSES, in_channels=1, separable=True), "mel"),
    "ecapa": (lambda: EcapaTdnn(N_CLASSES), "mel"),
    "ecapa_ccs_fsa": (
        lambda: EcapaTdnn(N_CLASSES, cont=192, stop=64, n_bands=3, shared_frontend=True),
        "mel",
    ),
    "swishnet_slim": (lambda: SwishNet(N_CLASSES, width=1), "mfcc"),
    "swishnet_wide": (lambda: SwishNet(N_CLASSES, width=2), "mfcc"),
    "cnn2d_shallow": (lambda: Cnn2d(N_CLASSES), "mel"),
    "cnn2d_deep": (lambda: Cnn2d(N_CLASSES, channels=(32, 64, 128, 128, 256)), "mel"),
    "cnn1d": (lambda: Cnn1d(N_CLASSES), "mel"),
    "crnn": (lambda: Crnn(N_CLASSES), "mel"),
    "mobilenetv2": (lambda: MobileNetV2(N_CLASSES), "mel"),
}
# Narrower versions of the slow ones for the training test: same code paths, a third of the time.
SMALL = {
    "ecapa": lambda: EcapaTdnn(N_CLASSES, cont=64, mfa_channels=192, embedding_dim=64),
    "ecapa_ccs_fsa": lambda: EcapaTdnn(
        N_CLASSES, cont=64, stop=32, mfa_channels=192, embedding_dim=64, n_bands=3
    ),
    "mobilenetv2": lambda: MobileNetV2(N_CLASSES, width=0.5),
    "crnn": lambda: Crnn(N_CLASSES, channels=(16, 32, 32, 32), hidden=32),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: the CI box is shared, and small convolutions gain nothing from more."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _patches(y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n 187-frame log-mel and MFCC patches of 16 kHz mono audio."""
    return features.patches(features.log_mel(y))[:n], features.patches(features.mfcc(y))[:n]


class Inputs(dict[str, tuple[torch.Tensor, torch.Tensor]]):
    """Inputs by kind; "stems" is decoded on first use, as it needs the (optional) MUSDB stems,
    and kept in pytest's cache (decoding 12 AAC streams is most of this module's time)."""

    def __init__(self, cache: Path, **kinds: tuple[torch.Tensor, torch.Tensor]) -> None:
        super().__init__(**kinds)
        self.cache = cache / "musdb_stem_patches_v1.npy"

    def __missing__(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        if kind != "stems":
            raise KeyError(kind)
        need(MUSDB)
        if not self.cache.is_file():
            stems = []
            for name in STEM_TRACKS:  # streams 1, 2, 3 = drums, bass, other
                path = MUSDB / "train" / name
                chans = [_patches(decode.load(path, 16000, stream=s), 2)[0] for s in (1, 2, 3)]
                stems.append(np.stack(chans, axis=1))
            part = self.cache.with_suffix(f".{os.getpid()}.npy")
            np.save(part, np.concatenate(stems))
            part.replace(self.cache)  # whole or not at all
        self[kind] = (torch.from_numpy(np.load(self.cache)), self["mel"][1])
        return self[kind]


@pytest.fixture(scope="module")
def data(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    """Real inputs of every kind, 2 patches per recording, label = recording."""
    mels, mfccs, labels = [], [], []
    for label, path in enumerate(MIX_CLIPS):
        mel, mfcc = _patches(decode.load(path, 16000, duration=6.5), 2)
        mels.append(mel)
        mfccs.append(mfcc)
        labels += [label] * 2
    y = torch.tensor(labels)
    return Inputs(
        cache_dir(request.config, tmp_path_factory, "mgctag-features"),
        mel=(torch.from_numpy(np.concatenate(mels)), y),
        mfcc=(torch.from_numpy(np.concatenate(mfccs)), y),
    )


@pytest.mark.parametrize("name", MODELS)
def test_forward_shapes_and_any_length(name, data):
    build, kind = MODELS[name]
    model = build().eval()
    x, _ = data[kind]
    with torch.no_grad():
        logits, emb = model(x[:3])
        longer = torch.cat([x[:2], x[:2]], dim=-2)  # 374 frames: models must not assume 187
        logits_long, emb_long = model(longer)
    assert logits.shape == (3, N_CLASSES) and logits_long.shape == (2, N_CLASSES)
    assert emb.dim() == 2 and emb.shape[0] == 3 and emb_long.shape[1] == emb.shape[1]
    assert torch.isfinite(logits).all() and torch.isfinite(emb).all()
    assert emb.std() > 0  # real inputs give distinct, non-degenerate embeddings
    json.dumps(model.config)  # a model card can store the constructor arguments


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_few_training_steps_reduce_loss(name, data):
    build, kind = MODELS[name]
    torch.manual_seed(0)
    model = SMALL.get(name, build)()
    x, y = data[kind]
    x = x[..., :94, :]  # 1.5 s patches: the same learning problem at half the cost
    opt = torch.optim.Adam(model.parameters(), lr=1e-2 if kind == "mfcc" else 3e-3)
    model.train()
    losses = []
    for _ in range(12):
        logits, _ = model(x)
        loss = F.cross_entropy(logits, y) + weight_penalty(model, 1e-6, 1e-5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.8 * losses[0], losses


@pytest.mark.parametrize("name", MODELS)
def test_safetensors_round_trip_is_exact(name, data, tmp_path: Path):
    build, kind = MODELS[name]
    torch.manual_seed(1)
    model = build()
    x, _ = data[kind]
    model.train()
    with torch.no_grad():
        model(x)  # move batch-norm running statistics off their defaults
    model.eval()
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    twin = type(model)(**json.loads(json.dumps(model.config)))
    twin.load_state_dict(load_file(str(path)), strict=True)
    twin.eval()
    with torch.no_grad():
        a, b = model(x), twin(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_registry_builds_and_loads_every_architecture(data, tmp_path: Path):
    model = EcapaTdnn(N_CLASSES, cont=64, stop=16, mfa_channels=128, n_bands=2).eval()
    card = registry.ModelCard(
        name="ecapa_test",
        arch="ecapa_tdnn",
        labels=[p.stem for p in MIX_CLIPS],
        arch_args=model.config,
    )
    path = registry.save_model(model, card, tmp_path)
    loaded, loaded_card = registry.load_model(path, cache=False)
    x, _ = data["mel"]
    with torch.no_grad():
        assert torch.equal(model(x)[0], loaded(x)[0])
    assert loaded_card.arch_args == model.config
    for cls in (StemCnn, EcapaTdnn, SwishNet, Cnn2d, Cnn1d, Crnn, MobileNetV2):
        assert cls in registry.ARCHITECTURES.values()


def _plain_ecapa(model: EcapaTdnn, x: torch.Tensor) -> torch.Tensor:
    """ECAPA-TDNN as published: each block's whole output feeds the next block and the MFA."""
    h = model.frontend(x.transpose(1, 2))
    outs = []
    for block in model.blocks:
        h = block(h)
        outs.append(h)
    pooled = model.pool_bn(model.pool(model.mfa(torch.cat(outs, dim=1))))
    return model.classifier(model.embed_bn(model.embed(pooled)))


def test_ccs_with_no_stop_channels_is_plain_ecapa(data):
    torch.manual_seed(2)
    ccs = EcapaTdnn(N_CLASSES, cont=128, stop=0).eval()
    plain = EcapaTdnn(N_CLASSES, cont=128).eval()
    plain.load_state_dict(ccs.state_dict())  # the same weights, wired the published way
    assert all(isinstance(b.shortcut, nn.Identity) for b in plain.blocks)  # ECAPA's residual
    x, _ = data["mel"]
    with torch.no_grad():
        assert torch.allclose(ccs(x)[0], _plain_ecapa(plain, x), atol=1e-6)
        # with stop channels the wiring differs, so the plain path cannot even run
        separated = EcapaTdnn(N_CLASSES, cont=128, stop=32).eval()
        with pytest.raises(RuntimeError):
            _plain_ecapa(separated, x)


def test_ccs_stop_channels_skip_the_next_block(data):
    model = EcapaTdnn(N_CLASSES, cont=64, stop=32, mfa_channels=128).eval()
    seen: list[torch.Tensor] = []
    model.blocks[1].register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    first: list[torch.Tensor] = []
    model.blocks[0].register_forward_hook(lambda m, inp, out: first.append(out))
    with torch.no_grad():
        model(data["mel"][0][:2])
    assert first[0].shape[1] == 96 and seen[0].shape[1] == 64
    assert torch.equal(seen[0], first[0][:, 32:])  # continue channels only
    assert model.mfa.conv.in_channels == 3 * 96  # stop + continue of every block are pooled


def test_fsa_bands_shared_and_separate():
    assert len(EcapaTdnn(N_CLASSES, n_bands=4, shared_frontend=True).frontend.convs) == 1
    separate = EcapaTdnn(N_CLASSES, n_bands=4).frontend
    assert len(separate.convs) == 4 and separate.edges == [0, 24, 48, 72, 96]
    with pytest.raises(ValueError, match="equal bands"):
        EcapaTdnn(N_CLASSES, n_bands=5, shared_frontend=True)


def test_fsa_band_front_end_sees_only_its_band(data):
    model = EcapaTdnn(N_CLASSES, cont=32, mfa_channels=64, n_bands=3).eval()
    x = data["mel"][0][:1].clone().requires_grad_(True)
    out = model.frontend.convs[1](x.transpose(1, 2)[:, 32:64])  # the middle band's own conv
    out.sum().backward()
    assert x.grad[..., 32:64].abs().sum() > 0
    assert x.grad[..., :32].abs().sum() == 0 and x.grad[..., 64:].abs().sum() == 0


def test_mobilenet_taps(data):
    x, _ = data["mel"]
    model = MobileNetV2(N_CLASSES, width=0.5, deep_dim=256, shallow_dim=64).eval()
    with torch.no_grad():
        logits, taps = model.forward_taps(x[:2])
        assert set(taps) == set(TAPS)
        assert taps["backbone"].shape == (2, 1280) and taps["deep"].shape == (2, 256)
        assert taps["shallow"].shape == (2, 64)
        for tap in TAPS:
            chosen = MobileNetV2(N_CLASSES, width=0.5, deep_dim=256, shallow_dim=64, tap=tap)
            chosen.load_state_dict(model.state_dict())
            out, emb = chosen.eval()(x[:2])
            assert torch.equal(out, logits) and torch.equal(emb, taps[tap])
    with pytest.raises(ValueError, match="tap"):
        MobileNetV2(N_CLASSES, tap="middle")


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (StemCnn(N_CLASSES), (2, 187, 96)),  # the mix given to a stem model
        (StemCnn(N_CLASSES, in_channels=4), (2, 3, 187, 96)),
        (EcapaTdnn(N_CLASSES), (2, 1, 187, 96)),
        (SwishNet(N_CLASSES), (2, 20)),
        (Cnn1d(N_CLASSES), (187, 96)),
    ],
)
def test_wrong_input_shape_is_a_clear_error(model, shape):
    with pytest.raises(ValueError, match="expected"):
        model(torch.zeros(shape))


def test_distillation_loss_terms():
    torch.manual_seed(4)
    logits = torch.randn(6, N_CLASSES, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, -1, 1])
    teacher = torch.softmax(torch.randn(6, N_CLASSES), dim=-1)
    hard = F.cross_entropy(logits, labels, ignore_index=-1)
    assert torch.allclose(distillation_loss(logits, teacher, labels, T=3, alpha=0.0), hard)
    # a student that already matches the teacher at temperature T has no soft loss
    matching = torch.log(teacher) * 1.0
    assert distillation_loss(matching, teacher, labels, T=1.0, alpha=1.0).abs() < 1e-6
    assert distillation_loss(logits, teacher, labels, T=2.0, alpha=1.0) > 0
    mixed = distillation_loss(logits, teacher, labels, T=2.0, alpha=0.5)
    mixed.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        distillation_loss(logits, teacher, labels, alpha=1.5)


@pytest.mark.slow
def test_distillation_pulls_student_towards_teacher(data):
    """A SwishNet student trained only on soft targets ends up agreeing with its teacher."""
    torch.manual_seed(5)
    x, recording = data["mfcc"]
    # a made-up but consistent teacher: one distribution per recording, on real MFCCs
    teacher = torch.softmax(torch.randn(len(MIX_CLIPS), N_CLASSES) * 3, dim=-1)[recording]
    student = SwishNet(N_CLASSES)
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    no_labels = torch.full((len(x),), -1)
    losses = []
    for _ in range(40):
        loss = distillation_loss(student(x)[0], teacher, no_labels, T=2.0, alpha=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        agree = (student(x)[0].argmax(1) == teacher.argmax(1)).float().mean()
    assert losses[-1] < 0.5 * losses[0]
    assert agree == 1.0


def test_penalty_and_class_weights():
    model = StemCnn(N_CLASSES, separable=True)
    l1 = sum(p.abs().sum() for p in model.parameters() if p.dim() > 1)
    assert torch.allclose(weight_penalty(model, l1=1e-3), 1e-3 * l1)
    assert weight_penalty(model) == 0
    w = class_weights(np.array([0, 0, 0, 1, -1, 2]), N_CLASSES)
    assert w.tolist() == pytest.approx([5 / 9, 5 / 3, 5 / 3, 0.0])


def test_cache_teacher_targets_and_resumable_training(tmp_path: Path):
    """Real clip → cached features + real musicnn teacher → a student trains, stops, resumes."""
    teacher = Teacher()
    gmap = GenreMap.load()
    classes = teacher_classes(gmap, teacher.labels)
    assert "Rock" in classes and "Classical" in classes
    files = [
        cache_track(path, tmp_path, teacher, None, windows=1, window_seconds=4.0)
        for path in MIX_CLIPS[:2]
    ]
    assert all(f is not None and f.exists() for f in files)
    data = load_patches(files, teacher.labels, gmap, classes)
    assert data.inputs["mel"].shape == (2, 187, 96) and data.inputs["mfcc"].shape == (2, 187, 20)
    assert torch.allclose(data.teacher.sum(1), torch.ones(2), atol=1e-5)
    # the orchestra recording sounds classical to musicnn, more than the funky Vibe Ace does
    k = classes.index("Classical")
    assert data.teacher[1, k] > data.teacher[0, k]

    x, cfg = select_input(data.inputs, "mfcc"), DistillConfig(epochs=2, batch_size=2, lr=1e-2)
    ckpt = tmp_path / "ckpt.safetensors"
    first = train_student(SwishNet(len(classes)), (x, data.teacher, data.labels), None, cfg, ckpt)
    logs: list[str] = []
    cfg.epochs = 3
    resumed = SwishNet(len(classes))
    history = train_student(resumed, (x, data.teacher, data.labels), (x, data.teacher), cfg, ckpt,
                            log=logs.append)  # fmt: skip
    assert "after epoch 2" in logs[0] and [h["epoch"] for h in history] == [1, 2, 3]
    assert history[:2] == first and "val_agreement" in history[2]

    # keep_best ends on the epoch with the lowest validation KL, also across a resume
    cfg = DistillConfig(epochs=4, batch_size=2, lr=5e-2, keep_best=True)
    best_ckpt = tmp_path / "best.safetensors"
    model, train_set = SwishNet(len(classes)), (x, data.teacher, data.labels)
    history = train_student(model, train_set, (x, data.teacher), cfg, best_ckpt)
    lowest = min(h["val_kl"] for h in history)
    assert teacher_agreement(model, x, data.teacher)["kl"] == pytest.approx(lowest, abs=1e-3)
    resumed = SwishNet(len(classes))
    train_student(resumed, train_set, (x, data.teacher), cfg, best_ckpt)
    assert teacher_agreement(resumed, x, data.teacher)["kl"] == pytest.approx(lowest, abs=1e-3)
