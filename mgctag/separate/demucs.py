"""Demucs v4 (HTDemucs) through the `demucs` package: weight resolution, device, chunking.

The package is optional (`pip install 'mgctag[demucs]'`) and imported only here, lazily. Weights
are looked for in order: an explicit path (a demucs weight file or a folder laid out like
demucs's `--repo`), the local caches (HuggingFace hub cache, torch hub checkpoints), and a
download when the network is reachable. Long audio is processed in overlapping segments by
`demucs.apply.apply_model`; on GPU out-of-memory the segment is halved and the call retried.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import STEMS, SeparationError, Separator, WeightsUnavailableError

MODELS = ("htdemucs", "htdemucs_ft", "mdx_extra")
DEFAULT_MODEL = "htdemucs"
MIN_SEGMENT = 1.0  # seconds; below this an OOM is reported rather than retried
OFFLINE_VARS = ("MGCTAG_OFFLINE", "HF_HUB_OFFLINE")


class DemucsSeparator(Separator):
    """Any demucs model or bag of models whose sources include drums, bass, other, vocals."""

    name = "demucs"

    def __init__(
        self, model: Any, device: str = "cpu", segment: float | None = None, overlap: float = 0.25
    ) -> None:
        missing = set(STEMS) - set(model.sources)
        if missing:
            raise SeparationError(f"demucs model lacks stems {sorted(missing)}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.sample_rate = int(model.samplerate)
        self.segment = segment
        self.overlap = overlap

    @classmethod
    def load(
        cls,
        name: str = DEFAULT_MODEL,
        device: str = "cpu",
        model_path: Path | str | None = None,
        download: bool = True,
    ) -> DemucsSeparator:
        """Resolve weights (see module doc). `model_path` may also be a model name."""
        if model_path is not None and str(model_path) in MODELS:
            name, model_path = str(model_path), None
        path = Path(model_path) if model_path else None
        return cls(load_model(name, path, download=download), device=device)

    def _separate(self, y: np.ndarray) -> dict[str, np.ndarray]:
        return self._apply(y[None])[0]

    def separate_batch(self, windows: list[np.ndarray], sr: int) -> list[dict[str, np.ndarray]]:
        """Windows of equal shape go through the model as one batch (what a GPU wants)."""
        if len({np.shape(w) for w in windows}) != 1:
            return super().separate_batch(windows, sr)
        batch = np.stack([self._prepare(w, sr) for w in windows])
        return [self._finish(s, w, sr) for s, w in zip(self._apply(batch), windows, strict=True)]

    def _apply(self, batch: np.ndarray) -> list[dict[str, np.ndarray]]:
        """(batch, channels, n) at the native rate -> one stem dict per item."""
        from demucs.apply import apply_model

        channels = batch.shape[1]
        mix = torch.from_numpy(batch)
        if channels < self.model.audio_channels:
            mix = mix.expand(-1, self.model.audio_channels, -1)
        segment = self.segment
        while True:
            try:
                with torch.inference_mode():
                    out = apply_model(
                        self.model, mix, shifts=0, split=True, overlap=self.overlap,
                        segment=segment, device=self.device,
                    )  # fmt: skip
                break
            except torch.OutOfMemoryError as err:
                segment = (segment or float(_max_segment(self.model))) / 2
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if segment < MIN_SEGMENT:
                    raise SeparationError(
                        f"out of memory on {self.device} even in short chunks"
                    ) from err
        if channels < out.shape[2]:
            out = out.mean(dim=2, keepdim=True)
        index = {s: i for i, s in enumerate(self.model.sources)}
        return [{s: item[index[s]].numpy() for s in STEMS} for item in out.float()]


def _max_segment(model: Any) -> float:
    """The longest chunk the model takes (HTDemucs: its training length; bags: their own)."""
    return float(getattr(model, "segment", None) or model.models[0].segment)


def _demucs() -> Any:
    try:
        import demucs.pretrained
    except ImportError as err:
        raise SeparationError(
            f"the demucs package is not installed ({err}); pip install 'mgctag[demucs]'"
        ) from err
    return demucs.pretrained


def load_model(name: str = DEFAULT_MODEL, path: Path | None = None, download: bool = True) -> Any:
    """A demucs model in eval mode, or WeightsUnavailableError saying how to get the weights.

    Looked for in order: `path`, the weights `mgctag models get htdemucs` stored, demucs's own
    caches, and (with `download`) demucs's download from the HuggingFace hub.
    """
    pretrained = _demucs()
    if path is not None:
        return _from_path(pretrained, name, path)
    model = _from_store(name) or _from_cache(pretrained, name)
    if model is not None:
        return model
    if not download:
        raise WeightsUnavailableError(missing_message(name))
    if not online():
        raise WeightsUnavailableError(missing_message(name))
    try:
        return pretrained.get_model(name)
    except Exception as err:  # the package raises many kinds; the user needs one line
        raise WeightsUnavailableError(f"{missing_message(name)} (download failed: {err})") from err


def _from_path(pretrained: Any, name: str, path: Path) -> Any:
    """A weight file (.safetensors as exported to the HF hub, or a demucs .th) or a repo folder."""
    from demucs.hf import load_safetensors_model
    from demucs.states import load_model as load_th

    if not path.exists():
        raise SeparationError(f"{path}: no such file or folder")
    try:
        if path.is_dir():
            return _from_folder(pretrained, name, path)
        if path.suffix == ".safetensors":
            return load_safetensors_model(path).eval()
        if path.suffix == ".th":
            return load_th(path).eval()  # demucs's own format (a torch pickle the user supplied)
    except Exception as err:  # a user's file can fail in many ways; they need one line
        raise SeparationError(f"{path}: cannot load demucs weights: {err}") from err
    raise SeparationError(f"{path}: expected a .safetensors or .th file, or a folder")


def _from_folder(pretrained: Any, name: str, folder: Path) -> Any:
    """A folder like demucs's --repo: NAME.yaml (a bag) + one weight file per signature."""
    import yaml
    from demucs.apply import BagOfModels
    from demucs.hf import load_safetensors_model

    bag_file = folder / f"{name}.yaml"
    if bag_file.is_file():
        bag = yaml.safe_load(bag_file.read_text())
        files = [folder / f"{sig}.safetensors" for sig in bag["models"]]
        if all(f.is_file() for f in files):
            models = [load_safetensors_model(f) for f in files]
            return BagOfModels(models, bag.get("weights"), bag.get("segment")).eval()
    return pretrained.get_model(name, repo=folder)


