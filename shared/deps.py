"""FastAPI dependency aliases: SessionDep (one session per request), CurrentUser (from the bearer JWT) and
ApiUser (a JWT or an API key, for /v1)."""

import ipaddress
import json
import os
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.database import get_session
from shared.errors import APIError
from shared.models import ApiKey, User
from shared.security import API_KEY_PREFIX, InvalidToken, api_key_hash, decode_token
from shared.settings import Settings, get_settings

ConversationId = Annotated[int, Path(ge=1, le=2_147_483_647, description="a conversation's id")]


async def _settings() -> Settings:
    """get_settings as an async dependency: FastAPI runs a plain `def` one in its thread pool, a thread
    hop on every request (under load it waits for a core the model's decode steps hold)."""
    return get_settings()


# closed when the route returns, before a streamed body is sent: a stream never pins a pooled connection
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(_settings)]
_bearer = HTTPBearer(auto_error=False, description="The access token from /api/auth/login")


# built once: each request binds its value
_USER_OF_SUBJECT = select(User).where(User.subject == bindparam("subject"))
_USER_OF_KEY = (
    select(User).join(ApiKey, ApiKey.user_id == User.id).where(ApiKey.key_hash == bindparam("key_hash"))
)


def _unauthorized(message: str) -> APIError:
    return APIError(401, "not_authenticated", message, headers={"WWW-Authenticate": "Bearer"})


async def _user_of_token(session: AsyncSession, settings: Settings, token: str) -> User:
    try:
        subject, version = decode_token(token, settings.jwt_key)
    except InvalidToken as exc:
        raise _unauthorized("Invalid or expired token") from exc
    user = await session.scalar(_USER_OF_SUBJECT, {"subject": subject})
    if user is None:
        raise _unauthorized("The account of this token no longer exists")
    if user.token_version != version:  # a password change or "log out everywhere" since it was issued
        raise _unauthorized("This token was revoked: log in again")
    return user


async def get_current_user(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None:
        raise _unauthorized("Missing bearer token: log in and send 'Authorization: Bearer <token>'")
    return await _user_of_token(session, settings, credentials.credentials)


async def get_api_user(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """/v1: `Authorization: Bearer slm-...` (an API key from /api/auth/keys) or the JWT."""
    if credentials is None:
        raise _unauthorized("Missing bearer token: send 'Authorization: Bearer <API key or token>'")
    token = credentials.credentials
    if not token.startswith(API_KEY_PREFIX):
        return await _user_of_token(session, settings, token)
    user = await session.scalar(_USER_OF_KEY, {"key_hash": api_key_hash(token)})
    if user is None:
        raise _unauthorized("Unknown or revoked API key")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
ApiUser = Annotated[User, Depends(get_api_user)]


def client_address(request: Request) -> str:
    """The client address the limits count, never taken from a header a client can set: on AWS the
    event's requestContext (HTTP API and Function URL through Mangum; Lambda Web Adapter passes it on as
    x-amzn-request-context, read only on Lambda); behind nginx the socket peer as uvicorn's trusted proxy
    headers give it (nginx sends X-Forwarded-For $remote_addr, and uvicorn trusts only nginx's address)."""
    event = request.scope.get("aws.event")
    context = event.get("requestContext") if isinstance(event, dict) else None
    if context is None and os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        try:
            context = json.loads(request.headers.get("x-amzn-request-context", "null"))
        except ValueError:
            context = None
    if isinstance(context, dict):
        for part in ("http", "identity"):  # HTTP API v2 / Function URL, REST API v1
            source = (context.get(part) or {}).get("sourceIp")
            if isinstance(source, str) and source:
                return address_for_limits(source)
    return address_for_limits(request.client.host if request.client else "unknown")


def address_for_limits(host: str) -> str:
    """The unit an address limit counts: an IPv4 address, or an IPv6 address's /64 (one subscriber's
    network holds 2**64 addresses: counted one by one, each had its own limits); an IPv4-mapped IPv6
    address is its IPv4 one. Anything else (a test client's name) as it is."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)
