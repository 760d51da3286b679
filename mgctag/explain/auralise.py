"""Listen to what a convolution filter of musicnn learned (the SwishNet paper's auralisation).

The recipe of the paper's Listing 1, on musicnn's log-mel input: run a clip through the network
up to one convolution layer, keep one filter's feature map and zero the others, project that map
back to the input spectrogram, map the mel bands back to linear frequency with the pseudo-inverse
of the mel filterbank, put the phase of the clip's own STFT back and invert the STFT. What is left
is the part of the clip that filter responds to, as audio.

The projection is the gradient of ``sum(A_k * A_k)`` / 2 with respect to the input, with the map
``A_k`` held fixed: through a convolution the gradient *is* the transposed convolution with the
same weights, and through a max-pool it routes each value back to the position that won (the
deconvnet's pooling switches), so this is the paper's deconvolution without a second network.
Its positive part, scaled to 0..1, weighs the clip's mel magnitude (where and how much the
filter looked), which keeps the clip's own loudness and makes the result listenable.

Plain functions over numpy arrays and the loaded `Musicnn` module; no files, no printing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import librosa
import numpy as np
import torch
import torch.nn.functional as F

from mgctag.audio.features import HOP, N_FFT, SR, log_mel, mel_basis, mel_power
from mgctag.errors import UsageError
from mgctag.models.musicnn import Musicnn, PooledConv, same_pad

# The convolution layers one can auralise, in network order: musicnn's five front-end branches
# (timbral 7x38 and 7x67 filters, temporal 128/64/32 x 1 filters) and its three mid-end layers.
LAYERS = (
    "timbral1",
    "timbral2",
    "temporal1",
    "temporal2",
    "temporal3",
    "midend1",
    "midend2",
    "midend3",
)
DEFAULT_LAYER = "timbral2"
PEAK = 0.9  # each filter's audio is scaled to this peak, so quiet filters are audible too


@dataclass
class FilterSound:
    """One auralised filter: which it is, how much it mattered, what it sounds like.

    `importance` is the filter's first-order contribution to the target tag's logit (mean of
    activation x gradient over its map); `projection` (frames, 96) is the map projected back to
    the input log-mel, positive part scaled to 0..1; `audio` is mono float32 at `SR`.
    """

    layer: str
    index: int
    importance: float
    projection: np.ndarray
    audio: np.ndarray


def check_layer(layer: str) -> str:
    if layer not in LAYERS:
        raise UsageError(f"unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
    return layer


def layer_map(model: Musicnn, x: torch.Tensor, layer: str) -> torch.Tensor:
    """musicnn's feature maps at `layer` for log-mel `x` (B, T, 96), differentiably.

    Front-end layers give the map before their max over frequency, (B, filters, T, bands),
    after the ReLU; mid-end layers give (B, 64, T) after their ReLU and batch norm.
    """
    check_layer(layer)
    xb = model.input_bn(x.unsqueeze(1)).squeeze(1)
    if layer.startswith("timbral"):
        branch = cast(PooledConv, model.timbral[int(layer[-1]) - 1])  # ModuleList items: Module
        return F.relu(branch.conv(F.pad(xb, (0, 0, 3, 3)).unsqueeze(1)))
    if layer.startswith("temporal"):
        i = int(layer[-1]) - 1
        kernel = model.temporal_kernels[i]
        padded = F.pad(xb, (0, 0, *same_pad(kernel)))
        return F.relu(cast(PooledConv, model.temporal[i]).conv(padded.unsqueeze(1)))
    h = model.frontend(x)
    for depth in range(int(layer[-1])):
        out = model.midend[depth](h)
        h = out if depth == 0 else out + h
        if depth == int(layer[-1]) - 1:
            return out
    raise AssertionError(layer)


def filter_importance(model: Musicnn, x: torch.Tensor, layer: str, tag: int) -> np.ndarray:
    """Per filter of `layer`: mean activation x gradient of tag `tag`'s logit (its contribution)."""
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        maps = layer_map(model, x, layer)
        logits = _logits_from(model, x, layer, maps)
        (grad,) = torch.autograd.grad(logits[:, tag].sum(), maps)
    contrib = (maps * grad).detach()
    return contrib.flatten(2).mean(dim=2).mean(dim=0).cpu().numpy()


def _logits_from(model: Musicnn, x: torch.Tensor, layer: str, maps: torch.Tensor) -> torch.Tensor:
    """The logits with `maps` in the graph: the network rerun so the map is an input of them."""
    if layer.startswith("midend"):
        return _logits_after_midend(model, x, layer, maps)
    return _logits_after_frontend(model, x, layer, maps)


