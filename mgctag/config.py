"""Where mgctag keeps its files, and the defaults a user can override.

Precedence: command-line option > environment variable > XDG default.
"""

from __future__ import annotations

import os
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

APP = "mgctag"


def data_dir() -> Path:
    """The XDG data dir (~/.local/share/mgctag): database, user models, journal."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / APP


def default_db_path() -> Path:
    """MGCTAG_DB if set, else library.db in the data dir."""
    env = os.environ.get("MGCTAG_DB")
    return Path(env).expanduser() if env else data_dir() / "library.db"


def user_models_dir() -> Path:
    """Models a user trained (safetensors + JSON card each)."""
    return data_dir() / "models"


def bundled_weights_dir() -> Path:
    """The weights/ folder shipped with mgctag (installed as the package mgctag.weights)."""
    from importlib.resources import files

    return Path(str(files("mgctag.weights")))


def config_path() -> Path:
    """~/.config/mgctag/config.toml (XDG config dir)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / APP / "config.toml"


@cache
def _config_file() -> dict[str, Any]:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable config file ({exc})") from exc


def setting(section: str, key: str, default: Any) -> Any:
    """MGCTAG_<KEY> from the environment, else [section] key from config.toml, else `default`."""
    env = os.environ.get(f"MGCTAG_{key.upper()}")
    if env is not None:
        return env
    return _config_file().get(section, {}).get(key, default)


def default_model() -> str:
    """The model `mgctag tag` uses unless --model says otherwise (set by `mgctag models use`)."""
    path = data_dir() / "default-model"
    name = path.read_text("utf-8").strip() if path.is_file() else ""
    return os.environ.get("MGCTAG_MODEL") or name or "musicnn"


def set_default_model(name: str) -> None:
    path = data_dir() / "default-model"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(name + "\n", "utf-8")
