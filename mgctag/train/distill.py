"""Knowledge distillation: teach the seed-paper networks musicnn's genre judgement.

There are no genre labels for the unlabelled audio the bundled students learn from, so the teacher
(musicnn MSD + MTT, tags mapped to canonical genres by `mgctag.genres`) provides soft targets per
3 s patch; its argmax is the hard label. The loss is Hinton et al.'s: KL divergence between the
temperature-softened teacher and student distributions (scaled by T^2 so its gradients keep their
size as T changes), mixed with cross-entropy on the hard labels. The stem CNN paper's L1 + L2 weight
penalties and class weights are here too, so every student trains through one loss.

This module is the loss, the teacher targets, the feature cache and a resumable training loop;
`tools/experiments/train_bundled.py` drives it to reproduce the bundled weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from mgctag.audio import decode, features, segment
from mgctag.content import MUSIC, OTHER, SPEECH, ContentGate
from mgctag.genres import GenreMap, combine_models, mean_scores
from mgctag.models.audioset import AUDIOSET_RATE, AudiosetNet
from mgctag.models.catalog import AUDIOSET_MODEL
from mgctag.models.tagger import MUSICNN_MODELS, MusicnnTagger
from mgctag.separate import STEMS, Separator


def soften(probs: torch.Tensor, T: float) -> torch.Tensor:
    """The distribution at temperature T: softmax(log(p) / T), i.e. p^(1/T) renormalised."""
    return torch.softmax(torch.log(probs.clamp(min=1e-8)) / T, dim=-1)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    labels: torch.Tensor,
    T: float = 2.0,
    alpha: float = 0.5,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels).

    `teacher_probs` (batch, classes) are the teacher's class probabilities (rows summing to 1);
    `labels` (batch,) are hard class ids, -1 where there is none (that row only counts in the soft
    term). `class_weights` reweights the hard term, for unbalanced genres.
    """
    if not 0.0 <= alpha <= 1.0 or T <= 0:
        raise ValueError(f"need 0 <= alpha <= 1 and T > 0, got alpha={alpha}, T={T}")
    soft = F.kl_div(
        F.log_softmax(student_logits / T, dim=-1), soften(teacher_probs, T), reduction="batchmean"
    )
    loss = alpha * T * T * soft
    if alpha < 1.0 and bool((labels >= 0).any()):
        hard = F.cross_entropy(student_logits, labels, weight=class_weights, ignore_index=-1)
        loss = loss + (1.0 - alpha) * hard
    return loss


def weight_penalty(model: nn.Module, l1: float = 0.0, l2: float = 0.0) -> torch.Tensor:
    """l1 * sum|w| + l2 * sum w^2 over convolution and dense weights (not biases, not norms)."""
    weights = [p for p in model.parameters() if p.dim() > 1]  # norms and biases are 1-D
    return sum((l1 * w.abs().sum() + l2 * w.pow(2).sum() for w in weights), torch.zeros(()))


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """'Balanced' weights n / (k * count) per class; classes never seen get weight 0."""
    labels = np.asarray(labels)
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    seen = counts > 0
    w = np.zeros(n_classes)
    w[seen] = counts.sum() / (seen.sum() * counts[seen])
    return torch.as_tensor(w, dtype=torch.float32)


# --- teacher targets --------------------------------------------------------------------------


def teacher_classes(gmap: GenreMap, teacher_labels: Mapping[str, Sequence[str]]) -> list[str]:
    """The canonical genres some teacher tag maps to, in taxonomy order: the students' classes."""
    reachable = {
        g
        for labels in teacher_labels.values()
        for g in gmap.genre_scores(dict.fromkeys(labels, 1.0))
    }
    return [g for g in gmap.genres if g in reachable]


def teacher_targets(
    tag_probs: Mapping[str, np.ndarray],
    teacher_labels: Mapping[str, Sequence[str]],
    gmap: GenreMap,
    classes: Sequence[str],
) -> np.ndarray:
    """Per patch: teachers' tag probabilities → genre scores (`combine_models`) → a distribution.

    `tag_probs[model]` is (patches, tags) sigmoid output; returns (patches, len(classes)) rows
    summing to 1, so the soft target says which genre musicnn finds *most* likely, and by how much.
    """
    n = len(next(iter(tag_probs.values())))
    out = np.zeros((n, len(classes)), dtype=np.float32)
    index = {g: i for i, g in enumerate(classes)}
    for p in range(n):
        per_model = {
            m: dict(zip(teacher_labels[m], probs[p].tolist(), strict=True))
            for m, probs in tag_probs.items()
        }
        for genre, score in combine_models(per_model, gmap).items():
            if genre in index:
                out[p, index[genre]] = score
    out += 1e-6  # no genre is impossible; keeps log(p) finite
    return out / out.sum(axis=1, keepdims=True)


