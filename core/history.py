"""Undo and redo for a tracking session: a copy-on-write journal on disk.

Every change to a session (a prompt, a lock, a propagation) is one **step**. While a step is open,
the first time it is about to overwrite something (a per-frame record, a matte file, the session's
prompts) the journal copies what is there now, or notes that nothing was, into the step's folder.
Nothing else is copied, so a span re-track over 5 frames costs 5 records on disk, whatever the
length of the shot; nothing of it stays in memory but the steps' labels.

Undo and redo are the same operation, a **swap**: every journaled item is put back, and what the
session held there is journaled into a new step, the one that reverses it (an undone step becomes
the redo step, and back). Restored records are the journaled bytes, so they are bit-identical to
what was overwritten. The step being undone is only read until the swap is done, so a swap that
fails or is killed halfway is rolled back from the new step: an undo happens whole or not at all.

    <root>/index.json            steps to undo (oldest first) and to redo (next first), written atomically
    <root>/steps/<id>/meta.json  the session's prompts, clicks, locks and object order (the other side)
    <root>/steps/<id>/records/<frame index>/<obj>_<f|p>.rec   a record (`memory_bank.encode_record`)
    <root>/steps/<id>/records/<frame index>/<obj>_<f|p>.none  no record there
    <root>/steps/<id>/files/<hash>.path, .bin or .none         a file outside the records (mattes, mask prompts)

A frame's folder under `records/` also answers "what did this frame look like before the last
change?" (the before/after view) with one lookup per step.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

from .fileio import write_bytes_atomic, write_json_atomic

HISTORY_FORMAT = 1
MAX_HISTORY_STEPS = 1000  # SessionOptions.history_steps is checked against this
MAX_LABEL_CHARS = 200


class HistoryError(ValueError):
    """Nothing to undo or redo, or a journal that cannot be read."""


class Journaled(Protocol):
    """What the journal needs from the session it records (`VideoSession`)."""

    def history_meta(self) -> dict[str, Any]:
        """Prompts, clicks, locks and the object order, as JSON-able data."""

    def history_apply_meta(self, meta: dict[str, Any]) -> None:
        """Make prompts, clicks, locks and objects what `meta` says (records are restored after)."""

    def history_save_record(self, obj_id: int, idx: int, pending: bool, dest: Path) -> bool:
        """Put the record's bytes in file `dest` (a hard link where it can); False when there is none."""

    def history_restore_record(self, obj_id: int, idx: int, pending: bool, data: bytes | None) -> None:
        """Store these record bytes (or remove the record when None) and update the indexes."""

    def history_flush(self) -> None:
        """Make the restored records durable."""


@dataclass
class Step:
    id: int
    label: str
    bytes: int = 0  # what its journal holds on disk, once it is finished

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Step":
        return cls(int(data["id"]), str(data["label"]), int(data.get("bytes", 0)))


