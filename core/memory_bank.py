"""Per-frame tracking state of a shot, on disk with a small in-memory window.

Every (object, frame) that was prompted or tracked has a `FrameRecord`: its low-res mask logits,
object score, predicted IoU, object pointer and (once encoded) its memory features in bfloat16, as
the reference stores them. Records live in files under the session's state folder; an LRU window
keeps the records the next frames need (the 6 previous memories, the pointers of the last 15
frames and every keyframe), so RAM does not grow with the length of the shot.

`InMemoryStore` keeps everything in RAM instead (the reference's behaviour), for tests comparing
the two and for very short shots.
"""

from __future__ import annotations

import abc
import json
import os
import queue
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .fileio import fsync_folder, write_bytes_atomic

RECORD_FORMAT = 1


@dataclass
class FrameRecord:
    """The stored state of one object on one frame. Tensors stay on the device that made them (the
    window a GPU session works from lives in GPU memory; reading one needs no upload and making one
    no sync); records read back from disk are on the CPU until moved with `to`."""

    lowres: torch.Tensor  # 1*1*s*s float32 logits (after hole filling)
    score: torch.Tensor  # 1*1 float32 object-score logit
    obj_ptr: torch.Tensor  # 1*C float32 object pointer
    iou: torch.Tensor  # 1 float32 predicted IoU of the chosen mask (nan when not predicted)
    keyframe: bool  # a conditioning frame (received prompts)
    tracked: bool  # propagation went over this frame (a new prompt here is a correction, not a first prompt)
    reverse: bool  # tracked backward (decides which neighbours form its memory on a correction)
    memory: torch.Tensor | None = None  # 1*D*h*w bfloat16, None until encoded

    def nbytes(self) -> int:
        total = self.lowres.nbytes + self.score.nbytes + self.obj_ptr.nbytes
        return total + (self.memory.nbytes if self.memory is not None else 0)

    def iou_value(self) -> float:
        return float(self.iou.reshape(-1)[0])

    def to(self, device: torch.device) -> "FrameRecord":
        """The same record with its tensors on `device` (asynchronous from pinned memory)."""

        def move(t: torch.Tensor) -> torch.Tensor:
            if t.device == device:
                return t
            if device.type == "cuda" and t.device.type == "cpu" and torch.cuda.is_available():
                return t.pin_memory().to(device, non_blocking=True)
            return t.to(device)

        return replace(self, lowres=move(self.lowres), score=move(self.score), obj_ptr=move(self.obj_ptr),
                       iou=move(self.iou), memory=None if self.memory is None else move(self.memory))

    def on_host(self) -> "FrameRecord":
        """A copy on the CPU (waits for the device: call it off the compute thread)."""
        return self.to(torch.device("cpu"))


@dataclass
class ObjectIndex:
    """What exists for one object: small per-frame flags kept in RAM (a few bytes per frame)."""

    committed: dict[int, bool] = field(default_factory=dict)  # frame -> keyframe
    pending: set[int] = field(default_factory=set)  # prompted frames whose memory is not encoded yet
    tracked: dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse

    def keyframes(self) -> list[int]:
        return sorted(f for f, key in self.committed.items() if key)


class RecordStore(abc.ABC):
    """Where records live. Keys: (object id, frame index, pending)."""

    @abc.abstractmethod
    def put(self, obj_id: int, frame: int, record: FrameRecord, *, pending: bool) -> None:
        """Store (or replace) a record."""

    @abc.abstractmethod
    def get(self, obj_id: int, frame: int, *, pending: bool) -> FrameRecord:
        """A stored record (KeyError or OSError when absent)."""

    @abc.abstractmethod
    def delete(self, obj_id: int, frame: int, *, pending: bool) -> None:
        """Forget a record (no error when absent)."""

    @abc.abstractmethod
    def delete_object(self, obj_id: int) -> None:
        """Forget every record of an object."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget everything."""

    @abc.abstractmethod
    def peek_bytes(self, obj_id: int, frame: int, *, pending: bool) -> bytes | None:
        """A stored record as its file bytes (`encode_record`), or None when absent; leaves the
        in-memory window as it is (the undo journal reads what a step is about to overwrite)."""

    def flush(self) -> None:
        """Make every record durable (no-op in memory)."""

    def close(self) -> None:
        """Release resources."""

    def scan(self) -> Iterator[tuple[int, int, bool, dict[str, bool]]]:
        """(object, frame, pending, record flags) for every stored record (used to rebuild indexes)."""
        return iter(())


