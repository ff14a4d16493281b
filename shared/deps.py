"""FastAPI dependency aliases: SessionDep (one session per request) and CurrentUser (from the bearer JWT)."""

from typing import Annotated

from fastapi import Depends, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from shared.database import get_session
from shared.errors import APIError
from shared.models import User
from shared.security import InvalidToken, decode_access_token
from shared.settings import Settings, get_settings

ConversationId = Annotated[int, Path(ge=1, le=2_147_483_647, description="a conversation's id")]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
_bearer = HTTPBearer(auto_error=False, description="The access token from /api/auth/login")


def _unauthorized(message: str) -> APIError:
    return APIError(401, "not_authenticated", message, headers={"WWW-Authenticate": "Bearer"})


async def get_current_user(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None:
        raise _unauthorized("Missing bearer token: log in and send 'Authorization: Bearer <token>'")
    try:
        user_id = decode_access_token(credentials.credentials, settings.jwt_key)
    except InvalidToken as exc:
        raise _unauthorized("Invalid or expired token") from exc
    user = await session.get(User, user_id)
    if user is None:
        raise _unauthorized("The account of this token no longer exists")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
