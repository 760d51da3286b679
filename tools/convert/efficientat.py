"""Convert EfficientAT's mn04_as weights into weights/audioset_mn04.safetensors + its model card.

Usage: python -m tools.convert.efficientat [--fixture DIR] [--out weights]

DIR is ../shared/fixtures/efficientat (the original state_dict, the AudioSet class list, the MIT
licence and reference outputs of the original code). The original file is a zip-format torch
pickle; it is opened only here, only with ``torch.load(..., weights_only=True)``, which refuses
anything but tensors. Keys are renamed onto mgctag.models.efficientat.EfficientAT (blocks by their
role: expand, depthwise, se, project), then parity with the reference outputs is measured and
written into the card.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import torch

from mgctag.audio.features import efficientat_mel
from mgctag.models.cards import ModelCard
from mgctag.models.efficientat import LARGE, EfficientAT
from mgctag.models.registry import save_model
from tools.paths import FIXTURES, WEIGHTS

FIXTURE = FIXTURES / "efficientat"
WEIGHTS_FILE = "mn04_as_mAP_432.pt"
NAME = "audioset_mn04"
# Measured quality in mgctag (docs/models.md has the tables and the commands).
MEASURED = {
    "genres": {
        "command": "python -m tools.experiments.eval_genres",
        "data": "70 MUSDB previews + 10 labelled clips of ../shared/audio, 58 artists",
        "protocol": "5-fold x 10, grouped by artist; choices made in each training part",
        "mn04_alone": {"top1_written": 0.450, "top1_sd": 0.135, "genres_per_track": 1.0},
        "musicnn_alone": {"top1_written": 0.388, "top3_written": 0.627, "genres_per_track": 2.24},
        "musicnn+mn04_mean": {
            "top1_written": 0.456,
            "top3_written": 0.589,
            "genres_per_track": 1.89,
            "precision": 0.416,
        },
    },
    "content_gate": {
        "command": "python -m tools.experiments.eval_content",
        "speech_skipped": {"librispeech": "3/3", "asterisk_prompts": "566/568"},
        "music_skipped": {"debian_corpus_tracks_30s_plus": "1/148 (thunder, no music)"}
        | {"musdb_previews": "0/70"},
    },
}


def block_parts(index: int, width: float = 0.4) -> list[str]:
    """Our names of block `index`'s sub-modules, in the order the original numbers them."""
    from mgctag.models.efficientat import make_divisible

    in_ch = make_divisible(16 * width)
    for _k, expanded, out, se, _hs, _s in LARGE[: index + 1]:
        hidden = make_divisible(expanded * width)
        parts = (["expand"] if hidden != in_ch else []) + ["depthwise"]
        parts += (["se"] if se else []) + ["project"]
        in_ch = make_divisible(out * width)
    return parts


def rename(key: str) -> str:
    """One original key → ours (features.N.block.J... → blocks.N-1.<role>...)."""
    if m := re.fullmatch(r"features\.0\.(.+)", key):
        return f"stem.{m[1]}"
    if m := re.fullmatch(r"features\.16\.(.+)", key):
        return f"last.{m[1]}"
    if m := re.fullmatch(r"classifier\.2\.(.+)", key):
        return f"hidden.{m[1]}"
    if m := re.fullmatch(r"classifier\.5\.(.+)", key):
        return f"classifier.{m[1]}"
    if m := re.fullmatch(r"features\.(\d+)\.block\.(\d+)\.(.+)", key):
        block, part, rest = int(m[1]) - 1, int(m[2]), m[3]
        role = block_parts(block)[part]
        if role == "se":
            rest = re.sub(r"^conc_se_layers\.0\.", "", rest)
        return f"blocks.{block}.{role}.{rest}"
    raise KeyError(f"unexpected key in the original weights: {key}")


def convert(state: dict[str, torch.Tensor]) -> EfficientAT:
    """The original state_dict, renamed and loaded (strictly) into our module."""
    model = EfficientAT()
    renamed = {rename(k): v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def labels(fixture: Path) -> list[str]:
    with open(fixture / "class_labels_indices.csv", newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["index"]))
    return [r["display_name"] for r in rows]


