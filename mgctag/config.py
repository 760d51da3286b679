"""Where mgctag keeps its files, and the defaults a user can override.

Precedence: command-line option > environment variable > XDG default.
"""

from __future__ import annotations

import os
from pathlib import Path

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
