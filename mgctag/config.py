"""Where mgctag keeps its files, and the defaults a user can override.

Precedence: command-line option > environment variable > config.toml > built-in default.
Folders come from platformdirs, so Linux gets the XDG folders (~/.local/share/mgctag,
~/.config/mgctag, honouring XDG_DATA_HOME/XDG_CONFIG_HOME), macOS ~/Library/Application Support
and Windows %LOCALAPPDATA% — as beets and most Python tools do.
"""

from __future__ import annotations

import os
import tomllib
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from mgctag.errors import ConfigError, reason_of

if TYPE_CHECKING:
    from mgctag.options import TagOption

APP = "mgctag"


def data_dir() -> Path:
    """The user data dir (~/.local/share/mgctag on Linux): database, user models, journal."""
    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def config_dir() -> Path:
    """The user config dir (~/.config/mgctag on Linux): config.toml, genres.json."""
    return Path(platformdirs.user_config_dir(APP, appauthor=False))


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
    """config.toml in the user config dir."""
    return config_dir() / "config.toml"


def genre_map_path() -> Path:
    """The user's genre map (genres.json), which extends the bundled one key by key."""
    return config_dir() / "genres.json"


def _config_file() -> dict[str, Any]:
    """config.toml as a dict ({} when there is none); read again only when the file changed."""
    path = config_path()
    try:
        st = path.stat()
    except OSError:
        return {}
    return _parse_config(path, st.st_mtime_ns, st.st_size)


@cache
def _parse_config(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:  # noqa: ARG001
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"not a readable config file ({reason_of(exc)})", path) from exc
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"`{section}` must be a [section] table", path)
    _check_settings(data, path)
    return data


def _settings() -> dict[str, dict[str, TagOption]]:
    """Every setting config.toml may hold: section -> key -> its description (mgctag.options, the
    one table). A key not listed is a one-line error naming it, so a typo is never ignored."""
    from mgctag.options import TAG

    return {"tag": TAG}


def _check_settings(data: dict[str, Any], path: Path) -> None:
    """Unknown sections or keys, and values of the wrong type, outside their choices or range."""
    settings = _settings()
    for section, table in data.items():
        if section not in settings:
            raise ConfigError(f"unknown section [{section}]; known: {', '.join(settings)}", path)
        for key, value in table.items():
            if key not in settings[section]:
                known = ", ".join(settings[section])
                raise ConfigError(f"unknown setting `{key}` in [{section}]; known: {known}", path)
            problem = settings[section][key].problem(value)
            if problem is not None:
                raise ConfigError(f"[{section}] {key} = {value!r}: {problem}", path)


def effective(section: str, defaults: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """Each setting of `section` with where its value came from (environment, config.toml,
    default) — what `mgctag config` prints and what a command uses when no option is given."""
    table = _config_file().get(section, {})
    result: dict[str, tuple[Any, str]] = {}
    for key, default in defaults.items():
        env = f"MGCTAG_{key.upper()}"
        if key in ("stems", "model") and os.environ.get(env):  # the documented variables
            result[key] = (os.environ[env], f"environment ({env})")
        elif key in table:
            result[key] = (table[key], f"{config_path()} [{section}]")
        elif key == "model" and chosen_model():
            result[key] = (chosen_model(), "mgctag models use")
        else:
            result[key] = (default, "default")
    return result


def where(key: str, source: str) -> str:
    """How an error names a setting from `source` (as `effective` reports it): the variable, the
    config file's key, the flag — never an option the user did not type."""
    if source.startswith("environment ("):
        return source.removeprefix("environment (").removesuffix(")")
    if source == "default":
        return f"the default {key}"
    if source == "mgctag models use":
        return "the model `mgctag models use` chose"
    return f"{source} {key}"


def setting(section: str, key: str, default: Any) -> Any:
    """MGCTAG_<KEY> from the environment, else [section] key from config.toml, else `default`."""
    env = os.environ.get(f"MGCTAG_{key.upper()}")
    if env is not None:
        return env
    return _config_file().get(section, {}).get(key, default)


def chosen_model() -> str:
    """The model `mgctag models use` made the default ("" when none was chosen)."""
    path = data_dir() / "default-model"
    return path.read_text("utf-8").strip() if path.is_file() else ""


def default_model() -> str:
    """The model `mgctag tag` uses unless --model says otherwise: MGCTAG_MODEL, else `model`
    under [tag] in config.toml, else the one `mgctag models use` chose, else the built-in one."""
    from mgctag.options import DEFAULT_TAGGER, expand_model

    return expand_model(str(effective("tag", {"model": DEFAULT_TAGGER})["model"][0]))


def set_default_model(name: str) -> None:
    path = data_dir() / "default-model"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(name + "\n", "utf-8")
