"""Key pairs: raw sizes per suite, and a pair whose halves do not match is refused."""

from __future__ import annotations

import pytest

from sealfn.envelope import KeyPair, Suite, generate_keypair

SIZES = {  # suite: (private, public) bytes
    Suite.X25519_SHA256_AES256GCM: (32, 32),
    Suite.MLKEM768X25519_SHA256_AES256GCM: (64 + 32, 1184 + 32),
}


@pytest.mark.parametrize("suite", list(Suite))
def test_generated_pairs_have_the_documented_raw_sizes(suite: Suite) -> None:
    pair = generate_keypair(suite)
    assert (len(pair.private_key), len(pair.public_key)) == SIZES[suite]
    assert KeyPair(suite, pair.private_key, pair.public_key).public_key == pair.public_key


def test_the_default_suite_is_x25519() -> None:
    assert generate_keypair().suite is Suite.X25519_SHA256_AES256GCM


@pytest.mark.parametrize("suite", list(Suite))
def test_mismatched_halves_are_refused(suite: Suite) -> None:
    a, b = generate_keypair(suite), generate_keypair(suite)
    with pytest.raises(ValueError, match="does not belong"):
        KeyPair(suite, a.private_key, b.public_key)


def test_hybrid_halves_are_checked_separately() -> None:
    """Swapping only the X25519 half of a hybrid public key is caught."""
    a, b = (generate_keypair(Suite.MLKEM768X25519_SHA256_AES256GCM) for _ in range(2))
    with pytest.raises(ValueError, match="does not belong"):
        KeyPair(a.suite, a.private_key, a.public_key[:-32] + b.public_key[-32:])


def test_wrong_sizes_are_refused() -> None:
    x = generate_keypair(Suite.X25519_SHA256_AES256GCM)
    with pytest.raises(ValueError, match="private key must be 96 bytes"):
        KeyPair(Suite.MLKEM768X25519_SHA256_AES256GCM, x.private_key, x.public_key)


def test_the_private_key_is_not_printed() -> None:
    pair = generate_keypair()
    assert pair.private_key.hex() not in repr(pair)
    assert repr(pair.private_key) not in repr(pair)


@pytest.mark.parametrize(
    ("suite", "private", "public"),
    [(1, b"", b""), (Suite.X25519_SHA256_AES256GCM, "k", b""), (Suite(1), bytes(32), None)],
)
def test_bad_argument_types_fail_early(suite: object, private: object, public: object) -> None:
    with pytest.raises(TypeError):
        KeyPair(suite, private, public)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        generate_keypair(1)  # type: ignore[arg-type]
