from datetime import UTC, datetime, timedelta

import pytest

from shared.security import (
    InvalidToken,
    create_access_token,
    decode_access_token,
    hash_password,
    verify_password,
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

    token = create_access_token(42, KEY, 5)
    claims = jwt.decode(token, KEY, algorithms=["HS256"])
    assert claims["sub"] == "42" and claims["exp"] - claims["iat"] == 300
    assert decode_access_token(token, KEY) == 42


@pytest.mark.parametrize(
    "token",
    [
        create_access_token(1, "some-other-key-that-is-long-enough-000", 5),
        create_access_token(1, KEY, 5, now=datetime.now(UTC) - timedelta(minutes=10)),
        "garbage",
        "",
    ],
)
def test_decode_refuses_bad_tokens(token: str) -> None:
    with pytest.raises(InvalidToken):
        decode_access_token(token, KEY)


def test_security_module_does_not_import_fastapi() -> None:
    import ast
    from pathlib import Path

    import shared.security as module

    tree = ast.parse(Path(module.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any("fastapi" in str(m) or "starlette" in str(m) for m in names | modules)