CONTENT_LABELS = {SPEECH: "(speech)", OTHER: "(other sound)"}  # students' not-music outputs
NOT_MUSIC_TARGET = 0.95  # a speech/other patch's target mass on its content output


def combined_classes(gmap: GenreMap, teacher_labels: Mapping[str, Sequence[str]]) -> list[str]:
    """The combined teacher's classes: every genre musicnn or mn04 can name, then the content
    outputs (speech, other sound), last."""
    return teacher_classes(gmap, teacher_labels) + list(CONTENT_LABELS.values())


def combined_targets(
    tag_probs: Mapping[str, np.ndarray],
    window_probs: np.ndarray,
    patch_window: np.ndarray,
    teacher_labels: Mapping[str, Sequence[str]],
    gmap: GenreMap,
    classes: Sequence[str],
) -> np.ndarray:
    """The default tagger's judgement per patch, as a distribution over `classes`.

    A patch's genres are `mean_scores` of musicnn's genre scores for the patch and mn04's for its
    window (the default's rule, docs/models.md), normalised. A patch whose window the content gate
    calls speech or other sound puts `NOT_MUSIC_TARGET` of its mass on that content output, so
    one student pass can both gate and tag.
    """
    net_labels = teacher_labels[AUDIOSET_MODEL]
    gate = ContentGate.for_labels(net_labels, gmap.tags)
    content = gate.classify(window_probs)
    mn04 = [gmap.genre_scores(dict(zip(net_labels, w.tolist(), strict=True))) for w in window_probs]
    index = {g: i for i, g in enumerate(classes)}
    out = np.zeros((len(patch_window), len(classes)), dtype=np.float32)
    for p, w in enumerate(patch_window):
        per_model = {
            m: dict(zip(teacher_labels[m], tag_probs[m][p].tolist(), strict=True))
            for m in MUSICNN_MODELS
        }
        scores = mean_scores([combine_models(per_model, gmap), mn04[w]])
        for genre, score in scores.items():
            if genre in index:
                out[p, index[genre]] = score
        out[p] = (out[p] + 1e-6) / (out[p] + 1e-6).sum()
        if content[w] != MUSIC:
            out[p] *= 1 - NOT_MUSIC_TARGET
            out[p, index[CONTENT_LABELS[content[w]]]] += NOT_MUSIC_TARGET
    return out


class Teacher(MusicnnTagger):
    """The bundled musicnn pair as teacher: (patches, 187, 96) log-mel → each model's tag probs."""

    # deliberately narrower than the parent's: each model's probabilities without the second array
    def __call__(self, mel: np.ndarray) -> dict[str, np.ndarray]:  # type: ignore[override]
        out = super().__call__(np.ascontiguousarray(mel, dtype=np.float32))
        return {name: probs for name, (probs, _) in out.items()}


class CombinedTeacher(Teacher):
    """The default tagger as teacher: musicnn's pair per patch, and mn04 per 32 kHz window."""

    def __init__(self) -> None:
        super().__init__()
        self.net = AudiosetNet()
        self.labels = {**self.labels, AUDIOSET_MODEL: self.net.labels}

    def windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """mn04's class probabilities (windows, 527) for mono 32 kHz windows."""
        return self.net(windows)[0]


# --- feature cache ----------------------------------------------------------------------------

DECODE_SR = 44100  # the cascade separator's rate: decode once, separate, then go to 16 kHz


def _to_model_rate(y: np.ndarray, sr: int) -> np.ndarray:
    """(channels, n) at sr → mono at 16 kHz, exactly as `decode.load(path, 16000)` gives it."""
    return decode.convert(y, sr, features.SR)


