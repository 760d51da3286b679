"""Convert musicnn 0.1.0's TF1 checkpoints into weights/NAME.safetensors + NAME.json model cards.

Usage: python -m tools.convert.musicnn WHEEL_OR_DIR [--out weights] [--fixture REFERENCE.npz]

WHEEL_OR_DIR is the musicnn-0.1.0 wheel (read in place, unpacked to a temp dir) or the unpacked
``musicnn`` package folder. The TF graph layers are created in a fixed order, so TF's automatic
names (conv2d_N, batch_normalization_N, dense_N) map one-to-one onto the PyTorch modules below.
With --fixture, the parity of each converted model with the original TF outputs is measured and
written into its card.
"""

from __future__ import annotations

import argparse
import ast
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from mgctag.audio.features import log_mel, patches
from mgctag.models.cards import ModelCard
from mgctag.models.registry import ARCHITECTURES, save_model
from tools.convert.tf_checkpoint import read_checkpoint
from tools.paths import WEIGHTS

MODELS = ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg")

# (TF layer, torch module) pairs in graph-construction order.
MUSICNN_CONV2D = [
    ("conv2d", "batch_normalization_1", "timbral.0"),
    ("conv2d_1", "batch_normalization_2", "timbral.1"),
    ("conv2d_2", "batch_normalization_3", "temporal.0"),
    ("conv2d_3", "batch_normalization_4", "temporal.1"),
    ("conv2d_4", "batch_normalization_5", "temporal.2"),
]
MUSICNN_CONV1D = [
    ("conv2d_5", "batch_normalization_6", "midend.0"),
    ("conv2d_6", "batch_normalization_7", "midend.1"),
    ("conv2d_7", "batch_normalization_8", "midend.2"),
]
MUSICNN_REST = {
    "batch_normalization": "input_bn",
    "batch_normalization_9": "pool_bn",
    "batch_normalization_10": "dense_bn",
    "dense": "dense",
    "dense_1": "classifier",
}
VGG_LAYERS = [(f"{i + 1}CNN", f"batch_normalization_{i + 1}", f"blocks.{i}") for i in range(5)]


def _bn(tf: dict[str, np.ndarray], layer: str, prefix: str) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.weight": tf[f"{layer}/gamma"],
        f"{prefix}.bias": tf[f"{layer}/beta"],
        f"{prefix}.running_mean": tf[f"{layer}/moving_mean"],
        f"{prefix}.running_var": tf[f"{layer}/moving_variance"],
    }


def _conv2d(tf: dict[str, np.ndarray], layer: str, prefix: str) -> dict[str, np.ndarray]:
    """TF [kh, kw, in, out] -> torch [out, in, kh, kw]."""
    return {
        f"{prefix}.weight": tf[f"{layer}/kernel"].transpose(3, 2, 0, 1),
        f"{prefix}.bias": tf[f"{layer}/bias"],
    }


def _dense(tf: dict[str, np.ndarray], layer: str, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}.weight": tf[f"{layer}/kernel"].T, f"{prefix}.bias": tf[f"{layer}/bias"]}


