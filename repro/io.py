"""Files: atomic writes (every artifact appears whole or not at all: temp file + rename),
content fingerprints, and the run-directory lock."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give artifacts the usual mode
        os.replace(tmp, path)
    except OSError as err:
        # A full disk surfaces as ENOSPC or as a library's "N requested and M written": say which
        # file, and how much room is left.
        free = shutil.disk_usage(path.parent).free / 1e9
        raise OSError(f"{path}: could not be written ({' '.join(str(err).split())}); {free:.1f} GB free "
                      f"on its file system") from None
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; once the block succeeds it replaces `path`
    whole (the old folder is renamed away, then removed), so readers see the old or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def link_missing_files(source: Path, target: Path) -> int:
    """Hard links in `target` to every file of `source` that `target` lacks (copies, written whole,
    across file systems), skipping hidden and *.partial paths (a run's lock, unfinished models).
    Safe because the kit never writes through a file: it replaces it (atomic_path). Returns the
    number of files linked."""
    linked = 0
    for path in sorted(source.rglob("*")) if source.is_dir() else []:
        relative = path.relative_to(source)
        if not path.is_file() or path.is_symlink() or any(part.endswith(".partial") or part.startswith(".")
                                                          for part in relative.parts):
            continue
        destination = target / relative
        if destination.exists():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, destination)
        except OSError:     # another file system: a copy (its new time makes phantom data new)
            write_bytes(destination, path.read_bytes())
        linked += 1
    return linked


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_npz(path: str | os.PathLike, *, compressed: bool = True, **arrays: np.ndarray) -> Path:
    """An .npz written atomically (np.savez appends .npz to names without it: use a handle);
    `compressed=False` for arrays that do not compress (trained weights), which write and read faster."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            (np.savez_compressed if compressed else np.savez)(handle, **arrays)
    return Path(path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json_object(path: str | os.PathLike) -> dict:
    """A JSON file that holds one object (a record, a state, a stamp): its dict. ValueError naming
    the file when it cannot be read, is not JSON, or holds something else (null, a list, a number):
    every such record is damaged alike."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot be read ({' '.join(str(err).split())})") from None
    return json_object(text, path)


def json_object(text: str, where: str | os.PathLike) -> dict:
    """`text` parsed as a JSON object; ValueError naming `where` otherwise (see read_json_object)."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{where}: not valid JSON ({err})") from None
    if not isinstance(value, dict):
        kind = "null" if value is None else {list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")
        raise ValueError(f"{where}: expected a JSON object, got {kind}")
    return value


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(value) -> str:
    """SHA-256 of a JSON-able value (keys sorted): what an artifact was made from, as one string."""
    text = json.dumps(value, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class RunLockedError(OSError):
    """Another process holds the run directory; the message names it."""


class RunLock:
    """An exclusive lock on a run directory, held while a run writes into it.

    flock on <run_dir>/.lock: the operating system releases it when the holder exits, so a lock
    left by a killed run never blocks the next one. The file records who holds it (pid, host,
    command, start time), for the message a second run gets.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._handle = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunLockedError(f"{self.path.parent} is in use by {holder}; wait for it to finish "
                                 "or use another --run-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')} ({' '.join(sys.argv[:4])})\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
