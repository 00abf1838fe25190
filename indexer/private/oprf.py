"""RFC 9497 OPRF, mode 0x00 (OPRF), suite ristretto255-SHA512: the private-lookup primitive.

A private lookup (docs/design.md §7) lets a caller learn whether an identity is in the breach
without the service ever seeing the identifier. The caller hashes its canonical key
input to a group element and blinds it with a random scalar (`blind`); the service
multiplies the blinded element by its secret key (`blind_evaluate`) and cannot tell
which input it was; the caller removes the blind and hashes (`finalize`). The index
builder, which holds the key, computes the same output directly (`evaluate`). The
caller also sends a public bucket number (`bucket_of`) so the service can return
a few thousand candidate entries instead of the whole index.

Everything follows RFC 9497 (OPRF) and RFC 9380 (expand_message_xmd) to the byte, so
that any conforming client library gets the same outputs; the group arithmetic is
libsodium's ristretto255 (the system's library, loaded in place: `ristretto`), which is
constant-time where secrets are used.

This module is pure: no I/O, no logging, no global state. It must never log, print or
put into an exception message an input, a blind, an output or a key: the inputs are
social security numbers and names and dates of birth, and the outputs stand for them.
Errors carry only a fixed code and a fixed message.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from . import ristretto

__all__ = [
    "CONTEXT_STRING",
    "ELEMENT_BYTES",
    "MAX_INPUT_BYTES",
    "MODE_OPRF",
    "OUTPUT_BYTES",
    "SCALAR_BYTES",
    "SUITE",
    "OprfError",
    "OprfErrorCode",
    "blind",
    "blind_evaluate",
    "bucket_of",
    "decode_element_hex",
    "derive_key_pair",
    "evaluate",
    "expand_message_xmd",
    "finalize",
    "generate_private_key",
    "key_id",
    "load_private_key",
    "public_key",
]

SUITE = "ristretto255-SHA512"
MODE_OPRF = 0x00

# RFC 9497 §3.1: contextString = "OPRFV1-" || I2OSP(mode, 1) || "-" || identifier.
# Every hash below is domain-separated with it, so outputs of another mode or suite
# can never collide with ours.
CONTEXT_STRING = b"OPRFV1-" + bytes([MODE_OPRF]) + b"-" + SUITE.encode("ascii")
_HASH_TO_GROUP_DST = b"HashToGroup-" + CONTEXT_STRING
_HASH_TO_SCALAR_DST = b"HashToScalar-" + CONTEXT_STRING
# No hyphen after "DeriveKeyPair": that is how RFC 9497 §3.2.1 spells it.
_DERIVE_KEY_PAIR_DST = b"DeriveKeyPair" + CONTEXT_STRING

ELEMENT_BYTES = 32  # Ne for ristretto255
SCALAR_BYTES = 32  # Ns for ristretto255
OUTPUT_BYTES = 64  # Nh for SHA-512
# Finalize encodes len(input) in two bytes (I2OSP(len(input), 2)), so RFC 9497 caps
# inputs at 2^16 - 1 bytes; our canonical inputs are under 100.
MAX_INPUT_BYTES = 0xFFFF

# Order of the ristretto255 group (RFC 9496 §4): a scalar is canonical iff below it.
_GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
_IDENTITY = bytes(ELEMENT_BYTES)

# SHA-512 parameters for expand_message_xmd (RFC 9380 §5.3.1): b_in_bytes and the
# input block size s_in_bytes.
_XMD_B_IN_BYTES = 64
_XMD_S_IN_BYTES = 128

# Public tags; "-v1" so a later change of format cannot be mistaken for this one.
_KEY_ID_DOMAIN = b"exposure-oprf-key-id-v1|"
_BUCKET_DOMAIN = "exposure-bucket-v1|"


class OprfErrorCode(StrEnum):
    """Why an OPRF operation refused its arguments; stable strings for API errors."""

    INVALID_POINT = "invalid_point"
    INVALID_SCALAR = "invalid_scalar"
    INVALID_INPUT = "invalid_input"


_MESSAGES = {
    OprfErrorCode.INVALID_POINT: "not a valid ristretto255 element encoding",
    OprfErrorCode.INVALID_SCALAR: "not a canonical non-zero ristretto255 scalar",
    OprfErrorCode.INVALID_INPUT: "OPRF input out of range",
}


class OprfError(ValueError):
    """Bad bytes given to an OPRF operation.

    The message is fixed per code and never contains the offending value, because
    that value may be (or be derived from) an identifier.
    """

    def __init__(self, code: OprfErrorCode) -> None:
        super().__init__(_MESSAGES[code])
        self.code = code


# --------------------------------------------------------------------------- RFC 9380


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 §5.3.1 expand_message_xmd with SHA-512."""
    ell = -(-len_in_bytes // _XMD_B_IN_BYTES)
    # The RFC's own limits; our DSTs are short constants, so the oversize-DST
    # hashing of §5.3.3 is not needed and an oversize DST is refused instead.
    if not 0 < len_in_bytes <= 0xFFFF or ell > 255 or len(dst) > 255:
        raise OprfError(OprfErrorCode.INVALID_INPUT)
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(_XMD_S_IN_BYTES) + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime
    b_0 = hashlib.sha512(msg_prime).digest()
    b_i = hashlib.sha512(b_0 + b"\x01" + dst_prime).digest()
    uniform = [b_i]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b_0, b_i, strict=True))
        b_i = hashlib.sha512(mixed + bytes([i]) + dst_prime).digest()
        uniform.append(b_i)
    return b"".join(uniform)[:len_in_bytes]


