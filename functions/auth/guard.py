"""Password checks under attack: OWASP's device cookies, limits reserved before bcrypt runs.

Login, password change and account deletion all check a password through `check_password`:

- a browser presenting a device token of this account (a cookie given at each successful check, valid
  until the account's next password change or log out everywhere) has `login_max_failures_per_account`
  failures per window of its own, whatever else happens to the account or to its address, and the
  account's known devices together `login_max_attempts_per_ip` checks per window;
- any other client has `login_max_attempts_per_ip` attempts per window from its address, that many
  failures per (account, address), and all of them together `login_account_cap` per
  `login_untrusted_window_seconds`; past that, only known devices may try until the window ends, so a
  trickle of guesses from many addresses never shuts the owner out of a browser they used before.

Each failure is reserved before bcrypt runs, in one atomic statement per counter (shared/ratelimit.py),
so 30 guesses sent at once are evaluated no more than the limit allows; a success gives its reservation
back. The bcrypt check itself runs in a bounded thread pool, off the event loop.
"""

import time
from dataclasses import dataclass

from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from shared import ratelimit
from shared.database import writing
from shared.deps import client_address
from shared.errors import APIError
from shared.models import User
from shared.security import create_device_token, decode_device_token, verify_password_async
from shared.settings import Settings

DEVICE_COOKIE = "slm_device"
LOGIN_ATTEMPTS = "login attempts"


@dataclass(frozen=True, kw_only=True)
class Allowance:
    """The counters one password check reserves from before bcrypt runs."""

    attempts: list[ratelimit.Limit]  # every attempt counts, whatever its outcome: never given back
    failures: list[ratelimit.Limit]  # given back when the password is right
    own: list[ratelimit.Limit]  # this client's own failures: forgotten when the password is right


def _allowance(request: Request, settings: Settings, email: str, user: User | None) -> Allowance:
    """A browser that logged in to this account before (its device token names the account) has an
    allowance of its own and nothing else: not even its address's, which under `make run` every local
    client shares, so an attacker on the same machine cannot spend it. Any other client has its address's
    attempts, its failures for this account, and the account's failures from unknown clients."""
    window, address = settings.login_window_seconds, client_address(request)
    cookie = request.cookies.get(DEVICE_COOKIE, "")
    device = decode_device_token(cookie, settings.jwt_key, user.token_version) if user is not None else None
    if user is not None and device is not None and device[0] == user.subject:
        known = ratelimit.Limit(
            f"login:device:{email}|{device[1]}", settings.login_max_failures_per_account, window
        )
        # every check from the account's known devices together, right or wrong: each login mints a new
        # device, and unlimited right passwords from one's own account kept the bcrypt pool busy for all
        checks = ratelimit.Limit(f"login:known:{email}", settings.login_max_attempts_per_ip, window)
        return Allowance(attempts=[checks], failures=[known], own=[known])
    per_ip = ratelimit.Limit(f"login:ip:{address}", settings.login_max_attempts_per_ip, window)
    pair = ratelimit.Limit(f"login:fail:{email}|{address}", settings.login_max_failures_per_account, window)
    untrusted = ratelimit.Limit(
        f"login:untrusted:{email}", settings.login_account_cap, settings.login_untrusted_window_seconds
    )
    return Allowance(attempts=[per_ip], failures=[pair, untrusted], own=[pair])


async def check_password(
    request: Request,
    session: AsyncSession,
    settings: Settings,
    email: str,
    password: str,
    user: User | None,
) -> bool:
    """True when `password` is `user`'s. 429 (nothing checked) when a limit of this attempt is spent."""
    allowance = _allowance(request, settings, email, user)
    now = time.time()
    async with writing(session):
        failures: list[ratelimit.Taken] = []
        for limit in [*allowance.attempts, *allowance.failures]:
            if (reserved := await ratelimit.take(session, limit, now=now)) is None:
                await session.rollback()
                raise ratelimit.too_many(limit.retry_after(now), LOGIN_ATTEMPTS)
            if limit in allowance.failures and limit not in allowance.own:
                failures.append(reserved)
        await session.commit()
    ok = await verify_password_async(password, user.password_hash if user else None, settings.bcrypt_rounds)
    if ok:  # the failure reserved for this attempt is given back, and this client's failures forgotten
        async with writing(session):
            await ratelimit.reset(session, *(limit.key for limit in allowance.own))
            for reserved in failures:
                await ratelimit.give_back(session, reserved)
            await session.commit()
    return ok


async def require_password(
    request: Request, session: AsyncSession, settings: Settings, user: User, password: str
) -> None:
    """401 `invalid_credentials` unless `password` is the signed-in user's (limited like a login)."""
    if not await check_password(request, session, settings, user.email, password, user):
        raise APIError(401, "invalid_credentials", "Wrong password", fields={"password": "wrong password"})


def remember_device(request: Request, response: Response, user: User, settings: Settings) -> None:
    """Give this browser a device token for `user` (HttpOnly, SameSite=Strict, only ever sent to
    /api/auth): from now on its failed logins count on their own."""
    token = create_device_token(
        user.subject, settings.jwt_key, settings.device_token_days, version=user.token_version
    )
    response.set_cookie(
        DEVICE_COOKIE,
        token,
        max_age=settings.device_token_days * 24 * 3600,
        path="/api/auth",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