@torch.inference_mode()
def parity(model: EfficientAT, reference: Path) -> dict:
    """Max |Δ| against the original's outputs: logits from its mel, probabilities from audio."""
    ref = np.load(reference)
    clips = sorted({k.split("__")[0] for k in ref.files})
    logit_d, emb_d, prob_d, mel_d = 0.0, 0.0, 0.0, 0.0
    for clip in clips:
        logits, emb = model(torch.from_numpy(ref[f"{clip}__mel"]))
        logit_d = max(logit_d, float(np.abs(logits[0].numpy() - ref[f"{clip}__logits"]).max()))
        emb_d = max(emb_d, float(np.abs(emb[0].numpy() - ref[f"{clip}__embedding"]).max()))
        mel = efficientat_mel(ref[f"{clip}__y32k"])
        mel_d = max(mel_d, float(np.abs(mel - ref[f"{clip}__mel"][0]).max()))
        probs = torch.sigmoid(model(torch.from_numpy(mel)[None])[0][0]).numpy()
        ref_probs = 1 / (1 + np.exp(-ref[f"{clip}__logits"].astype(np.float64)))
        prob_d = max(prob_d, float(np.abs(probs - ref_probs).max()))
    return {
        "reference": "../shared/fixtures/efficientat/reference.npz (original code, 7 real clips)",
        "clips": clips,
        "logits_from_reference_mel_max_abs_diff": logit_d,
        "embedding_from_reference_mel_max_abs_diff": emb_d,
        "mel_from_waveform_max_abs_diff": mel_d,
        "probabilities_from_waveform_max_abs_diff": prob_d,
    }


def card(fixture: Path, sha256: str, measured: dict) -> ModelCard:
    return ModelCard(
        name=NAME,
        arch="efficientat",
        labels=labels(fixture),
        arch_args={"width": 0.4, "n_classes": 527, "n_mels": 128, "head_units": 512},
        preprocessing={
            "input": "audioset_mel",
            "sample_rate": 32000,
            "mono": True,
            "pre_emphasis": "y[t] - 0.97 y[t-1]",
            "stft": "n_fft 1024, hop 320, window 800 symmetric Hann (zero-padded to 1024), "
            "centred, reflect padding, power",
            "mel": "128 Kaldi mel banks, 0-15000 Hz, zero weight on the Nyquist bin",
            "compression": "(log(mel + 1e-5) + 4.5) / 5",
            "window_seconds": 10.0,
            "function": "mgctag.audio.features.efficientat_mel",
        },
        outputs={
            "logits": "sigmoid -> independent AudioSet class probabilities (multi-label)",
            "embedding": "last feature map (384 channels) averaged over frequency and time",
            "embedding_dim": 384,
        },
        source={
            "project": "EfficientAT (Florian Schmid, Khaled Koutini, Gerhard Widmer)",
            "paper": "Efficient Large-Scale Audio Tagging via Transformer-to-CNN Knowledge "
            "Distillation, ICASSP 2023",
            "weights": "mn04_as (mn04_as_mAP_432.pt)",
            "copy": "github.com/nikih94/swch-audio-classification at commit "
            "2b362d97544673ef1da403b44ecbe1174d8619ec, resources/mn04_as_mAP_432.pt",
            "original_sha256": sha256,
            "conversion": "tools/convert/efficientat.py (keys renamed, values unchanged)",
            "code": "mgctag/models/efficientat.py, written from the paper and the weights' shapes",
        },
        licence={
            "weights": "MIT",
            "text": (fixture / "LICENSE-EfficientAT").read_text(encoding="utf-8"),
            "labels": "AudioSet ontology class names, Google, CC BY 4.0",
        },
        published={"dataset": "AudioSet (527 classes) eval", "mAP": 0.432},
        parity=measured,
        extra={"tagger": "audioset", "metrics": MEASURED},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixture", type=Path, default=FIXTURE)
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args()
    path = args.fixture / WEIGHTS_FILE
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = convert(state)
    n_params = sum(p.numel() for p in model.parameters())
    measured = {**parity(model, args.fixture / "reference.npz"), "parameters": n_params}
    out = save_model(model, card(args.fixture, sha256, measured), args.out)
    print(f"{out}: {n_params} parameters")
    for key, value in measured.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