# --------------------------------------------------------------------- group helpers


def _hash_to_group(msg: bytes) -> bytes:
    # RFC 9497 §4.1: hash_to_ristretto255 (RFC 9380 App. B) = 64 uniform bytes through
    # the RFC 9496 one-way map, which is exactly libsodium's ristretto255_from_hash.
    return ristretto.from_hash(expand_message_xmd(msg, _HASH_TO_GROUP_DST, 64))


def _hash_to_scalar(msg: bytes, dst: bytes) -> bytes:
    # RFC 9497 §4.1: 64 uniform bytes read little-endian and reduced mod the order;
    # 512 bits make the bias of the reduction negligible.
    return ristretto.scalar_reduce(expand_message_xmd(msg, dst, 64))


def _as_bytes(value: object, code: OprfErrorCode, length: int | None = None) -> bytes:
    # Callers pass bytes; a bytearray or memoryview is accepted, anything else is a
    # bad argument reported with the caller's error code rather than a TypeError.
    if isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if not isinstance(value, bytes) or (length is not None and len(value) != length):
        raise OprfError(code)
    return value


def _check_scalar(raw: object) -> bytes:
    # RFC 9497 DeserializeScalar: 32 bytes, little-endian, below the group order.
    # Zero is refused as well: a zero key or blind maps everything to the identity.
    scalar = _as_bytes(raw, OprfErrorCode.INVALID_SCALAR, SCALAR_BYTES)
    value = int.from_bytes(scalar, "little")
    if value == 0 or value >= _GROUP_ORDER:
        raise OprfError(OprfErrorCode.INVALID_SCALAR)
    return scalar


def _check_element(raw: object) -> bytes:
    # RFC 9497 DeserializeElement: the canonical RFC 9496 encoding of a group element,
    # and not the identity (sk * identity is the identity whatever the key, so it is
    # never a real blinded input). The decoding of RFC 9496 §4.3.1 refuses a string
    # whose field element is not canonical, and its top bit is outside the 255 bits of
    # the field element: an encoding with it set is refused here first, since the
    # binding's is_valid_point accepted it (issue 14). It also accepts the all-zero
    # identity: hence the identity test.
    element = _as_bytes(raw, OprfErrorCode.INVALID_POINT, ELEMENT_BYTES)
    if element[31] & 0x80 or element == _IDENTITY or not ristretto.is_valid_point(element):
        raise OprfError(OprfErrorCode.INVALID_POINT)
    return element


def _check_input(raw: object) -> bytes:
    data = _as_bytes(raw, OprfErrorCode.INVALID_INPUT)
    if len(data) > MAX_INPUT_BYTES:
        raise OprfError(OprfErrorCode.INVALID_INPUT)
    return data


def _input_element(data: bytes) -> bytes:
    element = _hash_to_group(data)
    # RFC 9497 §3.3.1: an input hashing to the identity is refused (probability
    # about 2^-252, but the RFC asks for the check and it costs nothing).
    if element == _IDENTITY:
        raise OprfError(OprfErrorCode.INVALID_INPUT)
    return element


def _scalar_mult(scalar: bytes, element: bytes) -> bytes:
    # libsodium only clears bit 255 of the scalar (no X25519-style clamping), so a
    # reduced scalar is used as is. It fails only if the product is the identity,
    # which a non-zero scalar times a non-identity element of a prime-order group
    # cannot be; the check stays so that a bug surfaces as OprfError, not RuntimeError.
    try:
        return ristretto.scalarmult(scalar, element)
    except ValueError as exc:
        raise OprfError(OprfErrorCode.INVALID_POINT) from exc


def _finalize_hash(data: bytes, element: bytes) -> bytes:
    # RFC 9497 §3.3.1 Finalize: Hash(I2OSP(len(input), 2) || input ||
    #   I2OSP(len(element), 2) || element || "Finalize").
    return hashlib.sha512(
        len(data).to_bytes(2, "big")
        + data
        + len(element).to_bytes(2, "big")
        + element
        + b"Finalize"
    ).digest()


# ------------------------------------------------------------------------------ keys