def _from_store(name: str) -> Any | None:
    """HTDemucs as `mgctag models get htdemucs` stored it (converted from the npm package)."""
    from . import htdemucs

    if name != htdemucs.NAME or htdemucs.installed() is None:
        return None
    try:
        return htdemucs.load()
    except Exception as err:  # a damaged file: say which and how to fix it, in one line
        raise SeparationError(
            f"{htdemucs.weights_path()}: cannot load ({err}); "
            "run `mgctag models get htdemucs` again"
        ) from err


def _from_cache(pretrained: Any, name: str) -> Any | None:
    """The model from the HF hub cache or torch hub's checkpoints, without touching the network."""
    from demucs.apply import BagOfModels
    from demucs.hf import hf_repo_name, load_safetensors_model
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo_id = f"adefossez/{hf_repo_name(name)}"
    try:
        import yaml

        bag = yaml.safe_load(
            Path(hf_hub_download(repo_id, f"{name}.yaml", local_files_only=True)).read_text()
        )
        files = [
            hf_hub_download(repo_id, f"{s}.safetensors", local_files_only=True)
            for s in bag["models"]
        ]
        models = [load_safetensors_model(f) for f in files]
        return BagOfModels(models, bag.get("weights"), bag.get("segment")).eval()
    except (LocalEntryNotFoundError, OSError):
        pass
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    bag_file = pretrained.REMOTE_ROOT / f"{name}.yaml"
    if checkpoints.is_dir() and bag_file.is_file():
        import yaml

        sigs = yaml.safe_load(bag_file.read_text())["models"]
        if all(any(checkpoints.glob(f"{sig}-*.th")) for sig in sigs):
            repo = pretrained.AnyModelRepo(
                pretrained.LocalRepo(checkpoints),
                pretrained.BagOnlyRepo(pretrained.REMOTE_ROOT, pretrained.LocalRepo(checkpoints)),
            )
            return repo.get_model(name).eval()
    return None


def online(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether a download could work: no offline switch set and the hub answers quickly."""
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in OFFLINE_VARS):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def missing_message(name: str) -> str:
    """One line telling the user how to get Demucs weights onto this machine."""
    hub = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    return (
        f"no Demucs weights for {name!r}: none given with --separator-model, none cached in "
        f"{hub} or {Path(torch.hub.get_dir()) / 'checkpoints'}, and no network to download them; "
        f"run `python -m demucs -n {name} some.wav` once on a machine online and copy that cache "
        "here, or pass --separator-model FILE_OR_FOLDER"
        + (" (or `mgctag models get htdemucs`)" if name == DEFAULT_MODEL else "")
    )
