"""Hashes for deduplication: perceptual hash (imagehash pHash) and sha256 of bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

# imagehash's default: an 8 x 8 DCT hash, 64 bits, 16 hex digits.
HASH_SIZE = 8


def phash_hex(image: np.ndarray) -> str:
    """pHash (Zauner 2010, as implemented by imagehash) of an RGB image, as 16 hex digits."""
    import imagehash

    return str(imagehash.phash(Image.fromarray(image), hash_size=HASH_SIZE))


def hamming(a_hex: str, b_hex: str) -> int:
    """Differing bits between two hex hashes of the same length."""
    if len(a_hex) != len(b_hex):
        raise ValueError(f"hash lengths differ: {len(a_hex)} vs {len(b_hex)}")
    return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()


def phash_to_uint64(hexes: Sequence[str]) -> np.ndarray:
    """64-bit hex hashes as a uint64 array, for vectorized comparisons."""
    return np.array([int(h, 16) for h in hexes], dtype=np.uint64)


def hamming_to_many(a_hex: str, others: np.ndarray) -> np.ndarray:
    """Hamming distance from one 64-bit hash to each of ``others`` (uint64 array)."""
    xor = np.bitwise_xor(others.astype(np.uint64), np.uint64(int(a_hex, 16)))
    return np.bitwise_count(xor).astype(np.int64)


def sha256_hex(data: bytes) -> str:
    """sha256 of raw bytes (exact duplicates), as stored in ``dl_sha256``."""
    return hashlib.sha256(data).hexdigest()