def musicnn_state(tf: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map a musicnn checkpoint onto Musicnn's state dict."""
    state = _bn(tf, "batch_normalization", "input_bn")
    for conv, bn, prefix in MUSICNN_CONV2D:
        state |= _conv2d(tf, conv, f"{prefix}.conv") | _bn(tf, bn, f"{prefix}.bn")
    for conv, bn, prefix in MUSICNN_CONV1D:
        # The mid-end "conv2d" spans the whole feature axis with one input channel: a Conv1d over
        # time whose input channels are TF's width axis. [7, W, 1, out] -> [out, W, 7].
        kernel = tf[f"{conv}/kernel"][:, :, 0, :].transpose(2, 1, 0)
        state |= {f"{prefix}.conv.weight": kernel, f"{prefix}.conv.bias": tf[f"{conv}/bias"]}
        state |= _bn(tf, bn, f"{prefix}.bn")
    state |= _bn(tf, "batch_normalization_9", "pool_bn")
    state |= _bn(tf, "batch_normalization_10", "dense_bn")
    state |= _dense(tf, "dense", "dense") | _dense(tf, "dense_1", "classifier")
    return state


def vgg_state(tf: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map a VGG checkpoint onto Vgg's state dict."""
    state = _bn(tf, "batch_normalization", "input_bn")
    for conv, bn, prefix in VGG_LAYERS:
        state |= _conv2d(tf, conv, f"{prefix}.conv") | _bn(tf, bn, f"{prefix}.bn")
    return state | _dense(tf, "dense", "classifier")


def labels_from(configuration: Path) -> dict[str, list[str]]:
    """MSD_LABELS / MTT_LABELS from musicnn's configuration.py, parsed (never imported)."""
    tree = ast.parse(configuration.read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        target = node.targets[0]
        if isinstance(target, ast.Name) and target.id in ("MSD_LABELS", "MTT_LABELS"):
            found[target.id[:3]] = ast.literal_eval(node.value)
    return found


def published_quality(name: str, folder: Path) -> dict:
    """The ROC-AUC / PR-AUC the authors shipped in each model's experiment.result, as written.

    Only MTT_musicnn's file says which split it is (the MagnaTagATune test set); the others list
    two unlabelled "AUC:" lines, which musicnn-training's src/evaluate.py writes as ROC-AUC then
    PR-AUC on the dataset's test ground truth. No figure here is taken from anywhere else.
    """
    text = (folder / "experiment.result").read_text(encoding="utf-8").strip()
    values = [float(v) for v in re.findall(r"AUC:\s*([0-9.]+)", text)]
    split = "MagnaTagATune" if name.startswith("MTT") else "Million Song Dataset"
    return {
        "source": f"musicnn-0.1.0 wheel, musicnn/{name}/experiment.result",
        "file_text": text,
        "dataset": f"{split} (test split of musicnn-training)",
        "roc_auc": round(values[0], 4),
        "pr_auc": round(values[1], 4),
    }


def make_card(name: str, package: Path, licence_text: str, labels: list[str]) -> ModelCard:
    arch = "vgg" if name.endswith("vgg") else "musicnn"
    args = {"n_tags": 50, "filters": 128} if arch == "vgg" else {"n_tags": 50, "n_units": 200}
    outputs: dict[str, str | int] = {
        "logits": "sigmoid -> independent tag probabilities (multi-label)"
    }
    if arch == "musicnn":
        outputs |= {"embedding": "penultimate dense layer after its batch norm"}
        outputs |= {"embedding_dim": 200}
    else:
        outputs |= {"embedding": "flattened pool5 (time, mel, channel order)", "embedding_dim": 256}
    dataset = "MagnaTagATune" if name.startswith("MTT") else "Million Song Dataset (last.fm tags)"
    return ModelCard(
        name=name,
        arch=arch,
        arch_args=args,
        labels=labels,
        preprocessing={
            "sample_rate": 16000,
            "mono": True,
            "n_fft": 512,
            "hop_length": 256,
            "n_mels": 96,
            "mel": "librosa.feature.melspectrogram defaults (Hann, centred, Slaney), power 2",
            "compression": "log10(10000 * mel + 1), computed in float32",
            "patch_frames": 187,
            "patch_seconds": 3.0,
            "function": "mgctag.audio.features.log_mel + patches",
        },
        outputs=outputs,
        source={
            "project": "musicnn",
            "version": "0.1.0",
            "distribution": "PyPI wheel musicnn-0.1.0-py3-none-any.whl",
            "checkpoint": f"musicnn/{name}/ (TF1 checkpoint V2)",
            "authors": "Jordi Pons, Xavier Serra; Music Technology Group, Universitat Pompeu Fabra",
            "url": "https://github.com/jordipons/musicnn",
            "training_data": dataset,
            "converted_by": "tools/convert/musicnn.py",
        },
        licence={"spdx": "ISC", "text": licence_text},
        published=published_quality(name, package / name),
    )


def measure_parity(module: torch.nn.Module, name: str, fixture: Path) -> dict:
    """Max |delta| of probabilities (and embeddings) vs the original TF outputs in the fixture."""
    ref = np.load(fixture)
    clips = sorted({k.split("__")[0] for k in ref.files})
    worst = {"from_logmel_prob": 0.0, "from_waveform_prob": 0.0}
    has_pen = f"{clips[0]}__{name}__penultimate" in ref.files
    if has_pen:
        worst |= {"from_logmel_penultimate": 0.0, "from_waveform_penultimate": 0.0}
    with torch.inference_mode():
        for clip in clips:
            sources = {
                "from_logmel": ref[f"{clip}__logmel"],
                "from_waveform": log_mel(ref[f"{clip}__y16k"]),
            }
            for kind, logmel in sources.items():
                logits, emb = module(torch.from_numpy(patches(logmel)))
                prob = torch.sigmoid(logits).numpy()
                delta = np.abs(prob - ref[f"{clip}__{name}__taggram"]).max()
                worst[f"{kind}_prob"] = max(worst[f"{kind}_prob"], float(delta))
                if has_pen:
                    delta = np.abs(emb.numpy() - ref[f"{clip}__{name}__penultimate"]).max()
                    worst[f"{kind}_penultimate"] = max(worst[f"{kind}_penultimate"], float(delta))
    return {
        "reference": "fixtures/musicnn/reference.npz: original TF graphs, 4 clips x 4 patches",
        "max_abs_delta": {k: float(f"{v:.3g}") for k, v in worst.items()},
        "command": "python -m tools.convert.musicnn musicnn-0.1.0-py3-none-any.whl --fixture ...",
    }


def _package_dir(source: Path, scratch: Path) -> Path:
    if source.is_file() and source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            wheel.extractall(scratch)
        return scratch / "musicnn"
    return source / "musicnn" if (source / "musicnn").is_dir() else source


def _licence(package: Path) -> str:
    found = sorted(package.parent.glob("musicnn-*.dist-info/LICENSE*"))
    if not found:
        raise SystemExit(f"{package}: no LICENSE beside the package (need the wheel's dist-info)")
    return found[0].read_text(encoding="utf-8").strip()


def convert(source: Path, out: Path, fixture: Path | None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        package = _package_dir(source, Path(scratch))
        licence = _licence(package)
        labels = labels_from(package / "configuration.py")
        for name in MODELS:
            tf = read_checkpoint(package / name)
            card = make_card(name, package, licence, labels[name[:3]])
            module = ARCHITECTURES[card.arch](**card.arch_args)
            state = musicnn_state(tf) if card.arch == "musicnn" else vgg_state(tf)
            tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
            missing, unexpected = module.load_state_dict(tensors, strict=False)
            missing = [k for k in missing if not k.endswith("num_batches_tracked")]
            if missing or unexpected:
                raise SystemExit(f"{name}: missing {missing}, unexpected {unexpected}")
            module.eval()
            if fixture is not None:
                card = ModelCard.from_dict(
                    card.to_dict() | {"parity": measure_parity(module, name, fixture)}
                )
            path = save_model(module, card, out)
            print(f"{name}: {path} {card.parity.get('max_abs_delta', '')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="musicnn-0.1.0 wheel or unpacked folder")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--fixture", type=Path, default=None)
    args = parser.parse_args()
    convert(args.source, args.out, args.fixture)


if __name__ == "__main__":
    main()