def _logits_after_frontend(
    model: Musicnn, x: torch.Tensor, layer: str, maps: torch.Tensor
) -> torch.Tensor:
    """musicnn's forward with one front-end branch's map given (BN, max over bands, the rest)."""
    xb = model.input_bn(x.unsqueeze(1)).squeeze(1)
    names = [f"timbral{i + 1}" for i in range(2)] + [f"temporal{i + 1}" for i in range(3)]
    branches = []
    for name in names:
        if name == layer:
            bn = (*model.timbral, *model.temporal)[names.index(name)].bn
            b, c, t, m = maps.shape
            normed = bn(maps.permute(0, 1, 3, 2).reshape(b, c, m * t)).reshape(b, c, m, t)
            branches.append(normed.amax(dim=2))
        elif name.startswith("timbral"):
            branches.append(model.timbral[int(name[-1]) - 1](F.pad(xb, (0, 0, 3, 3))))
        else:
            i = int(name[-1]) - 1
            pad = same_pad(model.temporal_kernels[i])
            branches.append(model.temporal[i](F.pad(xb, (0, 0, *pad))))
    return _head(model, torch.cat(branches, dim=1))


def _logits_after_midend(
    model: Musicnn, x: torch.Tensor, layer: str, maps: torch.Tensor
) -> torch.Tensor:
    """musicnn's forward with one mid-end layer's output given."""
    front = model.frontend(x)
    outs, h = [], front
    for depth in range(3):
        out = maps if depth == int(layer[-1]) - 1 else model.midend[depth](h)
        h = out if depth == 0 else out + h
        outs.append(h)
    features = torch.cat([front, *outs], dim=1)
    return model.classifier(_embedding(model, model.pool(features)))


def _head(model: Musicnn, front: torch.Tensor) -> torch.Tensor:
    return model.classifier(_embedding(model, model.pool(model.midend_features(front))))


def _embedding(model: Musicnn, pooled: torch.Tensor) -> torch.Tensor:
    return model.dense_bn(F.relu(model.dense(model.pool_bn(pooled))))


def project(model: Musicnn, x: torch.Tensor, layer: str, index: int) -> np.ndarray:
    """Filter `index`'s map at `layer` projected back to the input: (T, 96), 0..1.

    The gradient of sum(A_k * stop_grad(A_k)) with respect to x: every other map is zeroed,
    and A_k goes back through the transposed convolutions and the pooling switches.
    """
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        a = layer_map(model, x, layer)[:, index]
        (grad,) = torch.autograd.grad((a * a.detach()).sum(), x)
    p = grad[0].clamp(min=0).cpu().numpy()
    top = float(p.max())
    return (p / top if top > 0 else p).astype(np.float32)


def invert(weights: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The mel-domain 0..1 `weights` (T, 96) on clip `y` (16 kHz) → audio of `len(y)` samples.

    Mel magnitude weighted, back to linear frequency with the filterbank's pseudo-inverse
    (clipped at 0), the clip's own STFT phase, inverse STFT at musicnn's n_fft and hop.
    """
    spec = librosa.stft(y, n_fft=N_FFT, hop_length=HOP)
    mel_mag = np.sqrt(mel_power(y, SR)) * weights
    linear = np.clip(np.linalg.pinv(mel_basis(SR, N_FFT, weights.shape[1])) @ mel_mag.T, 0, None)
    audio = librosa.istft(
        linear * np.exp(1j * np.angle(spec)), hop_length=HOP, n_fft=N_FFT, length=len(y)
    )
    peak = float(np.abs(audio).max())
    return (audio * (PEAK / peak) if peak > 0 else audio).astype(np.float32)


def auralise(
    model: Musicnn,
    y: np.ndarray,
    tag: int,
    *,
    layer: str = DEFAULT_LAYER,
    n: int = 4,
    seconds: float | None = None,
) -> list[FilterSound]:
    """The `n` filters of `layer` that add most to tag `tag` on clip `y` (16 kHz), auralised.

    `seconds` cuts (or repeats) the clip to that length first, so every WAV has exactly
    round(seconds * 16000) samples.
    """
    check_layer(layer)
    y = fit_length(np.asarray(y, np.float32), seconds)
    x = torch.from_numpy(log_mel(y, SR))[None].to(next(model.parameters()).device)
    importance = filter_importance(model, x, layer, tag)
    order = [int(i) for i in np.argsort(-importance)[:n]]
    sounds = []
    for k in order:
        weights = project(model, x, layer, k)
        sounds.append(FilterSound(layer, k, float(importance[k]), weights, invert(weights, y)))
    return sounds


def fit_length(y: np.ndarray, seconds: float | None) -> np.ndarray:
    """`y` cut to `seconds` at 16 kHz, or repeated end to end when shorter (as musicnn pads)."""
    if seconds is None:
        return y
    n = round(seconds * SR)
    if n < N_FFT:
        raise UsageError(f"auralisation length {seconds} s is too short (at least {N_FFT / SR} s)")
    if len(y) == 0:
        raise UsageError("no audio to auralise")
    return np.tile(y, -(-n // len(y)))[:n]
