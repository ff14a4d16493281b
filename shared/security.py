"""Password hashing (bcrypt, off the event loop), access tokens and device tokens (PyJWT, HS256). No web
framework in here."""

import asyncio
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt

ALGORITHM = "HS256"
BCRYPT_MAX_BYTES = 72
DEVICE_AUDIENCE = "slm-device"  # device tokens carry it; access tokens must not (a device token is no login)


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


_pool: ThreadPoolExecutor | None = None


def _bcrypt_pool() -> ThreadPoolExecutor:
    """A bounded pool for bcrypt: a check takes ~0.25 s of CPU at 12 rounds, and on the event loop ten of
    them at once froze every other request (health too) for seconds. bcrypt releases the GIL; the pool
    leaves one CPU to the event loop (and the model), so the rest of the app keeps answering while
    checks wait their turn."""
    global _pool
    if _pool is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        workers = max(1, min(4, cpus - 1))
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bcrypt")
    return _pool


async def hash_password_async(password: str, rounds: int = 12) -> str:
    """hash_password in the bcrypt pool."""
    return await asyncio.get_running_loop().run_in_executor(_bcrypt_pool(), hash_password, password, rounds)


async def verify_password_async(password: str, password_hash: str | None, rounds: int = 12) -> bool:
    """verify_password in the bcrypt pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_bcrypt_pool(), verify_password, password, password_hash, rounds)


def create_access_token(
    subject: str, key: str, expires_minutes: int, now: datetime | None = None, version: int = 0
) -> str:
    """A JWT naming the user by its random `subject` (never its id, which a later user could get where
    ids repeat); `version` is the user's token_version (raising it refuses older tokens)."""
    issued = now or datetime.now(UTC)
    claims = {
        "sub": subject,
        "ver": version,
        "iat": issued,
        "exp": issued + timedelta(minutes=expires_minutes),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def decode_token(token: str, key: str) -> tuple[str, int]:
    """(subject, token version) of a valid access token (without "ver": version 0); InvalidToken else,
    a device token included."""
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["sub", "iat", "exp"]})
        version = claims.get("ver", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidToken("bad token version")
        if not isinstance(claims["sub"], str) or "aud" in claims:
            raise InvalidToken("not an access token")
        return claims["sub"], version
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidToken(str(exc)) from exc


def create_device_token(
    subject: str, key: str, days: int, now: datetime | None = None, version: int = 0
) -> str:
    """OWASP's device cookie: proof that this browser once logged in to the account `subject`. It
    carries a random id of its own (`dev`), so each device has its own allowance of failed logins, and
    the account's token version (`ver`): a password change or a log out everywhere, which raise it, make
    every device unknown again (a cookie kept by someone who once knew the password no longer buys
    guesses after the owner changed it)."""
    issued = now or datetime.now(UTC)
    claims = {
        "sub": subject,
        "aud": DEVICE_AUDIENCE,
        "dev": secrets.token_hex(8),
        "ver": version,
        "iat": issued,
        "exp": issued + timedelta(days=days),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def decode_device_token(token: str, key: str, version: int | None = None) -> tuple[str, str] | None:
    """(subject, device id) of a valid device token (of token version `version` when given), else None
    (a device token is only ever a hint)."""
    try:
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], audience=DEVICE_AUDIENCE, options={"require": ["sub", "exp"]}
        )
    except jwt.PyJWTError:
        return None
    subject, device = claims.get("sub"), claims.get("dev")
    if version is not None and claims.get("ver", 0) != version:
        return None
    if isinstance(subject, str) and isinstance(device, str) and device.isalnum():
        return subject, device
    return None


API_KEY_PREFIX = "slm-"


def new_api_key() -> str:
    """`slm-` + 32 random bytes (URL-safe base64): shown to its owner once, stored only as its hash."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_hash(key: str) -> str:
    """SHA-256 hex: a key has 256 random bits, so a fast hash is enough (no salt, no bcrypt needed)."""
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()
