"""The evaluation sets shipped inside the package, and whether the Hugging Face hub can be reached.

GSM8K test, MATH500, MBPP (all 974 rows, and its 500-row test split) and HumanEval live in
``memcollab_eval/data/`` (provenance, licenses and sha256 in its README.md). They are found through
:mod:`importlib.resources`, so they work from a wheel, an editable install or a checkout alike, and each
file's sha256 is checked once per process before it is used. An unset ``data_dir`` means these files.

The YAML tasks in ``tasks/`` load the hub's copy when the hub can be reached and these files when it
cannot: :func:`offline_reason` says why a run counts as offline (an environment variable, checked
first, or a failed connection to the hub's host with a short timeout), so nobody waits through
``datasets``' retries. This module imports nothing of the project but its error type.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import socket
from functools import lru_cache
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from memcollab_eval.errors import UsageError

PACKAGE = "memcollab_eval"
DATA_FOLDER = "data"
# relative path -> (rows, bytes, sha256); memcollab_eval/data/README.md repeats the table with provenance
PACKAGED_FILES: dict[str, tuple[int, int, str]] = {
    "gsm8k/test.jsonl": (1319, 749738, "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),
    "math500/test.jsonl": (500, 446564, "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132"),
    "mbpp/mbpp.jsonl": (974, 563743, "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f"),
    "mbpp/test.jsonl": (500, 293373, "9bcaa67d5c2943e95eb9d9127e844f0551a77ac910c664aa45a4ebd75d239bd9"),
    "humaneval/HumanEval.jsonl": (164, 214438, "1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2"),
}

# Any of these set to 1/true/yes/on keeps the YAML tasks off the hub (the last two are the hub's own switches).
OFFLINE_ENV = ("MEMCOLLAB_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
HUB_PROBE_TIMEOUT = 2.0  # seconds for one TCP connection to the hub's host
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"

_extracted = contextlib.ExitStack()  # only used if the package is not on a file system (a zip)
atexit.register(_extracted.close)


class PackagedDataError(UsageError):
    """A shipped evaluation file is missing or differs from its sha256: the installation is damaged."""


def _resource(relative: str):
    node = resources.files(PACKAGE) / DATA_FOLDER
    for part in relative.split("/"):
        node = node / part
    return node


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (the packaged data, the packaged encoder's files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=None)
def packaged_file(relative: str) -> Path:
    """The shipped copy of ``relative`` (e.g. ``gsm8k/test.jsonl``) as a file on disk, its sha256
    checked on the first call of the process."""
    if relative not in PACKAGED_FILES:
        raise KeyError(f"{relative!r} is not shipped with the package; shipped: {sorted(PACKAGED_FILES)}")
    resource = _resource(relative)
    if not resource.is_file():
        raise PackagedDataError(f"the packaged evaluation file {PACKAGE}/{DATA_FOLDER}/{relative} is missing: "
                                "reinstall memcollab-eval (pip install -e . from a checkout)")
    path = Path(_extracted.enter_context(resources.as_file(resource)))
    expected = PACKAGED_FILES[relative][2]
    found = sha256_file(path)
    if found != expected:
        raise PackagedDataError(f"the packaged evaluation file {path} has sha256 {found}, expected {expected}: "
                                "the installation is damaged or the file was edited; reinstall memcollab-eval")
    return path


def packaged_root() -> Path:
    """The folder of the shipped files, laid out like a ``data_dir`` (``gsm8k/test.jsonl``, ...), every
    file checked. For commands that take a directory (``bank check --data-dir``)."""
    paths = {relative: packaged_file(relative) for relative in PACKAGED_FILES}
    root = paths["gsm8k/test.jsonl"].parent.parent
    if any(path != root / relative for relative, path in paths.items()):
        raise PackagedDataError(f"the packaged evaluation files are not in one folder on disk ({sorted(paths.values())})"
                                "; install memcollab-eval unzipped")
    return root


def data_file(relative: str, data_dir: str | os.PathLike | None) -> Path:
    """``relative`` under ``data_dir``, or the package's own checked copy when ``data_dir`` is unset.
    The caller decides what a missing local file means."""
    if data_dir:
        return Path(data_dir).expanduser().resolve() / relative
    return packaged_file(relative)


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def offline_env() -> str | None:
    """The first of :data:`OFFLINE_ENV` set to a true value, else None."""
    return next((name for name in OFFLINE_ENV if _truthy(os.environ.get(name, ""))), None)


def hub_endpoint() -> tuple[str, int]:
    """(host, port) of the hub ``datasets`` would contact (``HF_ENDPOINT``, else huggingface.co)."""
    parts = urlsplit(os.environ.get("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT)
    return parts.hostname or "huggingface.co", parts.port or (80 if parts.scheme == "http" else 443)


@lru_cache(maxsize=None)
def hub_unreachable_reason(timeout: float = HUB_PROBE_TIMEOUT) -> str | None:
    """Why one TCP connection to the hub's host failed within ``timeout`` s, or None when it
    connected (asked once per process)."""
    host, port = hub_endpoint()
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"cannot connect to {host}:{port} within {timeout:g} s ({type(exc).__name__}: {exc})"
    return None


def offline_reason(asked: bool = False) -> str | None:
    """Why the hub is not to be used, or None when it is reachable and nobody asked to stay off it.
    ``asked`` is a caller's own switch (the ``memcollab_offline`` metadata key of the YAML tasks)."""
    if asked:
        return "asked to stay offline (memcollab_offline)"
    name = offline_env()
    if name is not None:
        return f"{name}={os.environ[name]}"
    unreachable = hub_unreachable_reason()
    return None if unreachable is None else f"the Hugging Face hub is unreachable: {unreachable}"