def derive_key_pair(seed: bytes, info: bytes) -> tuple[bytes, bytes]:
    """RFC 9497 §3.2.1 DeriveKeyPair: (skS, pkS) from a 32-byte seed and public info."""
    seed = _as_bytes(seed, OprfErrorCode.INVALID_INPUT, SCALAR_BYTES)
    info = _check_input(info)
    derive_input = seed + len(info).to_bytes(2, "big") + info
    # The counter retries in the (2^-252) case that the hash lands on zero.
    for counter in range(256):
        sk = _hash_to_scalar(derive_input + bytes([counter]), _DERIVE_KEY_PAIR_DST)
        if sk != bytes(SCALAR_BYTES):
            return sk, public_key(sk)
    raise OprfError(OprfErrorCode.INVALID_INPUT)  # RFC: DeriveKeyPairError


def generate_private_key() -> bytes:
    """A fresh random secret key: a uniformly random non-zero scalar (32 bytes)."""
    while True:
        # libsodium already excludes zero; the loop keeps that a local guarantee.
        sk = ristretto.scalar_random()
        if sk != bytes(SCALAR_BYTES):
            return sk


def load_private_key(raw: bytes) -> bytes:
    """Validate a stored secret key: 32 bytes, canonical, reduced, non-zero."""
    return _check_scalar(raw)


def public_key(sk: bytes) -> bytes:
    """pkS = sk * G, the public half of the key."""
    return ristretto.scalarmult_base(_check_scalar(sk))


def key_id(sk: bytes) -> str:
    """A short public tag naming the key, for the manifest and /v1/private/params.

    It hashes the public key, not the secret one, so publishing it reveals nothing the
    public key would not; 64 bits tell keys apart without being a key themselves.
    """
    return hashlib.sha256(_KEY_ID_DOMAIN + public_key(sk)).hexdigest()[:16]


# -------------------------------------------------------------------------- protocol


def blind(input: bytes, blind: bytes | None = None) -> tuple[bytes, bytes]:
    """Client side: (blind scalar, blinded element) for `input`.

    `blind` is random unless given; a given blind is for the RFC's test vectors only,
    since reusing a blind links the requests that share it.
    """
    data = _check_input(input)
    scalar = generate_private_key() if blind is None else _check_scalar(blind)
    return scalar, _scalar_mult(scalar, _input_element(data))


def blind_evaluate(sk: bytes, blinded_element: bytes) -> bytes:
    """Server side: sk * blinded element; refuses invalid or identity encodings."""
    return _scalar_mult(_check_scalar(sk), _check_element(blinded_element))


def finalize(input: bytes, blind: bytes, evaluated_element: bytes) -> bytes:
    """Client side: unblind the server's answer and hash it into the 64-byte output."""
    data = _check_input(input)
    inverse = ristretto.scalar_invert(_check_scalar(blind))
    unblinded = _scalar_mult(inverse, _check_element(evaluated_element))
    return _finalize_hash(data, unblinded)


def evaluate(sk: bytes, input: bytes) -> bytes:
    """Key holder side: the OPRF output of `input` without blinding (RFC 9497 Evaluate).

    Equal to finalize(input, b, blind_evaluate(sk, blind(input, b)[1])) for every b;
    the index builder uses it to compute the entries clients will look for.
    """
    data = _check_input(input)
    return _finalize_hash(data, _scalar_mult(_check_scalar(sk), _input_element(data)))


def decode_element_hex(text: str) -> bytes:
    """A blinded element from the API's hex form, validated; OprfError if anything is off."""
    if not isinstance(text, str) or len(text) != 2 * ELEMENT_BYTES:
        raise OprfError(OprfErrorCode.INVALID_POINT)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        # from None: the ValueError's message quotes the offending text.
        raise OprfError(OprfErrorCode.INVALID_POINT) from None
    return _check_element(raw)


# ---------------------------------------------------------------------------- bucket


def bucket_of(canonical_input: str, bucket_bits: int) -> int:
    """The public bucket of a canonical key input (docs/design.md §7, contract).

    The first 4 bytes of SHA-256("exposure-bucket-v1|" + input), big-endian, shifted
    right by 32 - bucket_bits. A plain public hash on purpose: the client computes it
    locally and reveals only these few bits, which many identities share.
    """
    if (
        not isinstance(bucket_bits, int)
        or isinstance(bucket_bits, bool)
        or not 0 <= bucket_bits <= 32
    ):
        raise OprfError(OprfErrorCode.INVALID_INPUT)
    try:
        encoded = (_BUCKET_DOMAIN + canonical_input).encode("utf-8")
    except (TypeError, UnicodeEncodeError):
        # from None: UnicodeEncodeError carries the whole input string.
        raise OprfError(OprfErrorCode.INVALID_INPUT) from None
    prefix = int.from_bytes(hashlib.sha256(encoded).digest()[:4], "big")
    return prefix >> (32 - bucket_bits)
