"""Hashes for deduplication: perceptual hash (imagehash pHash) and sha256 of bytes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

# imagehash's default: an 8 x 8 DCT hash, 64 bits, 16 hex digits.
HASH_SIZE = 8


def phash_hex(image: np.ndarray) -> str:
    """pHash (Zauner 2010, as implemented by imagehash) of an RGB image, as 16 hex digits."""
    import imagehash

    return str(imagehash.phash(Image.fromarray(image), hash_size=HASH_SIZE))


def phash_to_uint64(hexes: Sequence[str]) -> np.ndarray:
    """64-bit hex hashes as a uint64 array, for vectorized comparisons."""
    return np.array([int(h, 16) for h in hexes], dtype=np.uint64)


def hamming_to_many(a_hex: str, others: np.ndarray) -> np.ndarray:
    """Hamming distance from one 64-bit hash to each of ``others`` (uint64 array)."""
    xor = np.bitwise_xor(others.astype(np.uint64), np.uint64(int(a_hex, 16)))
    return np.bitwise_count(xor).astype(np.int64)