def window_features(
    y: np.ndarray, sr: int, separator: Separator | None
) -> dict[str, np.ndarray] | None:
    """One (channels, n) window → aligned 187-frame patches: mel, mfcc and (with a separator) stems.

    Returns None for a window too short to give a full patch: a repeat-padded patch is fine for
    tagging one short track but is a poor training example.
    """
    mix = _to_model_rate(y, sr)
    mel = features.log_mel(mix)
    if len(mel) < features.PATCH_FRAMES:
        return None
    out = {"mel": features.patches(mel), "mfcc": features.patches(features.mfcc(mix))}
    if separator is not None:
        stems = separator.separate(y, sr)
        out["stems"] = np.stack(
            [features.patches(features.log_mel(_to_model_rate(stems[s], sr))) for s in STEMS],
            axis=1,
        )  # (patches, 4, 187, 96) in STEMS order
    return out


def cache_name(path: Path) -> str:
    """A cache file name that changes when the file does (path, size, mtime)."""
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]


def cache_track(
    path: Path,
    cache_dir: Path,
    teacher: Teacher,
    separator: Separator | None,
    *,
    windows: int = 3,
    window_seconds: float = 10.0,
) -> Path | None:
    """Features + teacher tag probabilities for one file's windows, saved once as .npz.

    An existing cache file is reused (so an interrupted run resumes); None when the file has no
    usable audio. Raises `DecodeError` for files that cannot be decoded.
    """
    dest = cache_dir / f"{cache_name(path)}.npz"
    if dest.exists():
        return dest
    spans = segment.plan_windows(decode.probe(path).duration, n=windows, length=window_seconds)
    audio = decode.load_windows(path, DECODE_SR, spans, mono=False)
    parts: list[dict[str, np.ndarray]] = []
    waves: list[np.ndarray] = []
    for w in segment.select_windows(spans, audio):
        feats = None if w.silent else window_features(w.audio, DECODE_SR, separator)
        if feats:
            feats["window"] = np.full(len(feats["mel"]), len(parts), np.int16)
            parts.append(feats)
            waves.append(decode.convert(w.audio, DECODE_SR, AUDIOSET_RATE))
    if not parts:
        return None
    # Any: numpy's stub checks **arrays against savez's allow_pickle: bool as well
    arrays: dict[str, Any] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    window = arrays.pop("window")
    probs = teacher(arrays["mel"])
    if isinstance(teacher, CombinedTeacher):
        probs[f"window.{AUDIOSET_MODEL}"] = teacher.windows(waves)
    # float16 halves the cache and is ample for log-mels and MFCCs
    arrays = {k: v.astype(np.float16) for k, v in arrays.items()}
    arrays.update({f"teacher.{n}": p for n, p in probs.items()}, window=window)
    tmp = dest.with_suffix(".tmp.npz")
    np.savez(tmp, source=np.array(str(path)), **arrays)
    tmp.replace(dest)
    return dest


# --- dataset ------------------------------------------------------------------------------------

INPUTS = ("mel", "stems", "mfcc")  # what a student reads; see each model's docstring


@dataclass
class PatchSet:
    """Cached patches of many tracks, with the teacher's soft targets and hard labels."""

    inputs: dict[str, torch.Tensor]  # "mel" (N,187,96), "mfcc" (N,187,20), "stems" (N,4,187,96)
    teacher: torch.Tensor  # (N, classes), rows sum to 1
    labels: torch.Tensor  # (N,) teacher argmax
    track: np.ndarray  # (N,) index into sources, to split by track, never by patch
    sources: list[str]
    window: np.ndarray | None = None  # (N,) the patch's analysis window within its track

    def __len__(self) -> int:
        return len(self.labels)


