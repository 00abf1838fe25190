"""The manifest of a generation, and the verification of a generation against it.

The manifest is the offline-computed summary that the service loads: format
version, key id of the pepper, sources with their counts and bad-row counts (counts
only, never content), shard layout, Bloom parameters and an xxh3-64 checksum of every
file. xxhash is fine here: a checksum detects corruption, it is not a secret.

The manifest also checksums itself (`manifest_xxh3_64`, over its own bytes with that
value zeroed): otherwise a flipped digit in a count or a checksum would still parse
as valid JSON and go unnoticed. Every byte of the file is covered, whitespace too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson
import xxhash

from indexer.index.bloom import HEADER_BYTES, FingerprintBloom
from indexer.index.generation import MANIFEST, SHARD_KINDS, shard_file
from indexer.index.shards import shard_of
from indexer.index.similar import SIMILAR_KINDS, verify_similar_shard

__all__ = [
    "FORMAT",
    "SELF_CHECKSUM",
    "ManifestError",
    "checksum_file",
    "load_manifest",
    "manifest_bytes",
    "verify_generation",
    "write_manifest",
]

# 2: the first-name weak keys and the similar tier (docs/matching.md).
FORMAT: Final = "exposure-index/2"
SELF_CHECKSUM: Final = "manifest_xxh3_64"
_READ_CHUNK: Final = 8 << 20
_ZEROS: Final = "0" * 16


class ManifestError(Exception):
    """A manifest that is missing, unreadable or not of this format."""


def checksum_bytes(data: bytes | memoryview) -> str:
    return xxhash.xxh3_64_hexdigest(data)


def checksum_file(path: Path) -> str:
    h = xxhash.xxh3_64()
    with path.open("rb") as stream:
        while chunk := stream.read(_READ_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _self_field(digest: str) -> bytes:
    # Top-level keys sit at two spaces of indentation after a newline; a string value
    # cannot hold a raw newline, so this is found only where the field itself is.
    return f'\n  "{SELF_CHECKSUM}": "{digest}"'.encode()


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The manifest as written: indented JSON, sorted keys, checksummed."""
    body = {key: value for key, value in manifest.items() if key != SELF_CHECKSUM}
    body[SELF_CHECKSUM] = _ZEROS
    raw = orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    return raw.replace(_self_field(_ZEROS), _self_field(checksum_bytes(raw)), 1)


def write_manifest(generation: Path, manifest: dict[str, Any]) -> None:
    tmp = generation / (MANIFEST + ".tmp")
    tmp.write_bytes(manifest_bytes(manifest))
    os.replace(tmp, generation / MANIFEST)


_REQUIRED: Final = (
    "format", "key_id", "generation", "sources", "shards", "files", "bloom", SELF_CHECKSUM,
)