class History:
    """The bounded undo/redo journal of one session, in `root` (created if needed)."""

    def __init__(self, root: Path, target: Journaled, *, limit: int, max_bytes: int = 0) -> None:
        """limit: steps kept; max_bytes: the journal's size on disk past which the oldest steps go
        (0: no cap; the newest step always stays)."""
        if not 0 <= limit <= MAX_HISTORY_STEPS:
            raise HistoryError(f"history steps must be 0 to {MAX_HISTORY_STEPS}, not {limit}")
        self.max_bytes = max(0, int(max_bytes))
        self.root = Path(root)
        self.target = target
        self.limit = int(limit)
        self._undo: list[Step] = []
        self._redo: list[Step] = []
        self._next_id = 1
        self._open: Step | None = None
        self._depth = 0
        # the step that closed last, while nothing was undone since: files written just after a
        # propagation ends (its confidence report) still belong to it
        self._last_closed: Step | None = None
        # the step an undo or redo is journaling into, until it is done (rolled back if interrupted)
        self._swapping: Step | None = None
        self._load()

    # --- persistence ------------------------------------------------------------------------

    def _index_path(self) -> Path:
        return self.root / "index.json"

    def _folder(self, step: Step) -> Path:
        return self.root / "steps" / f"{step.id:08d}"

    def _load(self) -> None:
        path = self._index_path()
        if not path.is_file():
            return
        try:
            data = json.loads(path.read_text())
            if data.get("format") != HISTORY_FORMAT:
                raise ValueError(f"format {data.get('format')} is not {HISTORY_FORMAT}")
            self._undo = [Step.from_dict(s) for s in data.get("undo", [])]
            self._redo = [Step.from_dict(s) for s in data.get("redo", [])]
            self._next_id = int(data.get("next_id", 1))
            opened = data.get("open")
            swapping = data.get("swapping")
            if swapping is not None:
                self._swapping = Step.from_dict(swapping)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HistoryError(f"{path}: the undo history cannot be read ({exc})") from None
        if opened is not None:
            # the process stopped inside a step (killed mid-propagation): what it journaled undoes
            # exactly what it wrote, so it is kept as a finished step
            self._open = Step.from_dict(opened)
            self._open.bytes = self._size(self._open)
            self._keep(self._open)
            self._open = None
        # folders of steps the index does not name (a crash between writing them and the index)
        known = {s.id for s in self._undo + self._redo + ([self._swapping] if self._swapping else [])}
        for folder in (self.root / "steps").glob("*") if (self.root / "steps").is_dir() else []:
            if not (folder.name.isdigit() and int(folder.name) in known):
                shutil.rmtree(folder, ignore_errors=True)
        self._trim()
        self._write_index()

    def _write_index(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self._index_path(), {
            "format": HISTORY_FORMAT,
            "limit": self.limit,
            "undo": [s.to_dict() for s in self._undo],
            "redo": [s.to_dict() for s in self._redo],
            "next_id": self._next_id,
            "open": self._open.to_dict() if self._open is not None else None,
            "swapping": self._swapping.to_dict() if self._swapping is not None else None,
        })

    # --- steps ------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    @property
    def recording(self) -> bool:
        """A step is open: changes are journaled."""
        return self._open is not None

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        """Make everything inside one step. Nested steps join the outer one (a stroke that becomes
        clicks, a two-way propagation made of two passes)."""
        if not self.enabled:
            yield
            return
        if self._depth == 0:
            self._begin(label)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._end()

    def _begin(self, label: str) -> None:
        if self._swapping is not None:
            raise HistoryError("an undo or redo was interrupted and could not be rolled back: reopen the session")
        step = Step(self._next_id, " ".join(str(label).split())[:MAX_LABEL_CHARS])
        self._next_id += 1
        folder = self._folder(step)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "meta.json", self.target.history_meta(), indent=None)
        self._open = step
        self._last_closed = None
        self._write_index()

    def _end(self) -> None:
        step, self._open = self._open, None
        if step is None:
            return
        if self._changed_nothing(step):
            shutil.rmtree(self._folder(step), ignore_errors=True)  # a refused prompt, an empty run
            self._write_index()
            return
        step.bytes = self._size(step)
        self._keep(step)
        self._trim()
        self._last_closed = step
        self._write_index()

    def _keep(self, step: Step) -> None:
        """A finished step: it goes on the undo list and makes the redo list stale."""
        for stale in self._redo:
            shutil.rmtree(self._folder(stale), ignore_errors=True)
        self._redo = []
        self._undo.append(step)

    def _trim(self) -> None:
        """Drop the oldest steps past the step limit, then past the size cap (never the newest)."""
        while len(self._undo) > self.limit or (
                self.max_bytes and len(self._undo) > 1
                and sum(s.bytes for s in self._undo + self._redo) > self.max_bytes):
            oldest = self._undo.pop(0)
            shutil.rmtree(self._folder(oldest), ignore_errors=True)

    def _size(self, step: Step) -> int:
        return sum(p.stat().st_size for p in self._folder(step).rglob("*") if p.is_file())

    def _changed_nothing(self, step: Step) -> bool:
        folder = self._folder(step)
        for sub in ("records", "files"):
            if (folder / sub).is_dir() and any((folder / sub).iterdir()):
                return False
        saved = json.loads((folder / "meta.json").read_text())
        return bool(saved == json.loads(json.dumps(self.target.history_meta())))

    # --- journaling (while a step is open) --------------------------------------------------

    def record_will_change(self, obj_id: int, idx: int, pending: bool) -> None:
        """Keep what a record holds before the open step first changes it."""
        if self._open is None:
            return
        folder = self._folder(self._open) / "records" / f"{idx:08d}"
        name = f"{obj_id}_{'p' if pending else 'f'}"
        if (folder / f"{name}.rec").exists() or (folder / f"{name}.none").exists():
            return  # journaled already: the first overwrite is the one to keep
        folder.mkdir(parents=True, exist_ok=True)
        if not self.target.history_save_record(obj_id, idx, pending, folder / f"{name}.rec"):
            _put_item(folder, name, ".rec", None)

    def files_will_change(self, paths: "list[str] | list[Path]") -> None:
        """Keep what files hold before the step writes or removes them (mattes, mask prompts). Right
        after a step ended (nothing undone since), files still join it: a propagation's confidence
        report is written once its frames are done."""
        step = self._open or self._last_closed
        if step is None:
            return
        folder = self._folder(step) / "files"
        for path in paths:
            path = os.path.abspath(os.fspath(path))
            name = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:32]
            if (folder / f"{name}.path").exists():
                continue
            folder.mkdir(parents=True, exist_ok=True)
            try:
                data: bytes | None = Path(path).read_bytes()
            except FileNotFoundError:
                data = None
            _put_item(folder, name, ".bin", data)
            # written last: the entry is complete once its path is there
            write_bytes_atomic(folder / f"{name}.path", path.encode("utf-8", "surrogateescape"), durable=False)

    # --- undo and redo ----------------------------------------------------------------------

    def undo(self) -> tuple[str, list[int]]:
        """Undo the newest step: (its label, the frame indices whose records changed)."""
        self._check_idle()
        if not self._undo:
            raise HistoryError("nothing to undo")
        step = self._undo[-1]
        replacement, frames = self._swap(step)
        replacement.bytes = self._size(replacement)
        self._undo.pop()
        self._redo.insert(0, replacement)
        self._finish_swap(step)
        return step.label, frames

    def redo(self) -> tuple[str, list[int]]:
        """Redo the step undone last: (its label, the frame indices whose records changed)."""
        self._check_idle()
        if not self._redo:
            raise HistoryError("nothing to redo")
        step = self._redo[0]
        replacement, frames = self._swap(step)
        replacement.bytes = self._size(replacement)
        self._redo.pop(0)
        self._undo.append(replacement)
        self._finish_swap(step)
        return step.label, frames

    def _check_idle(self) -> None:
        if self._open is not None:
            raise HistoryError("a step is in progress (a propagation is running): finish or cancel it first")
        if self._swapping is not None:
            raise HistoryError("an undo or redo was interrupted: reopen the session to roll it back")

    def _finish_swap(self, done: Step) -> None:
        self._swapping = None
        self._last_closed = None
        self._write_index()
        shutil.rmtree(self._folder(done), ignore_errors=True)

    def _swap(self, step: Step) -> tuple[Step, list[int]]:
        """Put back every journaled item of `step`, journaling what the session holds now into a new
        step (the one that reverses it). The old step's folder is only read, so an interrupted swap
        is rolled back from the new one (`_roll_back`): an undo happens whole or not at all."""
        source = self._folder(step)
        replacement = Step(self._next_id, step.label)
        self._next_id += 1
        target = self._folder(replacement)
        target.mkdir(parents=True, exist_ok=True)
        write_json_atomic(target / "meta.json", self.target.history_meta(), indent=None)
        self._swapping = replacement
        self._write_index()
        try:
            frames = self._restore_from(source, into=target)
        except BaseException:
            self._roll_back()
            raise
        return replacement, frames

    def _restore_from(self, source: Path, *, into: Path | None) -> list[int]:
        """Make the session hold what `source` journaled; with `into`, journal what it holds now there
        first, item by item."""
        self.target.history_apply_meta(json.loads((source / "meta.json").read_text()))

        files = source / "files"
        for marker in sorted(files.glob("*.path")) if files.is_dir() else []:
            path = Path(marker.read_bytes().decode("utf-8", "surrogateescape"))
            if into is not None:
                saved = into / "files"
                saved.mkdir(parents=True, exist_ok=True)
                try:
                    current: bytes | None = path.read_bytes()
                except FileNotFoundError:
                    current = None
                _put_item(saved, marker.stem, ".bin", current)
                write_bytes_atomic(saved / marker.name, marker.read_bytes(), durable=False)
            journaled = _read_item(files, marker.stem, ".bin")
            if journaled is None:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(path, journaled)

        frames: list[int] = []
        records = source / "records"
        for frame_dir in sorted(records.iterdir()) if records.is_dir() else []:
            idx = int(frame_dir.name)
            frames.append(idx)
            for name in sorted({p.stem for p in frame_dir.iterdir() if p.suffix in (".rec", ".none")}):
                obj_text, kind = name.rsplit("_", 1)
                obj_id, pending = int(obj_text), kind == "p"
                if into is not None:
                    saved = into / "records" / frame_dir.name
                    saved.mkdir(parents=True, exist_ok=True)
                    if not self.target.history_save_record(obj_id, idx, pending, saved / f"{name}.rec"):
                        _put_item(saved, name, ".rec", None)
                self.target.history_restore_record(obj_id, idx, pending, _read_item(frame_dir, name, ".rec"))
        self.target.history_flush()
        return frames

    def _roll_back(self) -> None:
        """Undo an interrupted swap: what it journaled into the new step is what the session held."""
        replacement = self._swapping
        if replacement is None:
            return
        self._restore_from(self._folder(replacement), into=None)
        self._swapping = None
        self._write_index()
        shutil.rmtree(self._folder(replacement), ignore_errors=True)

    def recover(self) -> bool:
        """Roll back an undo or redo a killed process left half done (call once the session is
        loaded). True if there was one."""
        if self._swapping is None:
            return False
        self._roll_back()
        return True

    # --- what the session shows -------------------------------------------------------------

    def labels(self) -> tuple[list[str], list[str]]:
        """(steps to undo, oldest first; steps to redo, next first)."""
        return [s.label for s in self._undo], [s.label for s in self._redo]

    def before(self, idx: int) -> "tuple[dict[str, Any], dict[tuple[int, bool], bytes | None]] | None":
        """What the newest step that changed frame `idx` overwrote there: (the session's meta before
        it, {(object, pending): record bytes or None}), or None when no step changed the frame."""
        for step in reversed(self._undo):
            frame_dir = self._folder(step) / "records" / f"{idx:08d}"
            if not frame_dir.is_dir():
                continue
            meta = json.loads((self._folder(step) / "meta.json").read_text())
            records: dict[tuple[int, bool], bytes | None] = {}
            for name in {p.stem for p in frame_dir.iterdir() if p.suffix in (".rec", ".none")}:
                obj_text, kind = name.rsplit("_", 1)
                records[(int(obj_text), kind == "p")] = _read_item(frame_dir, name, ".rec")
            return meta, records
        return None


def _put_item(folder: Path, name: str, suffix: str, data: bytes | None) -> None:
    """`name<suffix>` holding `data`, or the empty marker `name.none` for "there was nothing"."""
    present, absent = folder / f"{name}{suffix}", folder / f"{name}.none"
    if data is None:
        write_bytes_atomic(absent, b"", durable=False)
        present.unlink(missing_ok=True)
    else:
        write_bytes_atomic(present, data, durable=False)
        absent.unlink(missing_ok=True)


def _read_item(folder: Path, name: str, suffix: str) -> bytes | None:
    path = folder / f"{name}{suffix}"
    if path.is_file():
        return path.read_bytes()
    if (folder / f"{name}.none").is_file():
        return None
    raise HistoryError(f"the undo journal in {folder} lacks {name}")


__all__ = ["History", "HistoryError", "Journaled", "MAX_HISTORY_STEPS", "Step"]
