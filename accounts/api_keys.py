"""The API key format: `qs_` + 43 url-safe characters (32 random bytes).

Only the SHA-256 of a key is stored. A plain hash (not a slow KDF) is right
here because the key has 256 bits of entropy: nothing to brute-force, and a
lookup by hash keeps authentication a single indexed query.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "qs_"
KEY_RANDOM_BYTES = 32
DISPLAY_PREFIX_LENGTH = 7  # "qs_" and four characters: enough to recognise, useless to guess


def key_generate() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def key_looks_valid(raw_key: str) -> bool:
    """Cheap shape check before touching the database."""
    return raw_key.startswith(KEY_PREFIX) and 20 <= len(raw_key) <= 128 and raw_key.isascii()


def key_hash_matches(raw_key: str, stored_hash: str) -> bool:
    # Constant time, so response timing says nothing about how much of a hash matched.
    return hmac.compare_digest(key_hash(raw_key), stored_hash)
