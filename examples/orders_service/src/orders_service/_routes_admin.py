"""User administration: disable, delete, change roles; each revokes what it must and is audited.

An admin manages the users of their own tenant only (others are 404, as if absent).
Disabling or deleting a user revokes every token and API key the user holds, on every
replica; a role change takes effect at the user's next refresh (at most one access-token
lifetime later), since every refresh reads the users table.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncConnection

from orders_service._users import User, UserDirectory
from saasfw.app import AuditTrail, AuthComponents, auth_components, database, problem_responses
from saasfw.audit import Resource
from saasfw.db import Database
from saasfw.security import Principal, require

__all__ = ["RolesChange", "UserDisabled", "UserOut", "router"]

router = APIRouter(prefix="/admin/users", tags=["admin"])

Admin = Annotated[Principal, Depends(require("users:manage"))]
Auth = Annotated[AuthComponents, Depends(auth_components)]
Db = Annotated[Database, Depends(database)]
Username = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9._-]+$")]
# 400/401/403/413/422/429/500/503 are documented app-wide by saasfw.app.
_ERRORS = problem_responses(404)
RoleName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")]


class UserOut(BaseModel):
    """A user as an admin sees it (never the password hash)."""

    username: str
    tenant: str
    roles: list[str]
    active: bool


class UserDisabled(UserOut):
    """A disabled or deleted user, and what was revoked."""

    api_keys_revoked: int = Field(description="API keys of the user revoked by this call")


class RolesChange(BaseModel):
    """The user's new roles (replacing the current ones)."""

    model_config = ConfigDict(extra="forbid")

    roles: list[RoleName] = Field(max_length=16, examples=[["viewer"]])


def _out(user: User, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "username": user.username,
        "tenant": user.tenant,
        "roles": sorted(user.roles),
        "active": user.active,
    }
    return {**values, **changes}


async def _user_of_my_tenant(users: UserDirectory, username: str, admin: Principal) -> User:
    user = await users.get(username)
    if user is None or user.tenant != admin.tenant:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"There is no user {username!r}.")
    return user


async def _revoke_everything(auth: AuthComponents, username: str, admin: Principal) -> int:
    """Every token of the user issued so far and every API key of the user stop working."""
    if auth.issuer is not None:
        done = await auth.issuer.revoke_subject(username, api_keys=auth.api_keys, by=admin.id)
        return len(done.api_keys_revoked)
    if auth.api_keys is not None:
        return len(await auth.api_keys.revoke_principal(username, by=admin.id))
    return 0


async def _stage(
    trail: AuditTrail, conn: AsyncConnection, type: str, username: str, **details: object
) -> None:
    """Stage the change's audit event in its own transaction (last, before the commit).

    The revocations that follow a disable or delete are audited by the security package's
    own events (refresh families, not-before, API keys).
    """
    if trail is not None:
        await trail.stage(conn, type, resource=Resource("user", username), details=details)
        trail.wake()


@router.post(
    "/{username}/disable",
    responses=_ERRORS,
    summary="Disable a user and revoke everything they hold",
)
async def disable_user(
    username: Username, admin: Admin, db: Db, auth: Auth, trail: AuditTrail
) -> UserDisabled:
    """Idempotent: disabling again revokes again (e.g. after a failed revocation)."""
    users = UserDirectory(db.engine)
    user = await _user_of_my_tenant(users, username, admin)
    # The row first, with its audit event in the same transaction: a refresh racing this
    # call is then refused by the users table, and one that ran just before is caught by
    # the revocation's not-before.
    async with db.engine.begin() as conn:
        await users.set_active(username, False, conn=conn)
        await _stage(trail, conn, "orders.user.disabled", username, roles=sorted(user.roles))
    revoked = await _revoke_everything(auth, username, admin)
    return UserDisabled.model_validate(_out(user, active=False, api_keys_revoked=revoked))


@router.delete(
    "/{username}", responses=_ERRORS, summary="Delete a user and revoke everything they held"
)
async def delete_user(
    username: Username, admin: Admin, db: Db, auth: Auth, trail: AuditTrail
) -> UserDisabled:
    """The row is removed; tokens and API keys of the user stop working at once."""
    users = UserDirectory(db.engine)
    user = await _user_of_my_tenant(users, username, admin)
    async with db.engine.begin() as conn:
        await users.delete(username, conn=conn)
        await _stage(trail, conn, "orders.user.deleted", username, roles=sorted(user.roles))
    revoked = await _revoke_everything(auth, username, admin)
    return UserDisabled.model_validate(_out(user, active=False, api_keys_revoked=revoked))


@router.put("/{username}/roles", responses=_ERRORS, summary="Replace a user's roles")
async def change_roles(
    username: Username, body: RolesChange, admin: Admin, db: Db, auth: Auth, trail: AuditTrail
) -> UserOut:
    """Takes effect at the user's next token refresh; roles must exist in the RBAC policy."""
    unknown = sorted(set(body.roles) - auth.policy.role_names)
    if unknown:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"Unknown roles {unknown}; use roles of security.rbac.roles.",
        )
    users = UserDirectory(db.engine)
    user = await _user_of_my_tenant(users, username, admin)
    roles = sorted(set(body.roles))
    async with db.engine.begin() as conn:
        await users.set_roles(username, roles, conn=conn)
        await _stage(
            trail,
            conn,
            "orders.user.roles_changed",
            username,
            before=sorted(user.roles),
            after=roles,
        )
    return UserOut.model_validate(_out(user, roles=roles))
