"""Auth function: register, log in (rate limited per account and per client IP), the current user: read,
change the password, log out everywhere, delete the account; API keys for /v1."""

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError

from shared import ratelimit
from shared.app import Component, create_app
from shared.deps import CurrentUser, SessionDep, SettingsDep, client_address
from shared.errors import APIError, error_responses, not_found
from shared.models import ApiKey, RateLimitBucket, User
from shared.schemas import (
    AccountDelete,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    PasswordChange,
    TokenPublic,
    UserCreate,
    UserLogin,
    UserPublic,
)
from shared.security import api_key_hash, create_access_token, hash_password, new_api_key, verify_password
from shared.settings import Settings

router = APIRouter(prefix="/api/auth", tags=["auth"])
KeyId = Annotated[int, Path(ge=1, le=2_147_483_647, description="an API key's id")]


def _token(user: User, settings: Settings) -> TokenPublic:
    token = create_access_token(
        user.id, settings.jwt_key, settings.jwt_expire_minutes, version=user.token_version
    )
    return TokenPublic(
        access_token=token, expires_in=settings.jwt_expire_minutes * 60, user=UserPublic.model_validate(user)
    )


LOGIN_ATTEMPTS = "login attempts"


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenPublic,
    responses=error_responses(409, 429),
)
async def create_user(
    body: UserCreate, request: Request, session: SessionDep, settings: SettingsDep
) -> TokenPublic:
    per_ip = ratelimit.Limit(f"register:ip:{client_address(request)}", settings.register_max_per_ip, 3600)
    await ratelimit.enforce(session, per_ip, "registrations from this address")
    if await session.scalar(select(User.id).where(User.email == body.email)) is not None:
        raise APIError(
            409,
            "email_taken",
            "An account with this email already exists",
            fields={"email": "already registered"},
        )
    user = User(email=body.email, password_hash=hash_password(body.password, settings.bcrypt_rounds))
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:  # the same email registered at the same moment by another request
        await session.rollback()
        raise APIError(
            409,
            "email_taken",
            "An account with this email already exists",
            fields={"email": "already registered"},
        ) from exc
    return _token(user, settings)


@router.post("/login", response_model=TokenPublic, responses=error_responses(401, 429))
async def login(body: UserLogin, request: Request, session: SessionDep, settings: SettingsDep) -> TokenPublic:
    """Limited per client address (attempts), per (account, address) (failures: someone guessing from
    elsewhere never locks the owner out), and per account across addresses: past login_account_cap
    failures in a row the account takes one attempt a minute from anywhere."""
    window, address = settings.login_window_seconds, client_address(request)
    per_ip = ratelimit.Limit(f"login:ip:{address}", settings.login_max_attempts_per_ip, window)
    per_pair = ratelimit.Limit(
        f"login:fail:{body.email}|{address}", settings.login_max_failures_per_account, window
    )
    account = ratelimit.Limit(f"login:account:{body.email}", settings.login_account_cap, 30 * 24 * 3600)
    await ratelimit.enforce(session, per_ip, LOGIN_ATTEMPTS)
    await ratelimit.enforce(session, per_pair, LOGIN_ATTEMPTS, count=False)
    if await ratelimit.exceeded(session, account) is not None:  # under attack: one attempt a minute
        await ratelimit.enforce(
            session, ratelimit.Limit(f"login:throttle:{body.email}", 1, 60), LOGIN_ATTEMPTS
        )

    user = await session.scalar(select(User).where(User.email == body.email))
    if not verify_password(body.password, user.password_hash if user else None, settings.bcrypt_rounds):
        await ratelimit.hit(session, per_pair)
        await ratelimit.hit(session, account)
        raise APIError(401, "invalid_credentials", "Wrong email or password")
    assert user is not None
    await ratelimit.reset(session, per_pair.key)
    await ratelimit.reset(session, account.key)
    return _token(user, settings)


@router.get("/me", response_model=UserPublic, responses=error_responses(401))
async def read_me(user: CurrentUser) -> User:
    return user


def _wrong_password() -> APIError:
    return APIError(401, "invalid_credentials", "Wrong password", fields={"password": "wrong password"})


@router.post("/password", response_model=TokenPublic, responses=error_responses(401))
async def change_password(
    body: PasswordChange, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> TokenPublic:
    """A new password; every token issued before it is refused from now on. Returns a fresh token."""
    if not verify_password(body.current_password, user.password_hash, settings.bcrypt_rounds):
        raise _wrong_password()
    user.password_hash = hash_password(body.new_password, settings.bcrypt_rounds)
    user.token_version += 1
    await session.commit()
    return _token(user, settings)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401))
async def logout(user: CurrentUser, session: SessionDep) -> Response:
    """Log out everywhere: every token of this user issued so far is refused (API keys stay)."""
    user.token_version += 1
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401))
async def delete_me(
    body: AccountDelete, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> Response:
    """Delete the account: the user, their conversations and messages, API keys and limit counters."""
    if not verify_password(body.password, user.password_hash, settings.bcrypt_rounds):
        raise _wrong_password()
    await session.execute(delete(RateLimitBucket).where(or_(*ratelimit.keys_of(user.id, user.email))))
    await session.delete(user)  # conversations, messages and keys go with it (ON DELETE CASCADE)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated, responses=error_responses(401)
)
async def create_key(body: ApiKeyCreate, user: CurrentUser, session: SessionDep) -> ApiKeyCreated:
    """A key for /v1 (`Authorization: Bearer slm-...`), shown only in this answer."""
    key = new_api_key()
    row = ApiKey(user_id=user.id, name=body.name, key_hash=api_key_hash(key))
    session.add(row)
    await session.commit()
    return ApiKeyCreated(id=row.id, name=row.name, created_at=row.created_at, key=key)


@router.get("/keys", response_model=list[ApiKeyPublic], responses=error_responses(401))
async def read_keys(user: CurrentUser, session: SessionDep) -> list[ApiKey]:
    """The user's API keys, newest first, without their secrets."""
    rows = await session.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id.desc()))
    return list(rows)


@router.delete("/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 404))
async def delete_key(key_id: KeyId, user: CurrentUser, session: SessionDep) -> Response:
    """Revoke a key: /v1 refuses it from now on."""
    row = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user.id))
    if row is None:
        raise not_found("API key")
    await session.delete(row)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


component = Component(router=router)
app = create_app("auth", [component])
