"""Login, token refresh, logout, and API keys for machine clients.

(No postponed annotations here: the routes are built inside a function and their
``Annotated`` dependencies name local variables, which FastAPI must see at definition.)
"""

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orders_service._schemas import ApiKeyCreate, ApiKeyCreated, Login, Refresh, TokenResponse
from orders_service._settings import OrdersLimits
from orders_service._users import UserDirectory
from saasfw.app import AuthComponents, auth_components, database
from saasfw.db import Database
from saasfw.security import (
    InvalidTokenError,
    Principal,
    RateLimit,
    SecurityError,
    TokenIssuer,
    TokenPair,
    public,
    require,
)

__all__ = ["build_auth_router"]

Auth = Annotated[AuthComponents, Depends(auth_components)]
Db = Annotated[Database, Depends(database)]
_bearer = HTTPBearer(auto_error=False, scheme_name="bearerAuth")
_REALM = 'Bearer realm="orders-service"'


def _tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=max(0, int(pair.access_expires_at - time.time())),
    )


def _issuer(auth: AuthComponents) -> TokenIssuer:
    if auth.issuer is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Token issuance is off.")
    return auth.issuer


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def build_auth_router(limits: OrdersLimits) -> APIRouter:
    """The ``/auth`` and ``/api-keys`` routes with the configured per-route limits."""
    router = APIRouter(tags=["auth"])
    # Per client address: a password-guessing client cannot reset its budget. Sensitive:
    # closed while the limiter's storage is down, whatever the global policy.
    login_limit = RateLimit(limits.login, group="login", key="address", sensitive=True)

    @router.post(
        "/auth/login",
        dependencies=[Depends(public), Depends(login_limit)],
        summary="Log in with a username and password",
    )
    async def login(body: Login, request: Request, auth: Auth, db: Db) -> TokenResponse:
        """Exchange credentials for an access token (15 min) and a refresh token."""
        user = await UserDirectory(db.engine).get(body.username)
        # Unknown and disabled users cost the same work, publish the same event and get
        # the same answer as wrong passwords.
        known = user if user is not None and user.active else None
        check = await auth.passwords.login(
            body.username,
            known.password_hash if known else None,
            body.password,
            events=auth.events,
            address=_client(request),
        )
        if known is None or not check.valid:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "The username or password is not correct.",
                headers={"WWW-Authenticate": _REALM},
            )
        pair = await _issuer(auth).issue(body.username, tenant=known.tenant, roles=known.roles)
        return _tokens(pair)

    @router.post(
        "/auth/refresh",
        dependencies=[Depends(public), Depends(login_limit)],
        summary="Rotate a refresh token",
    )
    async def refresh(body: Refresh, request: Request, auth: Auth) -> TokenResponse:
        """A new token pair; the refresh token is spent (a reuse revokes the whole family)."""
        try:
            pair = await _issuer(auth).refresh(body.refresh_token, address=_client(request))
        except SecurityError as exc:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "The refresh token is not valid.",
                headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
            ) from exc
        return _tokens(pair)

    @router.post(
        "/auth/logout",
        status_code=status.HTTP_204_NO_CONTENT,
        summary="Revoke the access token (and the refresh family)",
    )
    async def logout(
        auth: Auth,
        principal: Annotated[Principal, Depends(require())],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        body: Refresh | None = None,
    ) -> Response:
        """The access token stops working at once; with a refresh token, its family too."""
        if credentials is None or principal.auth_method != "jwt":
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Only bearer tokens can log out.")
        try:
            await _issuer(auth).logout(
                credentials.credentials, body.refresh_token if body is not None else None
            )
        except InvalidTokenError as exc:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "The token is not valid.") from exc
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # Per verified principal: declared after require(...), so the principal is known.
    api_key_limit = RateLimit(limits.api_keys, key="principal", sensitive=True)

    @router.post(
        "/api-keys",
        status_code=status.HTTP_201_CREATED,
        summary="Create an API key for a machine client",
    )
    async def create_api_key(
        body: ApiKeyCreate,
        auth: Auth,
        principal: Annotated[Principal, Depends(require("api_keys:create"))],
        _limited: Annotated[None, Depends(api_key_limit)],
    ) -> ApiKeyCreated:
        """The key is in this response only; store it in the client's secret store.

        The key belongs to the admin who creates it (its principal): disabling or deleting
        that user revokes it.
        """
        if auth.api_keys is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "API keys are off.")
        created = await auth.api_keys.create(
            body.name,
            principal_id=principal.id,
            tenant=principal.tenant,
            scopes=sorted(set(body.scopes)),
            expires_in=body.expires_in_days * 86_400.0 if body.expires_in_days else None,
        )
        record = created.record
        return ApiKeyCreated(
            key=created.key,
            key_id=record.key_id,
            name=record.name,
            scopes=sorted(record.scopes),
            expires_at=record.expires_at,
        )

    return router
