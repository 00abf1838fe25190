"""Tests for indexer.private.oprf: the RFC's published vectors, then properties and refusals.

The only hard-coded expected outputs are vectors copied from the RFCs (each cited);
everything else is checked against an independent computation or a property.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.private import oprf, ristretto

# RFC 9497, Appendix A.1.1: OPRF(ristretto255, SHA-512), mode OPRF (0x00).
# This mode publishes two vectors, both of batch size 1; the batch-size-2 vectors of
# Appendix A.1 belong to the VOPRF and POPRF modes, which we do not implement.
RFC9497_SEED = bytes.fromhex("a3" * 32)
RFC9497_KEY_INFO = bytes.fromhex("74657374206b6579")
RFC9497_SKSM = bytes.fromhex("5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e")
RFC9497_OPRF_VECTORS = [
    pytest.param(
        # RFC 9497, Appendix A.1.1.1: Test Vector 1, Batch Size 1.
        "00",
        "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706",
        "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
        "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e",
        "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3"
        "ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6",
        id="A.1.1-vector-1",
    ),
    pytest.param(
        # RFC 9497, Appendix A.1.1.2: Test Vector 2, Batch Size 1.
        "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
        "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706",
        "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
        "b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25",
        "f4a74c9c592497375e796aa837e907b1a045d34306a749db9f34221f7e750cb4"
        "f2a6413a6bf6fa5e19ba6348eb673934a722a7ede2e7621306d18951e7cf2c73",
        id="A.1.1-vector-2",
    ),
]

# RFC 9380, Appendix K.3: expand_message_xmd(SHA-512), DST below.
RFC9380_XMD_DST = b"QUUX-V01-CS02-with-expander-SHA512-256"
RFC9380_XMD_SHA512_VECTORS = [
    (b"", 0x20, "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"),
    (b"abc", 0x20, "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"),
    (
        b"abcdef0123456789",
        0x20,
        "087e45a86e2939ee8b91100af1583c4938e0f5fc6c9db4b107b83346bc967f58",
    ),
    (
        b"q128_" + b"q" * 128,
        0x20,
        "7336234ee9983902440f6bc35b348352013becd88938d2afec44311caf8356b3",
    ),
    (
        b"a512_" + b"a" * 512,
        0x20,
        "57b5f7e766d5be68a6bfe1768e3c2b7f1228b3e4b3134956dd73a59b954c66f4",
    ),
    (
        b"",
        0x80,
        "41b037d1734a5f8df225dd8c7de38f851efdb45c372887be655212d07251b921"
        "b052b62eaed99b46f72f2ef4cc96bfaf254ebbbec091e1a3b9e4fb5e5b619d2e"
        "0c5414800a1d882b62bb5cd1778f098b8eb6cb399d5d9d18f5d5842cf5d13d7e"
        "b00a7cff859b605da678b318bd0e65ebff70bec88c753b159a805d2c89c55961",
    ),
    (
        b"abc",
        0x80,
        "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11"
        "bdd7732d8b38adb4a0edc26a0cef4bb45217135456e58fbca1703cd6032cb134"
        "7ee720b87972d63fbf232587043ed2901bce7f22610c0419751c065922b48843"
        "1851041310ad659e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1",
    ),
    (
        b"abcdef0123456789",
        0x80,
        "3f721f208e6199fe903545abc26c837ce59ac6fa45733f1baaf0222f8b7acb04"
        "24814fcb5eecf6c1d38f06e9d0a6ccfbf85ae612ab8735dfdf9ce84c372a77c8"
        "f9e1c1e952c3a61b7567dd0693016af51d2745822663d0c2367e3f4f0bed827f"
        "eecc2aaf98c949b5ed0d35c3f1023d64ad1407924288d366ea159f46287e61ac",
    ),
    (
        b"q128_" + b"q" * 128,
        0x80,
        "b799b045a58c8d2b4334cf54b78260b45eec544f9f2fb5bd12fb603eaee70db7"
        "317bf807c406e26373922b7b8920fa29142703dd52bdf280084fb7ef69da78af"
        "df80b3586395b433dc66cde048a258e476a561e9deba7060af40adf30c64249c"
        "a7ddea79806ee5beb9a1422949471d267b21bc88e688e4014087a0b592b695ed",
    ),
    (
        b"a512_" + b"a" * 512,
        0x80,
        "05b0bfef265dcee87654372777b7c44177e2ae4c13a27f103340d9cd11c86cb2"
        "426ffcad5bd964080c2aee97f03be1ca18e30a1f14e27bc11ebbd650f305269c"
        "c9fb1db08bf90bfc79b42a952b46daf810359e7bc36452684784a64952c343c5"
        "2e5124cd1f71d474d5197fefc571a92929c9084ffe1112cf5eea5192ebff330b",
    ),
]

# RFC 9496, Appendix A.2: encodings a ristretto255 decoder must refuse.
RFC9496_BAD_ENCODINGS = [
    # Non-canonical field encodings.
    "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "f3ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    # Negative field elements.
    "0100000000000000000000000000000000000000000000000000000000000000",
    "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "ed57ffd8c914fb201471d1c3d245ce3c746fcbe63a3679d51b6a516ebebe0e20",
    "c34c4e1826e5d403b78e246e88aa051c36ccf0aafebffe137d148a2bf9104562",
    "c940e5a4404157cfb1628b108db051a8d439e1a421394ec4ebccb9ec92a8ac78",
    "47cfc5497c53dc8e61c91d17fd626ffb1c49e2bca94eed052281b510b1117a24",
    "f1c6165d33367351b0da8f6e4511010c68174a03b6581212c71c0e1d026c3c72",
    "87260f7a2f12495118360f02c26a470f450dadf34a413d21042b43b9d93e1309",
    # Non-square x^2.
    "26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371",
    "4eac077a713c57b4f4397629a4145982c661f48044dd3f96427d40b147d9742f",
    "de6a7b00deadc788eb6b6c8d20c0ae96c2f2019078fa604fee5b87d6e989ad7b",
    "bcab477be20861e01e4a0e295284146a510150d9817763caf1a6f4b422d67042",
    "2a292df7e32cababbd9de088d1d1abec9fc0440f637ed2fba145094dc14bea08",
    "f4a9e534fc0d216c44b218fa0c42d99635a0127ee2e53c712f70609649fdff22",
    "8268436f8c4126196cf64b3c7ddbda90746a378625f9813dd9b8457077256731",
    "2810e5cbc2cc4d4eece54f61c6f69758e289aa7ab440b3cbeaa21995c2f4232b",
    # Negative x*y.
    "3eb858e78f5a7254d8c9731174a94f76755fd3941c0ac93735c07ba14579630e",
    "a45fdc55c76448c049a1ab33f17023edfb2be3581e9c7aade8a6125215e04220",
    "d483fe813c6ba647ebbfd3ec41adca1c6130c2beeee9d9bf065c8d151c5f396e",
    "8a2e1d30050198c65a54483123960ccc38aef6848e1ec8f5f780e8523769ba32",
    "32888462f8b486c68ad7dd9610be5192bbeaf3b443951ac1a8118419d9fa097b",
    "227142501b9d4355ccba290404bde41575b037693cef1f438c47f8fbf35d1165",
    "5c37cc491da847cfeb9281d407efc41e15144c876e0170b499a96a22ed31e01e",
    "445425117cb8c90edcbc7c1cc0e74f747f2c1efa5630a967c64f287792a48a4b",
    # s = -1, which causes y = 0.
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]

# The ristretto255 group order, from RFC 9496 §4 (not imported from the module).
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493

# Canonical key inputs in the docs/design.md §7 shapes; synthetic, not real people.
STRONG_INPUT = "strong|185057800608436|1985-05-07"
WEAK_INPUT = "weak|DUPONT|JEAN|1970-01-01"


def scalar(value: int) -> bytes:
    return value.to_bytes(32, "little")


def random_element() -> bytes:
    return ristretto.from_hash(os.urandom(64))


@pytest.fixture(scope="module")
def sk() -> bytes:
    return oprf.generate_private_key()


# ------------------------------------------------------------------- RFC vectors


def test_derive_key_pair_matches_rfc9497_a11() -> None:
    sk_s, pk_s = oprf.derive_key_pair(RFC9497_SEED, RFC9497_KEY_INFO)
    assert sk_s == RFC9497_SKSM
    # Mode 0 publishes no pkSm; check pkS = skS * G through libsodium directly.
    assert pk_s == ristretto.scalarmult_base(RFC9497_SKSM)


@pytest.mark.parametrize(
    ("input_hex", "blind_hex", "blinded_hex", "evaluated_hex", "output_hex"),
    RFC9497_OPRF_VECTORS,
)
def test_rfc9497_oprf_vectors(
    input_hex: str, blind_hex: str, blinded_hex: str, evaluated_hex: str, output_hex: str
) -> None:
    data = bytes.fromhex(input_hex)
    blind = bytes.fromhex(blind_hex)

    blind_out, blinded = oprf.blind(data, blind)
    assert blind_out == blind
    assert blinded.hex() == blinded_hex

    evaluated = oprf.blind_evaluate(RFC9497_SKSM, blinded)
    assert evaluated.hex() == evaluated_hex

    assert oprf.finalize(data, blind, evaluated).hex() == output_hex
    # The server-side shortcut must reach the same output without the blind.
    assert oprf.evaluate(RFC9497_SKSM, data).hex() == output_hex


@pytest.mark.parametrize(("msg", "length", "expected_hex"), RFC9380_XMD_SHA512_VECTORS)
def test_expand_message_xmd_matches_rfc9380_k3(msg: bytes, length: int, expected_hex: str) -> None:
    assert oprf.expand_message_xmd(msg, RFC9380_XMD_DST, length).hex() == expected_hex


def test_context_string_is_rfc9497_mode_0() -> None:
    assert oprf.SUITE == "ristretto255-SHA512"
    assert oprf.CONTEXT_STRING == b"OPRFV1-\x00-ristretto255-SHA512"


# ---------------------------------------------------------------------- round trip


@pytest.mark.parametrize("text", [STRONG_INPUT, WEAK_INPUT, ""])
def test_blind_evaluate_finalize_equals_evaluate(sk: bytes, text: str) -> None:
    data = text.encode("utf-8")
    blind, blinded = oprf.blind(data)
    output = oprf.finalize(data, blind, oprf.blind_evaluate(sk, blinded))
    assert len(output) == oprf.OUTPUT_BYTES
    assert output == oprf.evaluate(sk, data)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=200))
def test_round_trip_holds_for_any_input(sk: bytes, data: bytes) -> None:
    blind, blinded = oprf.blind(data)
    assert oprf.finalize(data, blind, oprf.blind_evaluate(sk, blinded)) == oprf.evaluate(sk, data)


def test_blinding_hides_the_input(sk: bytes) -> None:
    data = STRONG_INPUT.encode()
    blind_1, blinded_1 = oprf.blind(data)
    blind_2, blinded_2 = oprf.blind(data)
    # Fresh blinds: the server sees unrelated elements for the same input...
    assert blind_1 != blind_2
    assert blinded_1 != blinded_2
    # ...and the client still gets the same output from both.
    assert oprf.finalize(data, blind_1, oprf.blind_evaluate(sk, blinded_1)) == oprf.finalize(
        data, blind_2, oprf.blind_evaluate(sk, blinded_2)
    )


def test_output_depends_on_key_and_input(sk: bytes) -> None:
    other = oprf.generate_private_key()
    assert oprf.evaluate(sk, b"a") != oprf.evaluate(other, b"a")
    assert oprf.evaluate(sk, b"a") != oprf.evaluate(sk, b"b")


def test_finalize_with_wrong_blind_gives_another_output(sk: bytes) -> None:
    data = WEAK_INPUT.encode()
    blind, blinded = oprf.blind(data)
    evaluated = oprf.blind_evaluate(sk, blinded)
    wrong_blind = oprf.generate_private_key()
    assert oprf.finalize(data, wrong_blind, evaluated) != oprf.evaluate(sk, data)


def test_maximum_input_length_is_accepted(sk: bytes) -> None:
    data = b"x" * oprf.MAX_INPUT_BYTES
    blind, blinded = oprf.blind(data)
    assert oprf.finalize(data, blind, oprf.blind_evaluate(sk, blinded)) == oprf.evaluate(sk, data)


# ---------------------------------------------------------------------------- keys


def test_generated_keys_are_valid_and_distinct() -> None:
    keys = {oprf.generate_private_key() for _ in range(8)}
    assert len(keys) == 8
    for key in keys:
        assert oprf.load_private_key(key) == key
        assert 0 < int.from_bytes(key, "little") < GROUP_ORDER


@pytest.mark.parametrize("value", [1, 2, GROUP_ORDER - 1])
def test_load_private_key_accepts_canonical_scalars(value: int) -> None:
    assert oprf.load_private_key(scalar(value)) == scalar(value)


@pytest.mark.parametrize(
    "raw",
    [
        scalar(0),
        scalar(GROUP_ORDER),
        scalar(GROUP_ORDER + 1),
        b"\xff" * 32,
        b"\x01" * 31,
        b"\x01" * 33,
        b"",
    ],
    ids=["zero", "order", "order+1", "all-ones", "31-bytes", "33-bytes", "empty"],
)
def test_load_private_key_refuses_bad_scalars(raw: bytes) -> None:
    with pytest.raises(oprf.OprfError) as info:
        oprf.load_private_key(raw)
    assert info.value.code == "invalid_scalar"


def test_load_private_key_refuses_non_bytes() -> None:
    with pytest.raises(oprf.OprfError) as info:
        oprf.load_private_key("00" * 32)  # type: ignore[arg-type]
    assert info.value.code == "invalid_scalar"


def test_key_id_is_a_short_stable_tag_of_the_public_key(sk: bytes) -> None:
    tag = oprf.key_id(sk)
    assert len(tag) == 16
    assert int(tag, 16) >= 0
    assert oprf.key_id(sk) == tag
    assert oprf.key_id(oprf.generate_private_key()) != tag
    # One-way: neither half of the key shows through.
    assert tag not in sk.hex()
    assert tag not in oprf.public_key(sk).hex()


def test_public_key_is_sk_times_generator(sk: bytes) -> None:
    assert oprf.public_key(sk) == ristretto.scalarmult_base(sk)


def test_derive_key_pair_refuses_short_seed() -> None:
    with pytest.raises(oprf.OprfError) as info:
        oprf.derive_key_pair(b"\xa3" * 31, RFC9497_KEY_INFO)
    assert info.value.code == "invalid_input"


# ------------------------------------------------------------------ invalid points


@pytest.mark.parametrize("encoding_hex", RFC9496_BAD_ENCODINGS)
def test_blind_evaluate_refuses_rfc9496_bad_encodings(sk: bytes, encoding_hex: str) -> None:
    with pytest.raises(oprf.OprfError) as info:
        oprf.blind_evaluate(sk, bytes.fromhex(encoding_hex))
    assert info.value.code == "invalid_point"


@given(st.binary(min_size=1, max_size=40))
@settings(max_examples=50, deadline=None)
def test_an_encoding_with_its_top_bit_set_is_refused(sk: bytes, seed: bytes) -> None:
    # Issue 14 (8): RFC 9496 §4.3.1 refuses it; the binding's is_valid_point did not.
    _, element = oprf.blind(seed)
    assert element[31] & 0x80 == 0  # canonical encodings never set it
    flipped = element[:31] + bytes([element[31] | 0x80])
    with pytest.raises(oprf.OprfError) as info:
        oprf.blind_evaluate(sk, flipped)
    assert info.value.code == "invalid_point"
    with pytest.raises(oprf.OprfError):
        oprf.decode_element_hex(flipped.hex())


def test_blind_evaluate_refuses_the_identity(sk: bytes) -> None:
    with pytest.raises(oprf.OprfError) as info:
        oprf.blind_evaluate(sk, bytes(32))
    assert info.value.code == "invalid_point"
    # Refused by validation, not by libsodium failing on the product afterwards
    # (libsodium's is_valid_point accepts the all-zero identity encoding).
    assert info.value.__cause__ is None


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_blind_evaluate_refuses_wrong_lengths(sk: bytes, length: int) -> None:
    with pytest.raises(oprf.OprfError) as info:
        oprf.blind_evaluate(sk, random_element()[:length] + b"\x00" * max(0, length - 32))
    assert info.value.code == "invalid_point"


def test_blind_evaluate_refuses_random_non_encodings(sk: bytes) -> None:
    # Random 32-byte strings that libsodium itself says are not valid encodings:
    # the check is an independent oracle, so this does not restate the module.
    refused = 0
    while refused < 50:
        candidate = os.urandom(32)
        if ristretto.is_valid_point(candidate):
            continue
        with pytest.raises(oprf.OprfError) as info:
            oprf.blind_evaluate(sk, candidate)
        assert info.value.code == "invalid_point"
        refused += 1


def test_blind_evaluate_refuses_non_bytes(sk: bytes) -> None:
    with pytest.raises(oprf.OprfError) as info:
        oprf.blind_evaluate(sk, random_element().hex())  # type: ignore[arg-type]
    assert info.value.code == "invalid_point"


def test_blind_evaluate_refuses_a_bad_key() -> None:
    with pytest.raises(oprf.OprfError) as info:
        oprf.blind_evaluate(scalar(0), random_element())
    assert info.value.code == "invalid_scalar"


def test_finalize_refuses_bad_evaluated_element_and_blind(sk: bytes) -> None:
    blind, blinded = oprf.blind(b"x")
    with pytest.raises(oprf.OprfError) as info:
        oprf.finalize(b"x", blind, bytes(32))
    assert info.value.code == "invalid_point"
    with pytest.raises(oprf.OprfError) as info:
        oprf.finalize(b"x", scalar(0), oprf.blind_evaluate(sk, blinded))
    assert info.value.code == "invalid_scalar"


def test_inputs_longer_than_the_rfc_allows_are_refused(sk: bytes) -> None:
    too_long = b"x" * (oprf.MAX_INPUT_BYTES + 1)
    for call in (
        lambda: oprf.blind(too_long),
        lambda: oprf.evaluate(sk, too_long),
        lambda: oprf.finalize(too_long, scalar(1), random_element()),
    ):
        with pytest.raises(oprf.OprfError) as info:
            call()
        assert info.value.code == "invalid_input"


@settings(max_examples=300, deadline=None)
@given(
    candidate=st.one_of(
        st.binary(max_size=80),
        st.binary(min_size=32, max_size=32),
        # Valid elements too, so the success branch is exercised, not just refusals.
        st.binary(min_size=64, max_size=64).map(
            ristretto.from_hash
        ),
    )
)
def test_blind_evaluate_returns_32_bytes_or_raises_oprf_error(sk: bytes, candidate: bytes) -> None:
    try:
        evaluated = oprf.blind_evaluate(sk, candidate)
    except oprf.OprfError as exc:
        assert exc.code == "invalid_point"
    else:
        assert isinstance(evaluated, bytes)
        assert len(evaluated) == 32
        assert ristretto.is_valid_point(evaluated)


def test_decode_element_hex(sk: bytes) -> None:
    element = random_element()
    assert oprf.decode_element_hex(element.hex()) == element
    for bad in ["", "zz" * 32, element.hex()[:-2], element.hex() + "00", "00" * 32]:
        with pytest.raises(oprf.OprfError) as info:
            oprf.decode_element_hex(bad)
        assert info.value.code == "invalid_point"


def test_error_messages_do_not_carry_the_input(sk: bytes) -> None:
    secret_like = STRONG_INPUT.encode()
    with pytest.raises(oprf.OprfError) as info:
        oprf.blind_evaluate(sk, secret_like)
    assert STRONG_INPUT not in str(info.value)
    assert secret_like.hex() not in str(info.value)
    with pytest.raises(oprf.OprfError) as info:
        oprf.decode_element_hex("zz" + "00" * 31)
    assert "zz" not in str(info.value)
    assert info.value.__cause__ is None


# --------------------------------------------------------------------------- bucket


def expected_bucket(text: str, bits: int) -> int:
    # Written from the docs/design.md §7 wording, independently of the module.
    digest = hashlib.sha256(b"exposure-bucket-v1|" + text.encode("utf-8")).digest()
    return int.from_bytes(digest[0:4], byteorder="big") // (1 << (32 - bits))


@pytest.mark.parametrize("text", [STRONG_INPUT, WEAK_INPUT, "weak|ÉLOÏSE|X|2000-02-29", ""])
@pytest.mark.parametrize("bits", [1, 8, 12, 16, 20, 32])
def test_bucket_of_matches_the_contract(text: str, bits: int) -> None:
    bucket = oprf.bucket_of(text, bits)
    assert bucket == expected_bucket(text, bits)
    assert 0 <= bucket < 2**bits


def test_bucket_of_with_zero_bits_is_a_single_bucket() -> None:
    assert oprf.bucket_of(STRONG_INPUT, 0) == 0


def test_bucket_of_nests_as_bits_grow() -> None:
    # A bucket at B bits is the prefix of the bucket at B + 1 bits.
    for bits in range(1, 32):
        assert oprf.bucket_of(WEAK_INPUT, bits + 1) >> 1 == oprf.bucket_of(WEAK_INPUT, bits)


@pytest.mark.parametrize("bits", [-1, 33, 64])
def test_bucket_of_refuses_bad_bit_counts(bits: int) -> None:
    with pytest.raises(oprf.OprfError) as info:
        oprf.bucket_of(STRONG_INPUT, bits)
    assert info.value.code == "invalid_input"


def test_bucket_of_refuses_unencodable_text() -> None:
    with pytest.raises(oprf.OprfError) as info:
        oprf.bucket_of("weak|\udcff|X|2000-01-01", 16)
    assert info.value.code == "invalid_input"
    assert info.value.__cause__ is None
