"""Login, token refresh, logout, and API keys for machine clients."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orders_service._passwords import HASHER
from orders_service._schemas import ApiKeyCreate, ApiKeyCreated, Login, Refresh, TokenResponse
from orders_service._settings import OrdersSettings
from saasfw.app import AuthComponents, auth_components, current_settings, problem_responses
from saasfw.security import (
    InvalidTokenError,
    Principal,
    SecurityError,
    TokenPair,
    public,
    require,
)

__all__ = ["router"]

router = APIRouter(tags=["auth"])

Auth = Annotated[AuthComponents, Depends(auth_components)]
Settings = Annotated[OrdersSettings, Depends(current_settings)]
_bearer = HTTPBearer(auto_error=False, scheme_name="bearerAuth")


def _tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=max(0, int(pair.access_expires_at - time.time())),
    )


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post(
    "/auth/login",
    dependencies=[Depends(public)],
    responses=problem_responses(401, 422, 429),
    summary="Log in with a username and password",
)
async def login(body: Login, request: Request, auth: Auth, settings: Settings) -> TokenResponse:
    """Exchange credentials for an access token (15 min) and a refresh token."""
    user = settings.users.get(body.username)
    # Unknown users cost the same work and publish the same event as wrong passwords.
    check = await HASHER.login(
        body.username,
        user.password_hash if user else None,
        body.password,
        events=auth.events,
        address=_client(request),
    )
    if user is None or not check.valid:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "The username or password is not correct.",
            headers={"WWW-Authenticate": 'Bearer realm="orders-service"'},
        )
    pair = await auth.issuer.issue(body.username, tenant=user.tenant, roles=user.roles)
    return _tokens(pair)


@router.post(
    "/auth/refresh",
    dependencies=[Depends(public)],
    responses=problem_responses(401, 422, 429),
    summary="Rotate a refresh token",
)
async def refresh(body: Refresh, request: Request, auth: Auth) -> TokenResponse:
    """A new token pair; the refresh token is spent (a reuse revokes the whole family)."""
    try:
        pair = await auth.issuer.refresh(body.refresh_token, address=_client(request))
    except SecurityError as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "The refresh token is not valid.",
            headers={"WWW-Authenticate": 'Bearer realm="orders-service", error="invalid_token"'},
        ) from exc
    return _tokens(pair)


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 422),
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
        await auth.issuer.logout(
            credentials.credentials, body.refresh_token if body is not None else None
        )
    except InvalidTokenError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "The token is not valid.") from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 422, 503),
    summary="Create an API key for a machine client",
)
async def create_api_key(
    body: ApiKeyCreate,
    auth: Auth,
    principal: Annotated[Principal, Depends(require("api_keys:create"))],
) -> ApiKeyCreated:
    """The key is in this response only; store it in the client's secret store."""
    if auth.api_keys is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "API keys are switched off.")
    created = await auth.api_keys.create(
        body.name,
        principal_id=f"client:{body.name}",
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