class InMemoryStore(RecordStore):
    def __init__(self) -> None:
        self._records: dict[tuple[int, int, bool], FrameRecord] = {}

    def put(self, obj_id: int, frame: int, record: FrameRecord, *, pending: bool) -> None:
        self._records[(obj_id, frame, pending)] = record

    def get(self, obj_id: int, frame: int, *, pending: bool) -> FrameRecord:
        return self._records[(obj_id, frame, pending)]

    def delete(self, obj_id: int, frame: int, *, pending: bool) -> None:
        self._records.pop((obj_id, frame, pending), None)

    def peek_bytes(self, obj_id: int, frame: int, *, pending: bool) -> bytes | None:
        record = self._records.get((obj_id, frame, pending))
        return None if record is None else encode_record(record)

    def delete_object(self, obj_id: int) -> None:
        for key in [k for k in self._records if k[0] == obj_id]:
            del self._records[key]

    def clear(self) -> None:
        self._records.clear()

    def scan(self) -> Iterator[tuple[int, int, bool, dict[str, bool]]]:
        for (obj, frame, pending), rec in list(self._records.items()):
            yield obj, frame, pending, {"keyframe": rec.keyframe, "tracked": rec.tracked, "reverse": rec.reverse}


class DiskStore(RecordStore):
    """One small binary file per record under `root/obj_<id>/`, with an LRU window in memory.

    The window holds `window` records per object: tracking a frame needs the last 15 frames'
    pointers and the last 6 frames' memories, all recent. Keyframe records stay in the window
    besides (every later frame needs them). On a GPU the window stays in GPU memory (`device`):
    records read back from disk are moved there.

    Tracked frames' files are written on a background thread (the compute thread never waits for the
    disk or for a device-to-host copy), in order with deletions; `flush` waits for them, and a
    prompt's record is written before `put` returns. Files are written
    atomically (temporary name, then rename), so a crash never leaves a partial record under its
    final name.
    """

    def __init__(self, root: Path, *, window: int = 24, device: torch.device | None = None,
                 max_queued: int = 64) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.window = window
        self.device = device
        self._cache: OrderedDict[tuple[int, int, bool], FrameRecord] = OrderedDict()
        # records queued for writing, readable until their file exists
        self._unwritten: dict[tuple[int, int, bool], FrameRecord] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, tuple[int, int, bool] | int | None, FrameRecord | None]] = queue.Queue(
            maxsize=max_queued
        )
        self._failure: BaseException | None = None
        self._writer: threading.Thread | None = None
        # deletions queued and not yet applied: until then a file on disk may be stale
        self._deletes_queued = 0

    def _path(self, obj_id: int, frame: int, pending: bool) -> Path:
        return self.root / f"obj_{obj_id}" / f"{'p' if pending else 'f'}{frame:08d}.rec"

    # --- the writer thread ---------------------------------------------------------------------

    def _submit(self, op: str, key: "tuple[int, int, bool] | int | None", record: FrameRecord | None) -> None:
        self._raise_failure()
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_loop, name="samroto-records", daemon=True)
            self._writer.start()
        self._queue.put((op, key, record))

    def _write_loop(self) -> None:
        while True:
            op, key, record = self._queue.get()
            try:
                if op == "stop":
                    return
                self._apply(op, key, record)
            except BaseException as exc:  # kept and raised on the compute thread: nothing is lost silently
                self._failure = exc
            finally:
                self._queue.task_done()

    def _apply(self, op: str, key: "tuple[int, int, bool] | int | None", record: FrameRecord | None) -> None:
        if op == "put":
            assert isinstance(key, tuple) and record is not None
            path = self._path(*key)
            path.parent.mkdir(exist_ok=True)
            _write_record(path, record)  # the device-to-host copy happens here, off the compute thread
            with self._lock:
                if self._unwritten.get(key) is record:
                    del self._unwritten[key]
        elif op == "delete":
            assert isinstance(key, tuple)
            self._path(*key).unlink(missing_ok=True)
        elif op == "delete_object":
            shutil.rmtree(self.root / f"obj_{key}", ignore_errors=True)
        elif op == "clear":
            for child in self.root.glob("obj_*"):
                shutil.rmtree(child, ignore_errors=True)
        if op in ("delete", "delete_object", "clear"):
            with self._lock:
                self._deletes_queued -= 1

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise OSError(f"writing session records under {self.root} failed: {failure}") from failure

    def _drain(self) -> None:
        if self._writer is not None and self._writer.is_alive():
            self._queue.join()
        self._raise_failure()

    # --- the store -----------------------------------------------------------------------------

    def put(self, obj_id: int, frame: int, record: FrameRecord, *, pending: bool) -> None:
        key = (obj_id, frame, pending)
        with self._lock:
            self._unwritten[key] = record
            self._cache[key] = record
            self._cache.move_to_end(key)
            self._evict()
        self._submit("put", key, record)
        if pending:
            # a prompt's record is on disk before the call returns (prompts are rare; a restart
            # must find every prompt the artist saw answered)
            self._drain()

    def get(self, obj_id: int, frame: int, *, pending: bool) -> FrameRecord:
        key = (obj_id, frame, pending)
        with self._lock:
            record = self._cache.get(key) or self._unwritten.get(key)
            if record is not None:
                if key in self._cache:
                    self._cache.move_to_end(key)
                return record
        record = _read_record(self._path(obj_id, frame, pending))
        if self.device is not None:
            record = record.to(self.device)
        with self._lock:
            self._cache[key] = record
            self._evict()
        return record

    def peek_bytes(self, obj_id: int, frame: int, *, pending: bool) -> bytes | None:
        key = (obj_id, frame, pending)
        with self._lock:
            record = self._cache.get(key) or self._unwritten.get(key)
            stale_files = self._deletes_queued > 0
        if record is not None:
            return encode_record(record)
        if stale_files:
            self._drain()  # a queued deletion may be about to remove the file
        try:
            return self._path(*key).read_bytes()  # the bytes `encode_record` wrote
        except FileNotFoundError:
            return None

    def link_record(self, obj_id: int, frame: int, *, pending: bool, dest: Path) -> bool | None:
        """Hard-link a record's file to `dest` when the file is what the store holds (nothing queued for
        it): True linked, False no record, None when the bytes must be copied instead (`peek_bytes`).
        Files are only ever replaced by a rename, never changed in place, so the link keeps the old
        record whatever is written later: the undo journal costs no copy."""
        key = (obj_id, frame, pending)
        with self._lock:
            if key in self._unwritten or self._deletes_queued > 0:
                return None
        try:
            os.link(self._path(*key), dest)
            return True
        except FileNotFoundError:
            return False if not dest.exists() else None
        except OSError:
            return None  # a file system without hard links

    def _evict(self) -> None:
        counts: dict[int, int] = {}
        for obj_id, _, _ in self._cache:
            counts[obj_id] = counts.get(obj_id, 0) + 1
        for key in list(self._cache):  # oldest first
            obj_id = key[0]
            if counts[obj_id] > self.window and not self._cache[key].keyframe:
                del self._cache[key]
                counts[obj_id] -= 1

    def delete(self, obj_id: int, frame: int, *, pending: bool) -> None:
        key = (obj_id, frame, pending)
        with self._lock:
            self._cache.pop(key, None)
            self._unwritten.pop(key, None)
            self._deletes_queued += 1
        self._submit("delete", key, None)

    def delete_object(self, obj_id: int) -> None:
        with self._lock:
            for key in [k for k in self._cache if k[0] == obj_id]:
                del self._cache[key]
            for key in [k for k in self._unwritten if k[0] == obj_id]:
                del self._unwritten[key]
            self._deletes_queued += 1
        self._submit("delete_object", obj_id, None)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self._unwritten.clear()
            self._deletes_queued += 1
        self._submit("clear", None, None)

    def flush(self) -> None:
        """Wait for every queued write, then make the folder entries durable."""
        self._drain()
        for folder in [self.root, *self.root.glob("obj_*")]:
            fsync_folder(folder)

    def close(self) -> None:
        try:
            self._drain()
        finally:
            if self._writer is not None and self._writer.is_alive():
                self._queue.put(("stop", None, None))
                self._writer.join(timeout=60)
            self._writer = None

    def scan(self) -> Iterator[tuple[int, int, bool, dict[str, bool]]]:
        self._drain()
        for folder in sorted(self.root.glob("obj_*")):
            obj_id = int(folder.name[4:])
            for path in sorted(folder.glob("*.rec")):
                try:
                    header = _read_header(path)
                except (OSError, ValueError):
                    continue  # an unreadable record is as if the frame was never tracked
                flags = {k: bool(header[k]) for k in ("keyframe", "tracked", "reverse")}
                yield obj_id, int(path.stem[1:]), path.stem[0] == "p", flags

    def cached_records(self) -> int:
        return len(self._cache)