def load_patches(
    files: Sequence[Path],
    teacher_labels: Mapping[str, Sequence[str]],
    gmap: GenreMap,
    classes: Sequence[str],
) -> PatchSet:
    """Read cache files into one PatchSet (features stay float16 in memory until batched)."""
    inputs: dict[str, list[np.ndarray]] = {}
    targets, tracks, sources, windows = [], [], [], []
    for i, f in enumerate(files):
        with np.load(f) as z:
            for key in INPUTS:
                if key in z:
                    inputs.setdefault(key, []).append(z[key])
            probs = {m: z[f"teacher.{m}"] for m in teacher_labels if m in MUSICNN_MODELS}
            sources.append(str(z["source"]))
            windows.append(z["window"] if "window" in z else np.zeros(len(z["mel"]), np.int16))
            if AUDIOSET_MODEL in teacher_labels:  # the combined teacher
                window_probs = z[f"teacher.window.{AUDIOSET_MODEL}"]
                target = combined_targets(probs, window_probs, z["window"],
                                          teacher_labels, gmap, classes)  # fmt: skip
            else:
                target = teacher_targets(probs, teacher_labels, gmap, classes)
        targets.append(target)
        tracks.append(np.full(len(targets[-1]), i))
    teacher = torch.from_numpy(np.concatenate(targets))
    return PatchSet(
        {k: torch.from_numpy(np.concatenate(v)) for k, v in inputs.items() if len(v) == len(files)},
        teacher,
        teacher.argmax(dim=1),
        np.concatenate(tracks),
        sources,
        np.concatenate(windows).astype(np.int64) if windows else None,
    )


def standardizer(x: torch.Tensor) -> dict[str, list[float]]:
    """Per-feature mean and std over patches and frames, for a card's `preprocessing.standardize`.

    MFCCs are in dB (c0 is around -300 with a spread of 100): fed raw, they saturate a gated
    network's first tanh/sigmoid, so the MFCC student reads them standardised with training stats.
    """
    flat = x.float().reshape(-1, x.shape[-1])
    return {
        "mean": [round(v, 5) for v in flat.mean(0).tolist()],
        "std": [round(v, 5) for v in flat.std(0).clamp(min=1e-3).tolist()],
    }


# --- training -----------------------------------------------------------------------------------


@dataclass
class DistillConfig:
    """Everything that decides a student's training run (stored in its model card)."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    T: float = 2.0
    alpha: float = 0.7
    l1: float = 0.0
    l2: float = 0.0
    balance: bool = True  # class weights on the hard term
    max_class_weight: float = 5.0  # a genre the teacher names once must not drown the rest
    keep_best: bool = False  # end on the epoch with the lowest validation KL, not the last
    seed: int = 0
    epoch_patches: int = 0  # patches drawn per epoch (0: all): a CPU budget on big caches
    # augmentation (`augment`): "mel" (log-mel or stem patches), "frames" (other features: only
    # tempo and mixup) or "" (none)
    augment: str = ""
    gain_db: float = 6.0  # random gain within +-gain_db
    pitch_bins: int = 2  # mild pitch change: the mel bands shifted by up to this many bins
    tempo: float = 0.06  # mild tempo change: patches stretched in time by up to +-6 %
    mixup: float = 0.3  # Beta(a, a) mixup of inputs and teacher targets (0: off)


def augment(
    x: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, cfg: DistillConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """A training batch varied as real libraries vary: gain, pitch, tempo, and mixup.

    Works on log-mel features (`log10(10000 * mel + 1)`, time on axis -2, bands on -1): gain
    scales the mel power, pitch rolls the bands, tempo resamples the frames and crops back to the
    patch length. Mixup blends pairs of patches and their teacher targets (Zhang et al. 2018);
    the hard label follows the larger share. Random crops come from the cache's many windows.
    """
    if not cfg.augment:
        return x, teacher, labels
    n = len(x)
    if cfg.augment == "mel":
        db = torch.empty(n).uniform_(-cfg.gain_db, cfg.gain_db, generator=gen)
        gain = (10 ** (db / 10)).view(n, *([1] * (x.dim() - 1)))
        x = torch.log10((torch.pow(10.0, x) - 1).clamp(min=0) * gain + 1)
        shift = int(torch.randint(-cfg.pitch_bins, cfg.pitch_bins + 1, (1,), generator=gen))
        if shift:
            x = torch.roll(x, shift, dims=-1)
            edge = x[..., shift : shift + 1] if shift > 0 else x[..., shift - 1 : shift]
            fill = slice(0, shift) if shift > 0 else slice(shift, None)
            x[..., fill] = edge
    if cfg.tempo:
        rate = 1 + float(torch.empty(1).uniform_(-cfg.tempo, cfg.tempo, generator=gen))
        frames = x.shape[-2]
        flat = x.reshape(-1, frames, x.shape[-1]).transpose(1, 2)  # (rows, bands, frames)
        stretched = F.interpolate(flat, size=max(8, round(frames * rate)), mode="linear")
        if stretched.shape[-1] < frames:
            stretched = F.pad(stretched, (0, frames - stretched.shape[-1]), mode="replicate")
        x = stretched[..., :frames].transpose(1, 2).reshape(x.shape)
    if cfg.mixup:
        lam = float(torch.distributions.Beta(cfg.mixup, cfg.mixup).sample())
        lam = max(lam, 1 - lam)  # the first patch keeps the larger share
        perm = torch.randperm(n, generator=gen)
        x = lam * x + (1 - lam) * x[perm]
        teacher = lam * teacher + (1 - lam) * teacher[perm]
    return x, teacher, labels


def save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, epoch: int,
                    history: list[dict]) -> None:  # fmt: skip
    """Model + Adam state as safetensors, progress as JSON beside it, both written atomically."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    state = opt.state_dict()
    for pid, slots in state["state"].items():
        for name, value in slots.items():
            tensors[f"opt.{pid}.{name}"] = torch.as_tensor(value).contiguous()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)
    meta = {"epoch": epoch, "history": history, "param_groups": state["param_groups"]}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))


