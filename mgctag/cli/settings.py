"""`mgctag config`: the settings a command would use now, and where each one came from."""

from __future__ import annotations

import os

from rich.table import Table

from mgctag import config
from mgctag.cli.common import DbOption, JsonOption, state, use_db
from mgctag.cli.output import print_json, print_table, shown
from mgctag.options import TAG_DEFAULTS


def _folders() -> dict[str, tuple[str, str]]:
    """The files and folders mgctag uses, with where each location came from."""
    db_source = (
        "--db"
        if state.db
        else "environment (MGCTAG_DB)"
        if os.environ.get("MGCTAG_DB")
        else "default"
    )
    return {
        "database": (str(state.db or config.default_db_path()), db_source),
        "config file": (
            str(config.config_path()),
            "exists" if config.config_path().is_file() else "absent",
        ),
        "genre map": (
            str(config.genre_map_path()),
            "exists" if config.genre_map_path().is_file() else "absent",
        ),
        "user models": (str(config.user_models_dir()), "default"),
    }


def config_command(db: DbOption = None, json_out: JsonOption = False) -> None:
    """Print the effective settings of `tag` and where each came from, and mgctag's files."""
    use_db(db)
    settings = config.effective("tag", TAG_DEFAULTS)
    folders = _folders()
    if json_out:
        print_json(
            {
                "tag": {k: {"value": v, "from": src} for k, (v, src) in settings.items()},
                "files": {k: {"path": v, "from": src} for k, (v, src) in folders.items()},
            }
        )
        return
    table = Table(title="tag settings (the command line overrides each one)")
    for column in ("setting", "value", "from"):
        table.add_column(column, overflow="fold")
    for key, (value, source) in settings.items():
        shown_value = "the model's" if value is None else repr(value)
        table.add_row(key, shown(shown_value), shown(source))
    print_table(table)
    files = Table(title="files")
    for column in ("what", "path", "from"):
        files.add_column(column, overflow="fold")
    for key, (path, source) in folders.items():
        files.add_row(key, shown(path), shown(source))
    print_table(files)