# --- record files ----------------------------------------------------------------------------------
# A record file: one JSON header line (fields, dtypes, shapes, flags), then the raw tensor bytes.

_DTYPES = {"float32": (np.float32, torch.float32), "bfloat16": (np.uint16, torch.bfloat16)}


def _write_record(path: Path, record: FrameRecord) -> None:
    # no fsync per frame: a killed process loses nothing the kernel has; `flush()` makes it durable
    write_bytes_atomic(path, encode_record(record), durable=False)


def encode_record(record: FrameRecord) -> bytes:
    """A record as the bytes of its file (exact: decoding gives the same tensors bit for bit)."""
    tensors = {"lowres": record.lowres, "score": record.score, "obj_ptr": record.obj_ptr}
    if record.memory is not None:
        tensors["memory"] = record.memory
    fields, blobs = [], []
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        dtype = "bfloat16" if tensor.dtype == torch.bfloat16 else "float32"
        array = tensor.view(torch.uint16).numpy() if dtype == "bfloat16" else tensor.float().numpy()
        fields.append({"name": name, "dtype": dtype, "shape": list(tensor.shape)})
        blobs.append(array.tobytes())
    header = {
        "format": RECORD_FORMAT,
        "fields": fields,
        "iou": None if np.isnan(record.iou_value()) else record.iou_value(),
        "keyframe": record.keyframe,
        "tracked": record.tracked,
        "reverse": record.reverse,
    }
    return b"".join([json.dumps(header).encode() + b"\n", *blobs])


