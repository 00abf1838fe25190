"""FingerprintBloom: pybloom-live's scalar `add`/`in` and the numpy path that the builder
and the reader use set and test exactly the same bits, and the file the builder writes
is read back by pybloom-live's own `fromfile`."""

from __future__ import annotations

import copy
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import Breach
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.index.bloom import HEADER_BYTES, FingerprintBloom, bloom_contains
from indexer.index.generation import current_generation

U64 = st.integers(min_value=0, max_value=2**64 - 1)


def _scalar(fingerprints: list[int], capacity: int, error_rate: float) -> FingerprintBloom:
    bloom = FingerprintBloom(capacity, error_rate)
    for fingerprint in fingerprints:
        bloom.add(fingerprint, skip_check=True)
    return bloom


def _bits(bloom: FingerprintBloom) -> np.ndarray:
    return np.frombuffer(bloom.bitarray.tobytes(), dtype=np.uint8)


@pytest.mark.parametrize("size", [0, 1, 2, 1000, 30_000])
@pytest.mark.parametrize("error_rate", [0.01, 0.001, 0.3])
def test_vectorised_build_sets_the_bits_of_scalar_adds(size: int, error_rate: float) -> None:
    fps = np.unique(np.random.default_rng(size).integers(0, 2**64 - 1, size, dtype=np.uint64))
    vector = FingerprintBloom.build(fps, error_rate)
    scalar = _scalar(fps.tolist(), max(len(fps), 1), error_rate)
    assert (vector.num_slices, vector.bits_per_slice) == (scalar.num_slices, scalar.bits_per_slice)
    assert vector.bitarray == scalar.bitarray
    assert len(vector) == len(scalar) == len(fps)


def test_scalar_in_and_vectorised_contains_agree() -> None:
    rng = np.random.default_rng(7)
    stored = np.unique(rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64))
    bloom = FingerprintBloom.build(stored, 0.05)
    probes = np.concatenate([stored, rng.integers(0, 2**64 - 1, 20_000, dtype=np.uint64)])
    vector = bloom_contains(_bits(bloom), probes, bloom.num_slices, bloom.bits_per_slice)
    scalar = [int(fp) in bloom for fp in probes.tolist()]
    assert vector.tolist() == scalar
    assert all(scalar[: len(stored)])
    # A 5% filter lets some strangers through, and not too many.
    false_positives = sum(scalar[len(stored) :]) / 20_000
    assert 0.005 < false_positives < 0.1
    # numpy scalars work too (and do not overflow in the hashing).
    assert stored[0] in bloom


@settings(max_examples=60, deadline=None)
@given(st.lists(U64, max_size=300, unique=True), st.lists(U64, max_size=50))
def test_any_fingerprints_same_bits_either_way(stored: list[int], probes: list[int]) -> None:
    vector = FingerprintBloom.build(np.array(stored, dtype=np.uint64), 0.01)
    scalar = _scalar(stored, max(len(stored), 1), 0.01)
    assert vector.bitarray == scalar.bitarray
    contained = bloom_contains(_bits(vector), np.array(probes + stored, dtype=np.uint64),
                               vector.num_slices, vector.bits_per_slice)
    assert contained.tolist() == [fp in scalar for fp in probes + stored]


def test_fromfile_reads_what_the_builder_wrote(breach: Breach) -> None:
    shards = current_generation(breach.index_dir) / "shards"
    for bloom_path in sorted(shards.glob("*.bloom")):
        with bloom_path.open("rb") as stream:
            bloom = FingerprintBloom.fromfile(stream)
        fps = np.fromfile(bloom_path.with_suffix(".fp"), dtype="<u8")
        assert len(bloom) == len(fps) > 0
        assert all(fp in bloom for fp in fps.tolist())
        on_disk = np.fromfile(bloom_path, dtype=np.uint8, offset=HEADER_BYTES)
        assert bloom_contains(on_disk, fps, bloom.num_slices, bloom.bits_per_slice).all()
        # Written back by pybloom-live, the file is the same bytes.
        buffer = io.BytesIO()
        bloom.tofile(buffer)
        assert buffer.getvalue() == bloom_path.read_bytes()
        # And the builder's filter is what scalar adds give (fromfile keeps the padding
        # bits of the last byte).
        scalar = _scalar(fps.tolist(), len(fps), bloom.error_rate)
        assert bloom.bitarray[: bloom.num_bits] == scalar.bitarray


def test_copies_keep_the_fingerprint_hashing(tmp_path: Path) -> None:
    stored = np.arange(1, 2001, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    bloom = FingerprintBloom.build(stored, 0.01)
    for twin in (pickle.loads(pickle.dumps(bloom)), copy.deepcopy(bloom), bloom.copy(),
                 bloom | bloom.copy()):
        assert isinstance(twin, FingerprintBloom)
        assert all(fp in twin for fp in stored.tolist())
        assert twin.bitarray == bloom.bitarray
