"""Auth function: register, log in (rate limited per account and per client IP), the current user: read,
change the password, log out everywhere, delete the account; API keys for /v1."""

from shared import coldstart

coldstart.pause()  # no cyclic collection while the modules below are imported (see resume below)

from typing import Annotated, cast

from fastapi import APIRouter, Path, Request, Response, status
from sqlalchemy import Table, delete, or_, select
from sqlalchemy.exc import IntegrityError

from functions.auth.guard import check_password, remember_device, require_password
from shared import ratelimit, stops
from shared.app import Component, create_app
from shared.crud import insert_within_cap
from shared.database import writing
from shared.deps import CurrentUser, SessionDep, SettingsDep, client_address
from shared.errors import APIError, error_responses, not_found
from shared.models import ApiKey, Conversation, RateLimitBucket, User, utcnow
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
from shared.security import api_key_hash, create_access_token, hash_password_async, new_api_key
from shared.settings import Settings

router = APIRouter(prefix="/api/auth", tags=["auth"])
KeyId = Annotated[int, Path(ge=1, le=2_147_483_647, description="an API key's id")]


def _token(user: User, settings: Settings) -> TokenPublic:
    token = create_access_token(
        user.subject, settings.jwt_key, settings.jwt_expire_minutes, version=user.token_version
    )
    return TokenPublic(
        access_token=token, expires_in=settings.jwt_expire_minutes * 60, user=UserPublic.model_validate(user)
    )


def _email_taken() -> APIError:
    return APIError(
        409,
        "email_taken",
        "An account with this email already exists",
        fields={"email": "already registered"},
    )


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenPublic,
    responses=error_responses(409, 429),
)
async def create_user(
    body: UserCreate, request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> TokenPublic:
    per_ip = ratelimit.Limit(f"register:ip:{client_address(request)}", settings.register_max_per_ip, 3600)
    await ratelimit.enforce(session, per_ip, "registrations from this address")
    if await session.scalar(select(User.id).where(User.email == body.email)) is not None:
        raise _email_taken()
    user = User(
        email=body.email, password_hash=await hash_password_async(body.password, settings.bcrypt_rounds)
    )
    try:
        async with writing(session):
            session.add(user)
            await session.commit()
    except IntegrityError as exc:  # the same email registered at the same moment by another request
        raise _email_taken() from exc
    remember_device(request, response, user, settings)
    return _token(user, settings)


@router.post("/login", response_model=TokenPublic, responses=error_responses(401, 429))
async def login(
    body: UserLogin, request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> TokenPublic:
    """Limited per client address, per known device (a cookie from an earlier login of this account),
    and for other clients per (account, address) and per account: functions/auth/guard.py."""
    user = await session.scalar(select(User).where(User.email == body.email))
    if not await check_password(request, session, settings, body.email, body.password, user):
        raise APIError(401, "invalid_credentials", "Wrong email or password")
    assert user is not None
    remember_device(request, response, user, settings)
    return _token(user, settings)


@router.get("/me", response_model=UserPublic, responses=error_responses(401))
async def read_me(user: CurrentUser) -> User:
    return user


@router.post("/password", response_model=TokenPublic, responses=error_responses(401, 429))
async def change_password(
    body: PasswordChange,
    user: CurrentUser,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
) -> TokenPublic:
    """A new password; every token issued before it is refused from now on. Returns a fresh token. The
    current password is checked like a login (limited per device, address and account)."""
    await require_password(request, session, settings, user, body.current_password)
    new_hash = await hash_password_async(body.new_password, settings.bcrypt_rounds)
    async with writing(session):
        user.password_hash = new_hash
        user.token_version += 1
        await session.commit()
    remember_device(request, response, user, settings)
    return _token(user, settings)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401))
async def logout(user: CurrentUser, session: SessionDep) -> Response:
    """Log out everywhere: every token of this user issued so far is refused (API keys stay)."""
    async with writing(session):
        user.token_version += 1
        await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 429))
async def delete_me(
    body: AccountDelete, user: CurrentUser, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """Delete the account: the user, their conversations and messages, API keys and limit counters. Its
    answers still generating stop (in this process at their next decode step, elsewhere at their next
    save, which finds the conversation gone), and their final saves write nothing. The password is
    checked like a login."""
    await require_password(request, session, settings, user, body.password)
    async with writing(session):
        # read under the write lock (SQLite): no conversation of this process is added meanwhile
        conversations = list(
            await session.scalars(select(Conversation.id).where(Conversation.user_id == user.id))
        )
        # the user first: on PostgreSQL the cascade waits for a final save in flight (it holds its
        # answer's row), so the counters deleted next include any that save counted
        await session.delete(user)  # conversations, messages and keys go with it (ON DELETE CASCADE)
        await session.flush()
        await session.execute(delete(RateLimitBucket).where(or_(*ratelimit.keys_of(user.id, user.email))))
        await session.commit()
    for conversation_id in conversations:
        stops.announce(conversation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=error_responses(401, 429),
)
async def create_key(
    body: ApiKeyCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> ApiKeyCreated:
    """A key for /v1 (`Authorization: Bearer slm-...`), shown only in this answer; at most
    max_api_keys_per_user of them."""
    key, now = new_api_key(), utcnow()
    values = {"user_id": user.id, "name": body.name, "key_hash": api_key_hash(key), "created_at": now}
    cap = settings.max_api_keys_per_user
    async with writing(session):
        key_id = await insert_within_cap(session, cast(Table, ApiKey.__table__), user.id, cap, values)
        if key_id is None:
            await session.rollback()
            raise APIError(429, "api_key_limit", f"An account has at most {cap} API keys: revoke one first")
        await session.commit()
    return ApiKeyCreated(id=key_id, name=body.name, created_at=now, key=key)


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
    async with writing(session):
        await session.delete(row)
        await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


component = Component(router=router)
app = create_app("auth", [component])
coldstart.resume()