def load_manifest(generation: Path) -> dict[str, Any]:
    """The manifest of `generation`, checked against its own checksum and shape."""
    path = generation / MANIFEST
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        manifest = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON (corrupted?): rebuild the index") from exc
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path} is not a JSON object")
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        raise ManifestError(f"{path} lacks {', '.join(missing)} (corrupted?)")
    if manifest["format"] != FORMAT:
        raise ManifestError(
            f"{path} is of format {manifest['format']!r}; this version reads {FORMAT!r}"
        )
    if not _self_checksum_ok(raw, manifest[SELF_CHECKSUM]):
        raise ManifestError(f"{path}: checksum mismatch (corrupted): rebuild the index")
    try:
        _check_shapes(manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{path} is malformed: {exc}") from exc
    return manifest


def _self_checksum_ok(raw: bytes, recorded: object) -> bool:
    if not isinstance(recorded, str) or len(recorded) != len(_ZEROS):
        return False
    field = _self_field(recorded)
    if raw.count(field) != 1:
        return False
    return checksum_bytes(raw.replace(field, _self_field(_ZEROS))) == recorded


def _int(value: object, what: str, minimum: int = 0) -> int:
    # bool is an int subclass: a `true` count is as malformed as a string one.
    if type(value) is not int or value < minimum:
        raise ValueError(f"{what} is not an integer >= {minimum}")
    return value


def _str(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} is not a non-empty string")
    return value


def _check_shapes(manifest: dict[str, Any]) -> None:
    """Every field a reader relies on has the type it expects: a manifest that passes
    here never makes the reader, `verify` or the service fail on a missing key or a
    wrong type."""
    _str(manifest["generation"], "generation")
    _str(manifest["key_id"], "key_id")
    shards = manifest["shards"]
    if not isinstance(shards, dict):
        raise ValueError("shards is not an object")
    count = _int(shards.get("count"), "shards.count", 1)
    per_shard = shards.get("fingerprints")
    if not isinstance(per_shard, list) or len(per_shard) != count:
        raise ValueError("shard count and per-shard fingerprint counts disagree")
    for n in per_shard:
        _int(n, "shards.fingerprints[]")
    totals = manifest.get("totals")
    if not isinstance(totals, dict):
        raise ValueError("totals is not an object")
    for key in ("rows", "fingerprints", "bad_rows"):
        _int(totals.get(key), f"totals.{key}")
    if totals["fingerprints"] != sum(per_shard):
        raise ValueError("totals.fingerprints is not the sum of the shards")
    sources = manifest["sources"]
    if not isinstance(sources, list) or not 1 <= len(sources) <= 255:
        raise ValueError("sources is not a list of 1 to 255 sources")
    for source in sources:
        if not isinstance(source, dict):
            raise ValueError("a source is not an object")
        for key in ("id", "title", "breach_date"):
            _str(source.get(key), f"source {key}")
        for key in ("rows", "records_indexed"):
            _int(source.get(key, 0), f"source {key}")
        if not isinstance(source.get("description", ""), str):
            raise ValueError("source description is not a string")
    files = manifest["files"]
    if not isinstance(files, dict):
        raise ValueError("files is not an object")
    for name, entry in files.items():
        if ".." in name or name.startswith("/"):
            raise ValueError("a file name escapes the generation directory")
        if not isinstance(entry, dict):
            raise ValueError("a file entry is not an object")
        _int(entry.get("bytes"), "file bytes")
        _str(entry.get("xxh3_64"), "file checksum")
    bloom = manifest["bloom"]
    if not isinstance(bloom, dict) or not isinstance(bloom.get("error_rate"), float):
        raise ValueError("bloom.error_rate is not a number")
    similar = manifest.get("similar")
    if not isinstance(similar, dict) or not isinstance(similar.get("shards"), list) or len(
            similar["shards"]) != count:
        raise ValueError("similar.shards is not a list of one entry per shard")
    for entry in similar["shards"]:
        if not isinstance(entry, dict):
            raise ValueError("a similar shard entry is not an object")
        for key in ("entries", "bucket_bits", "row_bits", "rows"):
            _int(entry.get(key), f"similar.shards[].{key}")
        if entry["bucket_bits"] > 24 or not 1 <= entry["row_bits"] <= 12:
            raise ValueError("a similar shard's bucket or row bits are out of range")


def verify_generation(generation: Path, *, deep: bool = True) -> list[str]:
    """Every fault of a generation (empty when sound). Never raises for a bad index.

    Checks the manifest, each file's size and checksum, and the structure: sorted
    unique fingerprints in the right shard, meta rows matching, Bloom headers matching
    and (deep) every fingerprint present in its Bloom filter.
    """
    try:
        manifest = load_manifest(generation)
    except ManifestError as exc:
        return [str(exc)]
    faults: list[str] = []
    expected = {
        shard_file(i, kind) for i in range(manifest["shards"]["count"])
        for kind in (*SHARD_KINDS, *SIMILAR_KINDS)
    }
    listed = set(manifest["files"])
    if listed != expected:
        faults.append("the manifest does not list exactly the shard files of its layout")
    present = {
        path.relative_to(generation).as_posix()
        for path in generation.rglob("*") if not path.is_dir()
    }
    for name in sorted(present - listed - _section_files(manifest) - {MANIFEST}):
        # A leftover spill file or anything else that is not part of the generation.
        faults.append(f"{name}: not part of the generation")
    for name in sorted(listed & expected):
        faults.extend(_verify_file(generation, name, manifest["files"][name]))
    if faults:
        return faults
    n_sources = len(manifest["sources"])
    for shard in range(manifest["shards"]["count"]):
        faults.extend(_verify_shard(generation, manifest, shard, n_sources, deep))
        faults.extend(verify_similar_shard(
            generation, shard, manifest["similar"]["shards"][shard], n_sources))
    return faults


def _section_files(manifest: dict[str, Any]) -> set[str]:
    """Files that an optional section lists and verifies itself (the `private` part of
    docs/design.md §7 lists `private/*` in `manifest["private"]["files"]`)."""
    names: set[str] = set()
    for section in manifest.values():
        if isinstance(section, dict) and isinstance(section.get("files"), dict):
            names.update(name for name in section["files"] if isinstance(name, str))
    return names


def _verify_file(generation: Path, name: str, entry: dict[str, Any]) -> Iterable[str]:
    path = generation / name
    try:
        size = path.stat().st_size
    except OSError:
        yield f"{name}: missing"
        return
    if size != int(entry["bytes"]):
        yield f"{name}: size {size}, manifest says {entry['bytes']} (truncated?)"
    elif checksum_file(path) != entry["xxh3_64"]:
        yield f"{name}: checksum mismatch (corrupted)"


def _verify_shard(
    generation: Path, manifest: dict[str, Any], shard: int, n_sources: int, deep: bool
) -> Iterable[str]:
    count = int(manifest["shards"]["fingerprints"][shard])
    fps = np.fromfile(generation / shard_file(shard, "fp"), dtype="<u8")
    if len(fps) != count:
        yield f"shard {shard}: {len(fps)} fingerprints, manifest says {count}"
        return
    if count and not bool(np.all(fps[1:] > fps[:-1])):
        yield f"shard {shard}: fingerprints not sorted and unique"
    if count and not bool(np.all(shard_of(fps, manifest["shards"]["count"]) == shard)):
        yield f"shard {shard}: fingerprints of another shard"
    meta_size = (generation / shard_file(shard, "meta")).stat().st_size
    if meta_size != count * n_sources:
        yield f"shard {shard}: meta holds {meta_size} bytes, expected {count * n_sources}"
    bloom_path = generation / shard_file(shard, "bloom")
    with bloom_path.open("rb") as stream:
        try:
            bloom = FingerprintBloom.fromfile(stream)
        except ValueError as exc:
            yield f"shard {shard}: Bloom filter unreadable ({exc})"
            return
    if bloom.count != count:
        yield f"shard {shard}: Bloom filter counts {bloom.count}, expected {count}"
    elif deep and count:
        from indexer.index.bloom import bloom_contains

        bits = np.fromfile(bloom_path, dtype=np.uint8, offset=HEADER_BYTES)
        if not bool(bloom_contains(bits, fps, bloom.num_slices, bloom.bits_per_slice).all()):
            yield f"shard {shard}: Bloom filter misses some fingerprints"