def _read_header(path: Path) -> dict:
    with open(path, "rb") as f:
        return json.loads(f.readline())


def _read_record(path: Path) -> FrameRecord:
    return decode_record(path.read_bytes(), str(path))


def decode_record(data: bytes, where: str = "record") -> FrameRecord:
    """The record `encode_record` made these bytes from (tensors on the CPU)."""
    newline = data.index(b"\n")
    header = json.loads(data[:newline])
    if header.get("format") != RECORD_FORMAT:
        raise ValueError(f"{where}: record format {header.get('format')} is not {RECORD_FORMAT}")
    offset = newline + 1
    tensors: dict[str, torch.Tensor] = {}
    for spec in header["fields"]:
        np_dtype, torch_dtype = _DTYPES[spec["dtype"]]
        count = int(np.prod(spec["shape"])) if spec["shape"] else 1
        array = np.frombuffer(data, dtype=np_dtype, count=count, offset=offset).reshape(spec["shape"])
        offset += array.nbytes
        tensor = torch.from_numpy(array.copy())
        tensors[spec["name"]] = tensor.view(torch_dtype) if torch_dtype == torch.bfloat16 else tensor
    iou = header["iou"]
    return FrameRecord(
        lowres=tensors["lowres"],
        score=tensors["score"],
        obj_ptr=tensors["obj_ptr"],
        iou=torch.tensor([float("nan") if iou is None else float(iou)], dtype=torch.float32),
        keyframe=bool(header["keyframe"]),
        tracked=bool(header["tracked"]),
        reverse=bool(header["reverse"]),
        memory=tensors.get("memory"),
    )
