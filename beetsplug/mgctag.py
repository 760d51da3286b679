"""beets plugin: mgctag's listening genre tagger inside beets (`plugins: mgctag`).

beets stays the owner of its files: genres are set on beets' items (its database) and written to
the files only through beets' own writer (`item.try_write()`, when beets' `write` setting says
so). mgctag contributes the analysis and its database: the same analysis cache as `mgctag tag`
(an item analysed before is not analysed again unless its file changed), the embeddings for
`mgctag-similar`, and the journal `mgctag-undo` reverses. Heavy modules (torch, the pipeline) are
imported inside the commands, so loading the plugin costs beets nothing.
"""

from __future__ import annotations

import os
import shlex
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beets import ui
from beets.library import Album, Item, LibModel
from beets.plugins import BeetsPlugin

from mgctag import config as mgconfig
from mgctag.errors import MgctagError, one_line, reason_of
from mgctag.genres import plan_genres, split_genres
from mgctag.options import SEARCH, TAG, Progress, StopFlag, Summary, TagOptions

if TYPE_CHECKING:
    from beets.library import Library as BeetsLibrary

    from mgctag.library.db import Library
    from mgctag.library.rows import Track, WriteEntry

# The `mgctag:` settings that are `tag` options: beets' name -> the name in mgctag's one table of
# tag options, whose defaults they take (count None: the model's own number, min_confidence None:
# the model's own floor).
TABLE_SETTINGS = {
    "mode": "mode",
    "count": "max_genres",
    "min_confidence": "min_confidence",
    "content": "content",
    "device": "device",
    "genre_depth": "genre_depth",
    "genre_tree": "genre_tree",
    "genre_whitelist": "genre_whitelist",
    "learn_from_library": "learn_from_library",
}
PLUGIN_SETTINGS = {
    "auto": False,
    "model": None,  # None: mgctag's default (`mgctag models use`)
    "separator": "; ",  # joins genres in the single `genre` field of older beets
    "db": None,  # None: mgctag's own database (MGCTAG_DB or the user data dir)
}


def config_template() -> dict[str, Any]:
    """The `mgctag:` section's defaults: the plugin's own, and the tag options' from the table."""
    return {**PLUGIN_SETTINGS, **{key: TAG[name].default for key, name in TABLE_SETTINGS.items()}}


RUN_COMMAND = "beet mgctag"  # the runs `beet mgctag-undo` reverses
IMPORT_COMMAND = "beet import"
UNDO_COMMAND = "beet mgctag-undo"
# beets' own words for its -w/-W flags (as in `beet modify`)
WRITE_HELP = "write new metadata to files' tags (default)"
NOWRITE_HELP = "don't write metadata (only update the database)"
MODES = TAG["mode"].choices or ()  # the choices of mgctag's one table of tag options
CONTENTS = TAG["content"].choices or ()
#: Files per scan/analysis call: keeps mgctag's path clauses well under SQLite's parameter limit.
CHUNK = 200


def genre_field(model: type[LibModel] = Item) -> str:
    """The beets field genres go into: the multi-valued `genres` where this beets has it (2.14+
    dropped the single `genre`), else the string `genre` joined with the configured separator."""
    return "genres" if "genres" in model._fields else "genre"


def _beets_errors(func: Callable[..., None]) -> Callable[..., None]:
    """An expected mgctag problem ends a beets command as beets' own one-line UserError."""

    @wraps(func)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except MgctagError as exc:
            raise ui.UserError(f"mgctag: {exc}") from None

    return run


