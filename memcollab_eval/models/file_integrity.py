"""Writing and checking large files safely: atomic replacement, sha256 with a progress bar,
verification markers and a cross-process lock.

Why: an assembled model is trusted by every later run, so it must never be seen half-written
(temp file + fsync + rename), a verified file must not be re-hashed on every start-up (a
marker holding the hash with the file's size and mtime), and two processes starting together
must assemble it once (an advisory lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

CHUNK = 8 * 1024 * 1024
PROGRESS_MIN_BYTES = 64 * 1024 * 1024  # smaller files are hashed without a progress bar


def marker_path(path: Path) -> Path:
    """The small JSON file beside ``path`` that remembers a successful verification."""
    return path.with_name(path.name + ".sha256")


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def marker_matches(path: Path, sha256: str) -> bool:
    """True when ``path`` was verified against ``sha256`` and has not changed since (size+mtime).

    Why: hashing a 1 GB model costs seconds on every start-up; a stat costs nothing.
    """
    marker = marker_path(path)
    try:
        saved = json.loads(marker.read_text(encoding="utf-8"))
        return saved.get("sha256") == sha256 and {k: saved.get(k) for k in ("size", "mtime_ns")} == _stat_key(path)
    except (OSError, ValueError, AttributeError):
        return False


def write_marker(path: Path, sha256: str) -> None:
    """Record that ``path`` hashes to ``sha256`` at its current size and mtime (atomically)."""
    record = {"sha256": sha256, "file": path.name, **_stat_key(path)}
    atomic_write_bytes(marker_path(path), (json.dumps(record, indent=1) + "\n").encode())


def byte_progress(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not enabled or total < PROGRESS_MIN_BYTES,
        leave=False,
    )


def sha256_file(path: Path, progress: bool = False) -> str:
    """Hex sha256 of a file, read in chunks so memory stays flat for GB-sized models."""
    digest = hashlib.sha256()
    with open(path, "rb") as f, byte_progress(path.stat().st_size, f"verifying {path.name}", progress) as bar:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_target(dest: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """Yield a temp file in ``dest``'s directory; on success fsync it and rename it onto ``dest``.

    Why a sibling temp file: ``os.replace`` is only atomic within one filesystem, and readers
    must see either the old file or the complete new one, never a prefix. On any error the temp
    file (ours) is removed and ``dest`` is left untouched.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; a cache file should look like any other
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable; not all filesystems allow it
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(dest: Path, data: bytes) -> None:
    with atomic_target(dest) as (f, _):
        f.write(data)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Serialise assembly across processes (two evaluations starting together assemble once)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: atomic rename still keeps the file sound
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")  # noqa: SIM115  (held for the whole block)
    except OSError:  # read-only shared cache: nothing will be written there anyway
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
