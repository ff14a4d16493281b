from datetime import UTC, datetime, timedelta

import pytest

from shared.security import (
    InvalidToken,
    create_access_token,
    create_device_token,
    decode_device_token,
    decode_token,
    hash_password,
    hash_password_async,
    verify_password,
    verify_password_async,
)

KEY = "unit-test-key-that-is-long-enough-123456"


def test_hash_and_verify_password() -> None:
    hashed = hash_password("correct horse", rounds=4)
    assert hashed.startswith("$2b$04$") and "correct" not in hashed
    assert verify_password("correct horse", hashed, rounds=4)
    assert not verify_password("correct horsE", hashed, rounds=4)


def test_verify_without_a_hash_is_false() -> None:
    assert not verify_password("anything at all", None, rounds=4)


def test_hash_refuses_over_72_bytes_instead_of_truncating() -> None:
    with pytest.raises(ValueError, match="73 bytes"):
        hash_password("x" * 73, rounds=4)


def test_verify_never_matches_a_longer_password() -> None:
    hashed = hash_password("y" * 72, rounds=4)
    assert not verify_password("y" * 72 + "z", hashed, rounds=4)


def test_token_round_trip_has_sub_iat_exp() -> None:
    import jwt

    token = create_access_token("a1b2c3", KEY, 5, version=3)
    claims = jwt.decode(token, KEY, algorithms=["HS256"])
    assert claims["sub"] == "a1b2c3" and claims["exp"] - claims["iat"] == 300
    assert decode_token(token, KEY) == ("a1b2c3", 3)


@pytest.mark.parametrize(
    "token",
    [
        create_access_token("s", "some-other-key-that-is-long-enough-000", 5),
        create_access_token("s", KEY, 5, now=datetime.now(UTC) - timedelta(minutes=10)),
        create_device_token("s", KEY, 30),  # a device token is no access token
        "garbage",
        "",
    ],
)
def test_decode_refuses_bad_tokens(token: str) -> None:
    with pytest.raises(InvalidToken):
        decode_token(token, KEY)


def test_device_tokens_name_the_account_and_a_device_of_their_own() -> None:
    first, second = create_device_token("subj", KEY, 30), create_device_token("subj", KEY, 30)
    (subject, device), (_, other) = decode_device_token(first, KEY), decode_device_token(second, KEY)  # type: ignore[misc]
    assert subject == "subj" and device != other
    assert decode_device_token(create_access_token("subj", KEY, 5), KEY) is None  # nor the other way round
    assert (
        decode_device_token(create_device_token("subj", "another-key-that-is-long-enough-0000", 30), KEY)
        is None
    )
    expired = create_device_token("subj", KEY, 1, now=datetime.now(UTC) - timedelta(days=2))
    assert decode_device_token(expired, KEY) is None and decode_device_token("", KEY) is None


def test_bcrypt_runs_off_the_event_loop() -> None:
    """While checks run, the event loop keeps turning: a ticker counts its turns during 4 checks at once
    (on the loop, bcrypt would hold it for the whole of each check and the ticker would not run)."""
    import asyncio

    hashed = hash_password("correct horse", rounds=10)

    async def scenario() -> tuple[list[bool], int, str]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        guesses = ("correct horse", "wrong", "x", "y")
        results = await asyncio.gather(*(verify_password_async(p, hashed, rounds=10) for p in guesses))
        task.cancel()
        return results, ticks, await hash_password_async("s3cret words", rounds=4)

    results, ticks, new_hash = asyncio.run(scenario())
    assert results == [True, False, False, False]
    assert ticks > 10
    assert verify_password("s3cret words", new_hash, rounds=4)


def test_security_module_does_not_import_fastapi() -> None:
    import ast
    from pathlib import Path

    import shared.security as module

    tree = ast.parse(Path(module.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any("fastapi" in str(m) or "starlette" in str(m) for m in names | modules)


def test_a_device_token_is_of_the_token_version_it_was_given_at() -> None:
    """A password change or a log out everywhere raises the account's token version: its devices are unknown again."""
    token = create_device_token("subj", KEY, 30, version=3)
    assert decode_device_token(token, KEY, 3) is not None and decode_device_token(token, KEY) is not None
    assert decode_device_token(token, KEY, 4) is None
    assert decode_device_token(create_device_token("subj", KEY, 30), KEY, 0) is not None  # the default: 0


def test_an_ipv6_client_is_counted_by_its_64() -> None:
    """A subscriber's IPv6 network holds 2**64 addresses: counted one by one, each had limits of its own."""
    from shared.deps import address_for_limits

    assert address_for_limits("2001:db8::1") == address_for_limits("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_for_limits("2001:db8:0:1::1") == "2001:db8:0:1::/64"  # the next network: its own
    assert address_for_limits("::ffff:192.0.2.7") == "192.0.2.7" == address_for_limits("192.0.2.7")
    assert address_for_limits("testclient") == "testclient"