def _chunks(seq: Sequence[str], n: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class _LogProgress(Progress):
    """The pipeline's progress as beets log lines: a line when a batch of files starts, then
    one every `every` files, so a long analysis is never silent (`beet -v` shows it on import)."""

    def __init__(self, log: Any, every: int = 25) -> None:
        self.log, self.every, self.done, self.total = log, every, 0, 0

    def stage(self, name: str, total: int) -> None:
        self.done, self.total = 0, total
        if total:
            self.log.info("{} {} files", name, total)

    def advance(self, n: int = 1) -> None:
        before, self.done = self.done, self.done + n
        if self.done // self.every > before // self.every and self.done < self.total:
            self.log.info("  {}/{}", self.done, self.total)

    def message(self, text: str) -> None:
        self.log.warning("{}", text)


class MgctagPlugin(BeetsPlugin):
    def __init__(self) -> None:
        super().__init__()
        self.config.add(config_template())
        self._chains: dict[tuple[str, str], list] = {}
        if self.config["auto"].get(bool):
            self.import_stages = [self.imported]
        self._local = threading.local()  # per thread: beets' importer runs stages in threads
        self.register_listener("write", self._before_write)
        self.register_listener("after_write", self._after_write)
        self.register_listener("item_copied", self._copied)
        self.register_listener("item_moved", self._moved)
        self.register_listener("cli_exit", self._close)

    # -- settings ---------------------------------------------------------------------------

    def tag_options(self) -> TagOptions:
        """The run's TagOptions from the `mgctag:` section (confuse reports a bad value)."""
        kw: dict[str, Any] = {
            "mode": self.config["mode"].as_choice(MODES),
            "model": self.config["model"].get() or mgconfig.default_model(),
            "device": self.config["device"].as_str(),
        }
        count = self.config["count"].get()
        if count is not None:
            kw["max_genres"] = self.config["count"].get(int)
            if kw["max_genres"] < 1:
                raise ui.UserError("mgctag: count must be 1 or more")
        if self.config["min_confidence"].get() is not None:
            kw["min_confidence"] = self.config["min_confidence"].as_number()
            if not 0 <= kw["min_confidence"] <= 1:
                raise ui.UserError("mgctag: min_confidence must be between 0 and 1")
        if "genre_depth" in TagOptions.__dataclass_fields__:  # mgctag with the genre tree
            kw["genre_depth"] = self.config["genre_depth"].as_choice(
                TAG["genre_depth"].choices or ()
            )
            for key in ("genre_tree", "genre_whitelist"):
                kw[key] = self.config[key].as_filename() if self.config[key].get() else None
            kw["learn_from_library"] = self.config["learn_from_library"].get(bool)
        content = self.config["content"].as_choice(CONTENTS)
        if "content" in TagOptions.__dataclass_fields__:  # mgctag with the content gate
            kw["content"] = content
        return TagOptions(**kw)

    @contextmanager
    def mgctag_library(self) -> Iterator[Library]:
        """mgctag's database (the `db` key, else mgctag's own), opened for one command."""
        from mgctag.library.db import Library, LibraryError

        configured = self.config["db"].get()
        path = Path(self.config["db"].as_filename() if configured else mgconfig.default_db_path())
        if configured and not path.parent.is_dir():  # a typo, as for `mgctag --db`
            raise ui.UserError(f"mgctag: {path}: no such folder for the database (create it first)")
        try:
            lib = Library(path)
        except LibraryError as exc:  # its message names the file already
            raise ui.UserError(f"mgctag: {one_line(str(exc))}") from None
        except OSError as exc:
            raise ui.UserError(f"mgctag: {path}: {reason_of(exc)}") from None
        try:
            yield lib
        finally:
            lib.close()

    # -- keeping mgctag's analysis when beets rewrites, copies or moves a file -------------------

    def _events_library(self) -> Library | None:
        """This thread's mgctag database for the file events, when it exists (never created)."""
        from mgctag.library.db import Library

        mlib = getattr(self._local, "mlib", None)
        if mlib is None:
            configured = self.config["db"].get()
            path = Path(self.config["db"].as_filename()) if configured else None
            path = path or mgconfig.default_db_path()
            if not path.is_file():
                return None
            mlib = self._local.mlib = Library(path)
        return mlib

    def _current(self, path: bytes | str) -> tuple[Library, Track] | None:
        """mgctag's record of a file whose stored analysis is of the file as it is now."""
        mlib = self._events_library()
        track = mlib.track_by_path(os.fsdecode(path)) if mlib else None
        if mlib is None or track is None or track.status != "ok":
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = f"{st.st_size}:{st.st_mtime_ns}"
        if (st.st_size, st.st_mtime_ns) != (track.size, track.mtime):
            return None
        return (mlib, track) if track.analysis_key == key else None

    def _relocate(
        self, mlib: Library, track_id: int, path: bytes | str, moved: bool = False
    ) -> None:
        st = os.stat(path)
        mlib.relocate_track(track_id, os.fsdecode(path), st.st_size, st.st_mtime_ns, moved=moved)

    def _file_event(func: Callable[..., None]) -> Callable[..., None]:  # type: ignore[misc]
        """A listener that keeps mgctag's records: whatever goes wrong there is logged at debug
        level and never breaks the beets command that moved or wrote the file."""

        @wraps(func)
        def run(self: MgctagPlugin, **kwargs: Any) -> None:
            try:
                func(self, **kwargs)
            except Exception as exc:  # bookkeeping only: the file itself is beets' business
                self._log.debug("mgctag record of a file not updated: {}", reason_of(exc))

        return run

    @_file_event
    def _before_write(self, item: Item, path: bytes, **_: Any) -> None:
        """beets is about to write tags: remember the file if mgctag's analysis of it is current."""
        found = self._current(path)
        pending = self._local.__dict__.setdefault("pending", {})
        if found:
            pending[os.fsdecode(path)] = found[1].id

    @_file_event
    def _after_write(self, item: Item, path: bytes, **_: Any) -> None:
        """beets rewrote only the tags: the analysis stays valid for the file's new size/mtime."""
        track_id = self._local.__dict__.get("pending", {}).pop(os.fsdecode(path), None)
        mlib = self._events_library()
        if track_id is not None and mlib is not None:
            self._relocate(mlib, track_id, path)

    @_file_event
    def _copied(self, item: Item, source: bytes, destination: bytes, **_: Any) -> None:
        """A copy (import with `copy: yes`): the analysis follows the copy beets keeps."""
        if found := self._current(source):
            self._relocate(found[0], found[1].id, destination)

    @_file_event
    def _moved(self, item: Item, source: bytes, destination: bytes, **_: Any) -> None:
        """A move (a rename keeps size and mtime): the analysis follows the file."""
        mlib = self._events_library()
        track = mlib.track_by_path(os.fsdecode(source)) if mlib else None
        if mlib is None or track is None or track.status != "ok":
            return
        st = os.stat(destination)
        same = (st.st_size, st.st_mtime_ns) == (track.size, track.mtime)
        if same and track.analysis_key == f"{st.st_size}:{st.st_mtime_ns}":
            self._relocate(mlib, track.id, destination, moved=True)

    def _close(self, **_: Any) -> None:
        """At beets' exit: close this thread's database (SQLite connections belong to the thread
        that opened them; those of the importer's finished threads go with their threads)."""
        mlib = self._local.__dict__.pop("mlib", None)
        if mlib is not None:
            mlib.close()

    # -- genres on beets items --------------------------------------------------------------

    def item_genres(self, obj: LibModel) -> list[str]:
        """An item's (or album's) genres as beets holds them, one value each."""
        if genre_field(type(obj)) == "genres":
            return [g for g in (obj.get("genres") or []) if g]
        return split_genres(obj.get("genre") or "")

    def set_item_genres(self, obj: LibModel, genres: Sequence[str]) -> None:
        if genre_field(type(obj)) == "genres":
            obj.genres = list(genres)
        else:
            obj.genre = self.config["separator"].as_str().join(genres)

    def album_genres(self, items: Sequence[Item]) -> list[str]:
        """An album's genres from its tracks': the ones most tracks have first (ties: in the
        order they first appear), as many as one track has at most."""
        lists = [self.item_genres(item) for item in items]
        first = list(dict.fromkeys(g for genres in lists for g in genres))
        votes = Counter(g for genres in lists for g in set(genres))
        most = max((len(genres) for genres in lists), default=0)
        return sorted(first, key=lambda g: (-votes[g], first.index(g)))[:most]

    # -- analysis ---------------------------------------------------------------------------

    def _chain(self, opts: TagOptions) -> list:
        """The tagger chain for the model, built once per beets process."""
        from mgctag import pipeline
        from mgctag.separate import resolve_device

        key = (opts.model, opts.device)
        if key not in self._chains:
            self._chains[key] = pipeline.tagger_chain(opts.model, resolve_device(opts.device))
        return self._chains[key]

    def analyse(
        self,
        mlib: Library,
        paths: Sequence[str],
        opts: TagOptions,
        summary: Summary,
        stop: StopFlag,
        force: bool = False,
    ) -> None:
        """Scan and analyse the files mgctag has no current analysis of (all with `force`).

        A missing file is that item's failure; the rest go on.
        """
        from mgctag import pipeline
        from mgctag.library import scan as scanner

        chain = self._chain(opts)
        present = []
        for path in paths:
            if os.path.isfile(path):
                present.append(path)
            else:
                summary.fail(path, "the file is missing (beet update removes it from beets)")
        for chunk in _chunks(present, CHUNK):
            if stop:
                return
            report = scanner.scan(mlib, chunk, run_id=summary.run_id)
            summary.scanned += report.total
            for path, reason in report.failures:
                summary.fail(str(path), reason)
            roots = [Path(p) for p in chunk]
            progress = _LogProgress(self._log)
            pipeline.analyse_chain(mlib, roots, chain, opts, summary, progress, stop, force=force)
        pipeline.refresh_indexes(mlib, _LogProgress(self._log))

    # -- one tagging run over beets items -----------------------------------------------------

    def tag_items(
        self,
        items: Sequence[Item],
        *,
        command: str,
        write: bool,
        pretend: bool = False,
        force: bool = False,
        show: bool = True,
    ) -> Summary:
        """Analyse the items and set their genres through beets; journaled as one mgctag run."""
        from mgctag.audio.decode import filter_decoder_noise

        filter_decoder_noise(self._log)  # libmpg123's frame errors stay off beets' terminal
        from mgctag.writes.run import recorded_run

        opts = self.tag_options()
        opts.dry_run = pretend
        stop = StopFlag()
        paths = [os.fsdecode(item.path) for item in items]
        with self.mgctag_library() as mlib:
            summary = Summary()
            args = {"items": len(items), "write": write, "force": force, **vars(opts)}
            run_args = {k: str(v) for k, v in args.items()}
            with recorded_run(mlib, command, run_args, summary, settle=not pretend) as run_id:
                summary.run_id = run_id
                self.analyse(mlib, paths, opts, summary, stop, force)
                failed = {p for p, _ in summary.failures}
                vocabulary = self.vocabulary(mlib, opts)
                for item, path in zip(items, paths, strict=True):
                    if path not in failed:
                        self._tag_one(mlib, item, path, opts, summary, write, show, vocabulary)
        for path, reason in summary.failures:
            self._log.error("{}: {}", path, one_line(reason))
        for path, reason in summary.skips:
            self._log.info("{}: no genre ({})", path, one_line(reason))
        return summary

    @staticmethod
    def vocabulary(mlib: Library, opts: TagOptions) -> Any:
        """The library's vocabulary for `learn_from_library` (built once per command), or None."""
        if not getattr(opts, "learn_from_library", False):
            return None
        from mgctag.writes.vocabulary import library_vocabulary

        return library_vocabulary(mlib, opts.model, True)

    def _tag_one(
        self,
        mlib: Library,
        item: Item,
        path: str,
        opts: TagOptions,
        summary: Summary,
        write: bool,
        show: bool,
        vocabulary: Any = None,
    ) -> None:
        """Plan one item's genres from its stored analysis and set them (unless pretending)."""
        from mgctag.writes.plan import Skip, plan_track
        from mgctag.writes.writers import apply_change

        track = mlib.track_by_path(path)
        if track is None or track.status != "ok":
            return
        plan = plan_track(mlib, track, opts, vocabulary)
        if isinstance(plan, Skip) and plan.content:  # the gate heard speech or other sound
            # mgctag's reason names its command-line flag; in beets the setting is `content: all`
            summary.skips.append((path, plan.reason.replace("--content all", "content: all")))
            return
        if isinstance(plan, Skip):  # analysed, but no genre confident enough (or too short)
            summary.skipped += 1
            return
        old = self.item_genres(item)
        new = plan_genres(old, plan.predicted, opts.mode)
        if new is None:
            summary.unchanged += 1
            return
        self.set_item_genres(item, new)
        if show:
            ui.show_model_changes(item, fields=[genre_field()])
        else:
            self._log.info("{}: {}", path, "; ".join(new))
        writer = BeetsWriter(self, item, write)
        apply_change(writer, mlib, summary, track.id, path, old, new, dry_run=opts.dry_run)

    def _store(
        self,
        mlib: Library,
        item: Item,
        path: str,
        track_id: int | None,
        old: Sequence[str],
        new: Sequence[str],
        run_id: int | None,
        write: bool,
        summary: Summary | None = None,
        reverts: int | None = None,
    ) -> bool:
        """Journal the change, store it in beets' database and (if `write`) let beets write the
        file, under mgctag's lock on the file. The journal entry moves mgctag's record of the file
        to its state after beets' tag write, so the next run does not analyse it again."""
        from mgctag.writes import journal

        try:
            with journal.file_lock(mlib, path):
                write_id = mlib.begin_write(run_id, track_id, path, old, new, reverts=reverts)
                item.store()
                written = item.try_write() if write else True
                st = os.stat(path)
                mlib.confirm_write(write_id, st.st_size, st.st_mtime_ns)
        except (journal.FileBusyError, OSError) as exc:
            if summary is not None:
                summary.fail(path, reason_of(exc))
            else:
                self._log.error("{}: {}", path, reason_of(exc))
            return False
        if not written and summary is not None:
            summary.fail(path, "beets could not write the file (its database has the genres)")
        return bool(written)

    # -- commands -----------------------------------------------------------------------------

    def commands(self) -> list[ui.Subcommand]:
        tag = ui.Subcommand("mgctag", help="set genres by listening to the audio (mgctag)")
        tag.parser.add_option(
            "-p", "--pretend", action="store_true", help="show the changes, change nothing"
        )
        tag.parser.add_option(
            "-f", "--force", action="store_true", help="analyse again items analysed before"
        )
        tag.parser.add_option("-w", "--write", action="store_true", default=None, help=WRITE_HELP)
        tag.parser.add_option(
            "-W", "--nowrite", action="store_false", dest="write", help=NOWRITE_HELP
        )
        tag.parser.add_option(
            "-m", "--mode", choices=MODES, help="fill (default), merge or replace genres"
        )
        tag.func = self._tag_command

        similar = ui.Subcommand(
            "mgctag-similar", help="items that sound like the query's items (mgctag)"
        )
        search_option(similar.parser, "count", "-k")
        search_option(similar.parser, "all_versions")
        similar.parser.add_option(
            "--playlist", metavar="FILE", help="also write them to a playlist (.m3u8 or .xspf)"
        )
        similar.parser.add_format_option(target=Item)
        similar.func = self._similar_command

        playlist = ui.Subcommand(
            "mgctag-playlist",
            help="a playlist from the query's item to --to's, or an instant mix (mgctag)",
        )
        playlist.parser.add_option(
            "--to", metavar="QUERY", help="end here: a smooth path from the query's first item"
        )
        for name in ("length", "spacing", "genre", "exclude_artist"):
            search_option(playlist.parser, name)
        playlist.parser.add_option(
            "--playlist", metavar="FILE", help="also write it to a playlist (.m3u8 or .xspf)"
        )
        playlist.parser.add_format_option(target=Item)
        playlist.func = self._playlist_command

        undo = ui.Subcommand("mgctag-undo", help="reverse the last `beet mgctag` run")
        undo.parser.add_option(
            "-p", "--pretend", action="store_true", help="show what would be restored"
        )
        undo.parser.add_option("--run", type="int", help="the mgctag run to reverse (its id)")
        undo.parser.add_option("-w", "--write", action="store_true", default=None, help=WRITE_HELP)
        undo.parser.add_option(
            "-W", "--nowrite", action="store_false", dest="write", help=NOWRITE_HELP
        )
        undo.func = self._undo_command
        return [tag, similar, playlist, undo]

    @_beets_errors
    def _tag_command(self, lib: BeetsLibrary, opts: Any, args: list[str]) -> None:
        if opts.mode:
            self.config["mode"].set(opts.mode)
        items = list(lib.items(args))
        if not items:
            raise ui.UserError("mgctag: no items match the query")
        summary = self.tag_items(
            items,
            command=RUN_COMMAND,
            write=ui.should_write(opts.write),
            pretend=opts.pretend,
            force=opts.force,
        )
        verb = "would change" if opts.pretend else "changed"
        ui.print_(
            f"mgctag: {len(items)} items, {summary.analysed} analysed,"
            f" {len(summary.changes)} {verb}, {summary.unchanged} unchanged,"
            f" {summary.skipped + len(summary.skips)} without a genre, {summary.failed} failed"
        )
        if summary.failed:
            raise ui.UserError(f"mgctag: {summary.failed} of {len(items)} items failed")

    def imported(self, session: Any, task: Any) -> None:
        """The `auto` import stage: genres for the task's items after the metadata match.

        Like other beets import stages it only stores them; beets writes the files afterwards
        (when its import `write` setting is on and the task's metadata was applied).
        """
        items = list(task.imported_items())
        try:
            summary = self.tag_items(items, command=IMPORT_COMMAND, write=False, show=False)
        except MgctagError as exc:
            self._log.error("{}", exc)
            return
        if summary.tagged:
            self._log.info("genres for {} of {} items", summary.tagged, len(items))
        if task.is_album and summary.tagged:
            self._album_from_items(task.album, items)

    def _album_from_items(self, album: Album, items: Sequence[Item]) -> None:
        """An imported album's own genres from its tracks' (by `mode`, like a track's); the
        tracks keep theirs (stored without beets' album-to-track inheritance)."""
        new = plan_genres(
            self.item_genres(album), self.album_genres(items), self.tag_options().mode
        )
        if new:
            self.set_item_genres(album, new)
            album.store(inherit=False)
            self._log.info("album {}: {}", album, "; ".join(new))

    @_beets_errors
    def _similar_command(self, lib: BeetsLibrary, opts: Any, args: list[str]) -> None:

        check_search_options(opts, "mgctag-similar", ("count", "-k"))
        seeds_items = list(lib.items(args))
        if not seeds_items:
            raise ui.UserError("mgctag-similar: no items match the query")
        model = self.tag_options().model
        with self.mgctag_library() as mlib:
            seeds = [
                t.id
                for item in seeds_items
                if (t := mlib.track_by_path(os.fsdecode(item.path))) is not None
            ]
            if not seeds:
                raise ui.UserError(
                    f"mgctag-similar: none of the {len(seeds_items)} items is analysed yet;"
                    " run `beet mgctag QUERY` first"
                )
            hits = self._beets_hits(lib, mlib, seeds, model, opts.count, opts.all_versions)
        if not hits:
            ui.print_("mgctag-similar: no other analysed items in this beets library")
        for item in hits:
            ui.print_(format(item, opts.format or ""))
        self._write_playlist(opts.playlist, hits)

    def _write_playlist(self, path: str | None, items: Sequence[Item]) -> None:
        from mgctag.search import export

        if not path:
            return
        entries = [
            export.PlaylistEntry(os.fsdecode(i.path), i.artist, i.title, i.length) for i in items
        ]
        export.write_playlist(path, entries)
        self._log.info("playlist {} ({} items)", path, len(items))

    def _beets_hits(
        self,
        lib: BeetsLibrary,
        mlib: Library,
        seeds: list[int],
        model: str,
        k: int,
        all_versions: bool = False,
    ) -> list[Item]:
        """The k nearest tracks that are items of this beets library (mgctag's database may
        know other files too), asking mgctag for more until k are found or none are left.
        Other versions of a recording are folded into its best-ranked one (see `mgctag
        similar`), unless `all_versions`."""
        from mgctag.search.similar import similar_tracks

        by_path = {os.fsdecode(item.path): item for item in lib.items()}
        want = k
        while True:
            hits = similar_tracks(
                mlib, seeds, model=model, k=want, all_versions=all_versions, say=self._say
            )
            items = [by_path[h["path"]] for h in hits if h["path"] in by_path]
            if len(items) >= k or len(hits) < want:
                return items[:k]
            want *= 4

    def _say(self, text: str) -> None:
        self._log.warning("{}", text)

    @_beets_errors
    def _playlist_command(self, lib: BeetsLibrary, opts: Any, args: list[str]) -> None:
        """A path from the query's first analysed item to --to's, or an instant mix from the
        query's analysed items; only items of this beets library are listed."""
        from mgctag.search import playlist as pl
        from mgctag.search.similar import SimilarError, default_embedding_model

        check_search_options(
            opts, "mgctag-playlist", ("length", "--length"), ("spacing", "--spacing")
        )
        rules = pl.Rules(opts.length, opts.spacing, opts.genre, opts.exclude_artist)
        with self.mgctag_library() as mlib:
            starts = self._analysed(mlib, lib, args, "the query")
            model = default_embedding_model(mlib)
            try:
                if opts.to:
                    end = self._analysed(mlib, lib, shlex.split(opts.to), "--to")[0]
                    tracks = pl.path_playlist(
                        mlib, starts[0], end, model=model, rules=rules, say=self._say
                    )
                else:
                    tracks = pl.instant_mix(mlib, starts, model=model, rules=rules, say=self._say)
            except SimilarError as exc:
                raise ui.UserError(f"mgctag-playlist: {exc}") from None
        by_path = {os.fsdecode(item.path): item for item in lib.items()}
        items = [by_path[t["path"]] for t in tracks if t["path"] in by_path]
        for item in items:
            ui.print_(format(item, opts.format or ""))
        self._write_playlist(opts.playlist, items)

    def _analysed(self, mlib: Library, lib: BeetsLibrary, query: Any, what: str) -> list[int]:
        """mgctag's track ids of the items a query matches (in beets' order), analysed ones only."""
        items = list(lib.items(query))
        if not items:
            raise ui.UserError(f"mgctag-playlist: no items match {what}")
        ids = [
            int(t["id"])
            for item in items
            if (t := mlib.track_by_path(os.fsdecode(item.path))) is not None
        ]
        if not ids:
            raise ui.UserError(
                f"mgctag-playlist: none of the {len(items)} items of {what} is analysed yet;"
                " run `beet mgctag QUERY` first"
            )
        return ids

    @_beets_errors
    def _undo_command(self, lib: BeetsLibrary, opts: Any, args: list[str]) -> None:
        from mgctag.writes import journal
        from mgctag.writes.run import Restores, recorded_run

        write = ui.should_write(opts.write)
        with self.mgctag_library() as mlib:
            if not opts.pretend:
                journal.settle_pending(mlib)
            run_id = opts.run or self._last_undoable(mlib)
            if run_id is None:
                raise ui.UserError("mgctag-undo: no `beet mgctag` run to undo")
            run = mlib.get_run(run_id)
            if run is None or run.command != RUN_COMMAND:
                raise ui.UserError(f"mgctag-undo: run {run_id} is not a `beet mgctag` run")
            writes = _undoable(mlib, run_id)
            by_path = _items_by_path(lib, {w.path for w in writes})
            if opts.pretend:
                done, refused = self._undo_writes(mlib, writes, by_path, None, write, True)
            else:
                outcome = Restores()
                with recorded_run(
                    mlib, UNDO_COMMAND, {"run": run_id}, outcome, settle=False
                ) as uid:
                    done, refused = self._undo_writes(mlib, writes, by_path, uid, write, False)
                    outcome.restored, outcome.failed = done, refused
        verb = "would restore" if opts.pretend else "restored"
        ui.print_(f"mgctag-undo: run {run_id}: {done} {verb}, {refused} refused")
        if refused:
            raise ui.UserError(f"mgctag-undo: {refused} items not restored")

    def _undo_writes(
        self,
        mlib: Library,
        writes: Iterable[WriteEntry],
        by_path: dict[str, Item],
        undo_id: int | None,
        write: bool,
        pretend: bool,
    ) -> tuple[int, int]:
        """Put back each item's genres from before the run; an item edited since is refused."""
        done = refused = 0
        for w in writes:
            item = by_path.get(w.path)
            if item is None:
                self._log.error("{}: no longer in the beets library; not restored", w.path)
                refused += 1
                continue
            current = self.item_genres(item)
            if current != list(w.new or []):
                self._log.error("{}: genres changed since `beet mgctag`; not restored", item)
                refused += 1
                continue
            self.set_item_genres(item, w.old or [])
            ui.show_model_changes(item, fields=[genre_field()])
            if pretend:
                done += 1
                continue
            ok = self._store(
                mlib, item, w.path, w.track_id, current, w.old or [], undo_id, write, reverts=w.id
            )
            done, refused = (done + 1, refused) if ok else (done, refused + 1)
        return done, refused

    def _last_undoable(self, mlib: Library) -> int | None:
        """The newest `beet mgctag` run with changes not undone yet."""
        for run in mlib.list_runs():
            if run.command == RUN_COMMAND and _undoable(mlib, run.id):
                return run.id
        return None


def search_option(parser: Any, name: str, *flags: str) -> None:
    """A beets option from mgctag.options' SEARCH table (the same name, default and help as
    `mgctag similar` / `mgctag playlist`); bounds are checked by `check_search_options`."""
    option = SEARCH[name]
    flags = flags or (option.flag,)
    if option.kind is bool:
        parser.add_option(*flags, dest=name, action="store_true", default=option.default)
    else:
        kind = {int: "int", float: "float"}.get(option.kind, "string")
        parser.add_option(*flags, dest=name, type=kind, default=option.default)
    parser.option_list[-1].help = option.help[0].lower() + option.help[1:].rstrip(".")


def check_search_options(opts: Any, command: str, *named: tuple[str, str]) -> None:
    """The table's rules for the options given as (name, flag): a bad one is one line."""
    for name, flag in named:
        problem = SEARCH[name].problem(getattr(opts, name), quoted=False)
        if problem is not None:
            raise ui.UserError(f"{command}: {flag} {getattr(opts, name)}: {problem}")


def _undoable(mlib: Library, run_id: int) -> list[WriteEntry]:
    """A run's changes still in place, latest first."""
    return [
        w for w in reversed(mlib.writes_for_run(run_id)) if w.state == "done" and not w.undone_at
    ]


def _items_by_path(lib: BeetsLibrary, paths: set[str]) -> dict[str, Item]:
    return {p: item for item in lib.items() if (p := os.fsdecode(item.path)) in paths}


class BeetsWriter:
    """beets' ``store()`` (and, with ``write``, ``try_write()``) as an mgctag genre writer: the
    change is journaled under mgctag's lock on the file like mgctag's own writes."""

    def __init__(self, plugin: MgctagPlugin, item: Item, write: bool) -> None:
        self.plugin, self.item, self.changes_file = plugin, item, write

    def write(
        self,
        lib: Library,
        summary: Summary,
        track_id: int | None,
        path: str,
        old: Sequence[str],
        new: Sequence[str],
    ) -> bool:
        return self.plugin._store(
            lib, self.item, path, track_id, old, new, summary.run_id, self.changes_file, summary
        )
