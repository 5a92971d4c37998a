"""Role-based access control: ``resource:action`` permissions, wildcards, role inheritance.

Deny by default: a permission is granted only by an explicit grant, either directly on the
principal (token scopes, API key scopes) or through its roles. Grants may use ``*`` for the
resource, the action, or both (``orders:*``, ``*:read``, ``*:*``); required permissions are
always concrete. Tenant checks are separate and strict: a principal of tenant A never
passes :meth:`RbacPolicy.check` for a resource of tenant B.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saasfw.security._errors import (
    ConfigurationError,
    MissingExtraError,
    PermissionDeniedError,
    TenantMismatchError,
)
from saasfw.security._principal import Principal

__all__ = ["Permission", "RbacPolicy", "Role", "ensure_tenant"]

_PART = r"[a-z][a-z0-9_.-]{0,63}"
_CONCRETE = re.compile(rf"^{_PART}:{_PART}$")
_GRANT = re.compile(rf"^(\*|{_PART}):(\*|{_PART})$")
_MEMO_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Permission:
    """A concrete ``resource:action`` permission."""

    resource: str
    action: str

    @classmethod
    def parse(cls, text: str) -> Permission:
        """Parse a concrete permission; wildcards are refused (they are grants, not needs)."""
        if not isinstance(text, str) or not _CONCRETE.match(text):
            raise ConfigurationError(
                f"{text!r} is not a permission: use lowercase 'resource:action', "
                "e.g. 'orders:write'"
            )
        resource, action = text.split(":")
        return cls(resource, action)

    def __str__(self) -> str:
        return f"{self.resource}:{self.action}"

    @property
    def covering_grants(self) -> frozenset[str]:
        """The grants that cover this permission: exact, ``res:*``, ``*:action``, ``*:*``."""
        return frozenset(
            {f"{self.resource}:{self.action}", f"{self.resource}:*", f"*:{self.action}", "*:*"}
        )


_PARSED: dict[str, frozenset[str]] = {}


def _covering(permission: str | Permission) -> frozenset[str]:
    """Covering grants of a permission, memoised: checks run on every request."""
    if isinstance(permission, Permission):
        return permission.covering_grants
    covering = _PARSED.get(permission)
    if covering is None:
        covering = Permission.parse(permission).covering_grants
        if len(_PARSED) >= _MEMO_LIMIT:
            _PARSED.clear()
        _PARSED[permission] = covering
    return covering


def _check_grant(text: object, where: str) -> str:
    if text == "*":
        return "*:*"
    if not isinstance(text, str) or not _GRANT.match(text):
        raise ConfigurationError(
            f"{where}: {text!r} is not a grant; use 'resource:action' with optional '*' parts"
        )
    return text


@dataclass(frozen=True, slots=True)
class Role:
    """A named set of grants that may inherit other roles."""

    name: str
    permissions: frozenset[str] = frozenset()
    inherits: tuple[str, ...] = ()


class RbacPolicy:
    """The role table and the permission checks built on it.

    Build it from code, from a mapping (settings) or from YAML::

        roles:
          viewer: {permissions: ["orders:read"]}
          editor: {permissions: ["orders:write"], inherits: [viewer]}
          admin:  {permissions: ["*:*"]}

    Cycles and unknown parents are refused at construction; roles a principal carries
    but the policy does not know grant nothing.
    """

    def __init__(self, roles: Iterable[Role] = ()) -> None:
        table: dict[str, Role] = {}
        for role in roles:
            if role.name in table:
                raise ConfigurationError(f"role {role.name!r} is defined twice")
            for grant in role.permissions:
                _check_grant(grant, f"role {role.name!r}")
            table[role.name] = role
        self._roles = table
        self._expanded = {name: self._expand(name, ()) for name in table}
        self._memo: dict[tuple[frozenset[str], frozenset[str]], frozenset[str]] = {}

    def _expand(self, name: str, path: tuple[str, ...]) -> frozenset[str]:
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise ConfigurationError(f"role inheritance has a cycle: {cycle}")
        role = self._roles.get(name)
        if role is None:
            raise ConfigurationError(f"role {path[-1]!r} inherits unknown role {name!r}")
        grants = {_check_grant(g, f"role {name!r}") for g in role.permissions}
        for parent in role.inherits:
            grants |= self._expand(parent, (*path, name))
        return frozenset(grants)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RbacPolicy:
        """Build from ``{"roles": {name: {"permissions": [...], "inherits": [...]}}}``."""
        roles_data = data.get("roles", data)
        if not isinstance(roles_data, Mapping):
            raise ConfigurationError("the RBAC policy needs a 'roles' mapping")
        roles = []
        for name, spec in roles_data.items():
            if not isinstance(name, str) or not isinstance(spec, Mapping):
                raise ConfigurationError(f"role {name!r} must map to a mapping")
            unknown = set(spec) - {"permissions", "inherits", "description"}
            if unknown:
                raise ConfigurationError(f"role {name!r} has unknown keys {sorted(unknown)}")
            perms = spec.get("permissions", [])
            parents = spec.get("inherits", [])
            if isinstance(perms, str) or isinstance(parents, str):
                raise ConfigurationError(f"role {name!r}: permissions and inherits are lists")
            roles.append(Role(name, frozenset(perms), tuple(parents)))
        return cls(roles)

    @classmethod
    def from_yaml(cls, path: str | Path) -> RbacPolicy:
        """Load the policy from a YAML file (needs PyYAML: ``saasfw-security[yaml]``)."""
        try:
            import yaml
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise MissingExtraError("RbacPolicy.from_yaml", "yaml") from None
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{path}: the RBAC policy must be a YAML mapping")
        return cls.from_mapping(data)

    @property
    def role_names(self) -> frozenset[str]:
        """Names of every defined role."""
        return frozenset(self._roles)

    def grants_for(self, principal: Principal) -> frozenset[str]:
        """Every grant of the principal: direct permissions plus its roles' (expanded)."""
        key = (principal.roles, principal.permissions)
        grants = self._memo.get(key)
        if grants is None:
            # Direct grants (token or API key scopes) count only in exact grant syntax:
            # a malformed scope, or the bare "*" shorthand, grants nothing.
            acc = {g for g in principal.permissions if isinstance(g, str) and _GRANT.match(g)}
            for role in principal.roles:
                acc |= self._expanded.get(role, frozenset())
            grants = frozenset(acc)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = grants
        return grants

    def is_allowed(self, principal: Principal, permission: str | Permission) -> bool:
        """True when the principal holds a grant covering the concrete ``permission``."""
        return not self.grants_for(principal).isdisjoint(_covering(permission))

    def check(
        self,
        principal: Principal,
        *permissions: str | Permission,
        tenant: str | None = None,
        check_tenant: bool = False,
    ) -> None:
        """Raise unless the principal holds every permission (and matches ``tenant``).

        Raises:
            TenantMismatchError: ``check_tenant`` and the principal's tenant differs.
            PermissionDeniedError: a permission is missing (the first one is named).
        """
        if check_tenant or tenant is not None:
            ensure_tenant(principal, tenant)
        grants = self.grants_for(principal)
        for permission in permissions:
            if grants.isdisjoint(_covering(permission)):
                raise PermissionDeniedError(f"permission {permission} is required")


def ensure_tenant(principal: Principal, tenant: str | None) -> None:
    """Refuse unless the principal belongs to exactly ``tenant``.

    A principal without a tenant never matches a tenant-scoped resource, and ``None`` as
    the resource tenant never matches a tenant-bound principal: no implicit cross-tenant
    access through the helpers.
    """
    if tenant is None or principal.tenant is None or principal.tenant != tenant:
        raise TenantMismatchError("the resource belongs to another tenant")
