"""Password hashing (bcrypt) and access tokens (PyJWT, HS256). No web framework in here."""

import secrets
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt

ALGORITHM = "HS256"
BCRYPT_MAX_BYTES = 72


class InvalidToken(Exception):
    """The token is missing a claim, expired, malformed, or signed with another key."""


def hash_password(password: str, rounds: int = 12) -> str:
    import bcrypt

    data = password.encode()
    if len(data) > BCRYPT_MAX_BYTES:
        raise ValueError(f"password is {len(data)} bytes; bcrypt uses at most {BCRYPT_MAX_BYTES}")
    return bcrypt.hashpw(data, bcrypt.gensalt(rounds=rounds)).decode()


@lru_cache
def _dummy_hash(rounds: int) -> bytes:
    """A hash of a random password: checking against it costs what a real check costs, so an unknown
    email answers as slowly as a wrong password (no user enumeration by timing)."""
    return hash_password(secrets.token_hex(16), rounds).encode()


def verify_password(password: str, password_hash: str | None, rounds: int = 12) -> bool:
    """True when the password matches; with no hash it still spends a bcrypt check and answers False."""
    import bcrypt

    data = password.encode()
    if len(data) > BCRYPT_MAX_BYTES:
        data = data[:BCRYPT_MAX_BYTES]  # can never match: stored passwords are at most 72 bytes
        password_hash = None
    target = password_hash.encode() if password_hash else _dummy_hash(rounds)
    try:
        ok = bcrypt.checkpw(data, target)
    except ValueError:  # a corrupt stored hash
        return False
    return ok and password_hash is not None


def create_access_token(
    user_id: int, key: str, expires_minutes: int, now: datetime | None = None, version: int = 0
) -> str:
    """A JWT for the user; `version` is the user's token_version (raising it refuses older tokens)."""
    issued = now or datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "ver": version,
        "iat": issued,
        "exp": issued + timedelta(minutes=expires_minutes),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def decode_access_token(token: str, key: str) -> int:
    """The user id in a valid token; InvalidToken for anything else."""
    return decode_token(token, key)[0]


def decode_token(token: str, key: str) -> tuple[int, int]:
    """(user id, token version) of a valid token (a token without "ver" is version 0); InvalidToken else."""
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["sub", "iat", "exp"]})
        version = claims.get("ver", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidToken("bad token version")
        return int(claims["sub"]), version
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidToken(str(exc)) from exc


API_KEY_PREFIX = "slm-"


def new_api_key() -> str:
    """`slm-` + 32 random bytes (URL-safe base64): shown to its owner once, stored only as its hash."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_hash(key: str) -> str:
    """SHA-256 hex: a key has 256 random bits, so a fast hash is enough (no salt, no bcrypt needed)."""
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()
