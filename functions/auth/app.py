"""Auth function: register, log in (rate limited per account and per client IP), read the current user."""

from fastapi import APIRouter, Request, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shared import ratelimit
from shared.app import Component, create_app
from shared.deps import CurrentUser, SessionDep, SettingsDep
from shared.errors import APIError, error_responses
from shared.models import User
from shared.schemas import TokenPublic, UserCreate, UserLogin, UserPublic
from shared.security import create_access_token, hash_password, verify_password
from shared.settings import Settings

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _token(user: User, settings: Settings) -> TokenPublic:
    token = create_access_token(user.id, settings.jwt_key, settings.jwt_expire_minutes)
    return TokenPublic(
        access_token=token, expires_in=settings.jwt_expire_minutes * 60, user=UserPublic.model_validate(user)
    )


def _rate_limited(retry_after: int) -> APIError:
    return APIError(
        429,
        "rate_limited",
        f"Too many login attempts; try again in {retry_after} seconds",
        headers={"Retry-After": str(retry_after)},
    )


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenPublic,
    responses=error_responses(409),
)
async def create_user(body: UserCreate, session: SessionDep, settings: SettingsDep) -> TokenPublic:
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
    window = settings.login_window_seconds
    per_ip = ratelimit.Limit(
        f"login:ip:{request.client.host if request.client else 'unknown'}",
        settings.login_max_attempts_per_ip,
        window,
    )
    per_account = ratelimit.Limit(
        f"login:account:{body.email}", settings.login_max_failures_per_account, window
    )
    for limit in (per_ip, per_account):
        if (retry_after := await ratelimit.exceeded(session, limit)) is not None:
            raise _rate_limited(retry_after)
    await ratelimit.hit(session, per_ip)

    user = await session.scalar(select(User).where(User.email == body.email))
    if not verify_password(body.password, user.password_hash if user else None, settings.bcrypt_rounds):
        await ratelimit.hit(session, per_account)
        raise APIError(401, "invalid_credentials", "Wrong email or password")
    assert user is not None
    await ratelimit.reset(session, per_account.key)
    return _token(user, settings)


@router.get("/me", response_model=UserPublic, responses=error_responses(401))
async def read_me(user: CurrentUser) -> User:
    return user


component = Component(router=router)
app = create_app("auth", [component])