def load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer) -> tuple[int, list]:
    """Restore what `save_checkpoint` wrote; returns (last finished epoch, history)."""
    tensors = load_file(str(path))
    meta = json.loads(path.with_suffix(".json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            slots.setdefault(int(pid), {})[name] = value
    opt.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
    return meta["epoch"], meta["history"]


def teacher_agreement(
    model: nn.Module, x: torch.Tensor, teacher: torch.Tensor, batch: int = 64
) -> dict:
    """Top-1 agreement with the teacher and mean KL(teacher || student), in eval mode."""
    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(x[i : i + batch].float())[0] for i in range(0, len(x), batch)])
    logp = F.log_softmax(logits, dim=1)
    kl = (teacher * (torch.log(teacher) - logp)).sum(dim=1).mean()
    agree = (logits.argmax(1) == teacher.argmax(1)).float().mean()
    return {"agreement": round(float(agree), 4), "kl": round(float(kl), 4)}


def train_student(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    cfg: DistillConfig,
    checkpoint: Path | None = None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Distil into `model` from (inputs, teacher probs, labels); resumes from `checkpoint`.

    The checkpoint is rewritten after every epoch, so killing the process loses at most one
    epoch. Returns the per-epoch history (train loss, validation agreement/KL).
    """
    x, teacher, labels = train
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict]
    start, history = 0, []
    if checkpoint is not None and checkpoint.exists():
        start, history = load_checkpoint(checkpoint, model, opt)
        log(f"resumed {checkpoint.name} after epoch {start}")
    weights = None
    if cfg.balance:
        weights = class_weights(labels.numpy(), teacher.shape[1]).clamp(max=cfg.max_class_weight)
    gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 1)  # apart, so resumed orders match
    best: dict[str, torch.Tensor] | None = None
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(len(x), generator=gen)  # drawn every epoch: same order on resume
        if cfg.epoch_patches:
            order = order[: cfg.epoch_patches]
        if epoch <= start:
            continue
        model.train()
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb, tb, lb = augment(x[idx].float(), teacher[idx], labels[idx], cfg, aug_gen)
            logits, _ = model(xb)
            loss = distillation_loss(logits, tb, lb, cfg.T, cfg.alpha, weights)
            if cfg.l1 or cfg.l2:
                loss = loss + weight_penalty(model, cfg.l1, cfg.l2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        row = {"epoch": epoch, "loss": round(total / len(order), 5)}
        if val is not None:
            row.update({f"val_{k}": v for k, v in teacher_agreement(model, *val).items()})
        history.append(row)
        log(json.dumps(row))
        if cfg.keep_best and val is not None and row["val_kl"] <= _best_kl(history):
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if checkpoint is not None:
                save_file(best, str(_best_path(checkpoint)))
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, opt, epoch, history)
    if cfg.keep_best and val is not None and history:
        if best is None and checkpoint is not None and _best_path(checkpoint).exists():
            best = load_file(str(_best_path(checkpoint)))  # chosen before a resume
        if best is not None:
            model.load_state_dict(best)
            log(f"kept epoch {min(history, key=lambda r: r['val_kl'])['epoch']} (lowest val KL)")
    model.eval()
    return history


def _best_kl(history: list[dict]) -> float:
    return min(r["val_kl"] for r in history if "val_kl" in r)


def _best_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + ".best.safetensors")
