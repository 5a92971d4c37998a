"""RBAC: wildcards, inheritance, cycles refused, deny by default, tenant scoping, and the
FastAPI layer's 401/403 answers and start-up route check."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Annotated

import httpx
import jwt
import pytest
from fastapi import APIRouter, Depends, FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from saasfw.security import (
    Authenticator,
    ConfigurationError,
    JwtVerifier,
    PermissionDeniedError,
    Principal,
    RbacPolicy,
    SecurityEvents,
    StaticKeySet,
    TenantMismatchError,
    ensure_tenant,
    install_security,
    optional_principal,
    public,
    require,
    security_lifespan,
)
from saasfw.security.advanced import (
    Role,
    SecurityEvent,
    assert_routes_secured,
    routes_without_security,
)

POLICY = {
    "roles": {
        "viewer": {"permissions": ["orders:read", "catalog:read"]},
        "editor": {"permissions": ["orders:write"], "inherits": ["viewer"]},
        "auditor": {"permissions": ["*:read"]},
        "orders-admin": {"permissions": ["orders:*"], "inherits": ["editor"]},
        "root": {"permissions": ["*:*"]},
    }
}


def _p(*roles: str, perms: tuple[str, ...] = (), tenant: str | None = "acme") -> Principal:
    return Principal(
        id="u",
        kind="user",
        auth_method="jwt",
        tenant=tenant,
        roles=frozenset(roles),
        permissions=frozenset(perms),
    )


def test_inheritance_and_wildcards() -> None:
    policy = RbacPolicy.from_mapping(POLICY)
    assert policy.is_allowed(_p("editor"), "orders:read")
    assert policy.is_allowed(_p("editor"), "catalog:read")
    assert not policy.is_allowed(_p("editor"), "orders:delete")
    assert policy.is_allowed(_p("orders-admin"), "orders:delete")
    assert not policy.is_allowed(_p("orders-admin"), "billing:read")
    assert policy.is_allowed(_p("auditor"), "billing:read")
    assert not policy.is_allowed(_p("auditor"), "billing:write")
    assert policy.is_allowed(_p("root"), "anything:goes")
    assert policy.is_allowed(_p(perms=("orders:read",)), "orders:read")  # direct scope


def test_deny_by_default() -> None:
    policy = RbacPolicy.from_mapping(POLICY)
    assert not policy.is_allowed(_p(), "orders:read")
    assert not policy.is_allowed(_p("unknown-role"), "orders:read")
    assert not policy.is_allowed(_p(perms=("ORDERS:READ", "orders", "*", "")), "orders:read")
    with pytest.raises(PermissionDeniedError, match="orders:write"):
        policy.check(_p("viewer"), "orders:read", "orders:write")


@given(st.text(max_size=30), st.text(max_size=30))
def test_no_scope_string_grants_more_than_it_says(resource: str, action: str) -> None:
    policy = RbacPolicy()
    principal = _p(perms=(f"{resource}:{action}",))
    assert not policy.is_allowed(principal, "orders:write") or (
        resource in {"orders", "*"} and action in {"write", "*"}
    )


def test_cycles_and_unknown_parents_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="cycle: a -> b -> c -> a"):
        RbacPolicy(
            [Role("a", inherits=("b",)), Role("b", inherits=("c",)), Role("c", inherits=("a",))]
        )
    with pytest.raises(ConfigurationError, match="cycle"):
        RbacPolicy([Role("self", inherits=("self",))])
    with pytest.raises(ConfigurationError, match="unknown role 'ghost'"):
        RbacPolicy.from_mapping({"roles": {"a": {"inherits": ["ghost"]}}})
    with pytest.raises(ConfigurationError):
        RbacPolicy.from_mapping({"roles": {"a": {"permissions": ["Orders Write"]}}})
    with pytest.raises(ConfigurationError):
        RbacPolicy.from_mapping({"roles": {"a": {"permissions": "orders:read"}}})
    with pytest.raises(ConfigurationError):
        RbacPolicy.from_mapping({"roles": {"a": {"perms": ["orders:read"]}}})
    with pytest.raises(ConfigurationError):
        require("orders:*")  # a requirement is concrete, wildcards are grants


def test_yaml_policy(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "rbac.yaml"
    path.write_text(
        "roles:\n  viewer:\n    permissions: [orders:read]\n"
        "  editor:\n    permissions: [orders:write]\n    inherits: [viewer]\n"
    )
    policy = RbacPolicy.from_yaml(path)
    assert policy.is_allowed(_p("editor"), "orders:read")
    assert policy.role_names == frozenset({"viewer", "editor"})


def test_tenant_scoping_is_strict() -> None:
    ensure_tenant(_p(tenant="acme"), "acme")
    for principal_tenant, resource_tenant in [("acme", "globex"), (None, "acme"), ("acme", None)]:
        with pytest.raises(TenantMismatchError):
            ensure_tenant(_p(tenant=principal_tenant), resource_tenant)
    policy = RbacPolicy.from_mapping(POLICY)
    with pytest.raises(TenantMismatchError):
        policy.check(_p("root", tenant="acme"), "orders:read", tenant="globex")


SECRET = secrets.token_bytes(32)


def _token(sub: str, tenant: str, roles: list[str]) -> str:
    now = int(time.time())
    claims = {"iss": "i", "aud": "a", "sub": sub, "exp": now + 60, "tenant": tenant, "roles": roles}
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"typ": "at+jwt"})


def _app(events: SecurityEvents) -> FastAPI:
    verifier = JwtVerifier(
        StaticKeySet(algorithms=["HS256"], hmac_secrets={None: SECRET}),
        algorithms=["HS256"],
        issuer="i",
        audiences=["a"],
    )
    app = FastAPI()
    install_security(
        app, Authenticator(jwt=verifier, policy=RbacPolicy.from_mapping(POLICY), events=events)
    )

    @app.get("/tenants/{tenant_id}/orders")
    async def list_orders(
        tenant_id: str,
        p: Annotated[Principal, Depends(require("orders:read", tenant_param="tenant_id"))],
    ) -> dict[str, str]:
        return {"tenant": tenant_id, "by": p.id}

    @app.post("/orders")
    async def create(p: Annotated[Principal, Depends(require("orders:write"))]) -> dict[str, str]:
        return {"by": p.id}

    @app.get("/health", dependencies=[Depends(public)])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def test_http_401_403_and_tenant_isolation() -> None:
    events: list[SecurityEvent] = []
    bus = SecurityEvents()
    bus.subscribe(events.append)
    app = _app(bus)
    viewer = {"Authorization": f"Bearer {_token('val', 'acme', ['viewer'])}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        ok = await client.get("/tenants/acme/orders", headers=viewer)
        assert ok.json() == {"tenant": "acme", "by": "val"}
        other = await client.get("/tenants/globex/orders", headers=viewer)
        assert other.status_code == 403
        assert other.json()["code"] == "auth.tenant_mismatch"
        denied = await client.post("/orders", headers=viewer)
        assert denied.status_code == 403
        assert denied.headers["content-type"] == "application/problem+json"
        assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
        unauthenticated = await client.post("/orders")
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["www-authenticate"] == 'Bearer realm="api"'
        assert (await client.get("/health")).status_code == 200
    denied_events = [e for e in events if e.type == "auth.access.denied"]
    assert len(denied_events) == 2
    assert denied_events[1].details["permissions"] == ["orders:write"]
    assert denied_events[1].principal_id == "val"
    succeeded = [e for e in events if e.type == "auth.authenticate.succeeded"]
    assert [(e.principal_id, e.details["method"]) for e in succeeded] == [("val", "jwt")]


async def test_openapi_shows_the_security_schemes() -> None:
    schema = _app(SecurityEvents()).openapi()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert schemes["apiKeyAuth"]["in"] == "header"
    both = [{"bearerAuth": []}, {"apiKeyAuth": []}]
    assert schema["paths"]["/orders"]["post"]["security"] == both
    assert schema["paths"]["/tenants/{tenant_id}/orders"]["get"]["security"] == both
    assert "security" not in schema["paths"]["/health"]["get"]


async def test_openapi_security_follows_included_routers_and_optional_principal() -> None:
    app = _app(SecurityEvents())
    router = APIRouter(prefix="/v2")

    @router.get("/mine")
    async def mine(p: Annotated[Principal | None, Depends(optional_principal)]) -> None:
        return None

    @router.get("/open", dependencies=[Depends(public)])
    async def open_route() -> None:
        return None

    secured = APIRouter(dependencies=[Depends(require("orders:read"))])

    @secured.get("/listed")
    async def listed() -> None:
        return None

    app.include_router(router)
    app.include_router(secured, prefix="/v3")
    paths = app.openapi()["paths"]
    assert paths["/v2/mine"]["get"]["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
    assert "security" not in paths["/v2/open"]["get"]
    assert paths["/v3/listed"]["get"]["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
    assert app.openapi() is app.openapi()  # generated once, then cached


async def test_require_is_one_dependency_without_sub_dependencies() -> None:
    # FastAPI resolves each sub-dependency on every request; require() must not have any.
    app = _app(SecurityEvents())
    route = next(r for r in app.routes if getattr(r, "path", "") == "/orders")
    (dependency,) = route.dependant.dependencies  # type: ignore[attr-defined]
    assert dependency.dependencies == []


async def test_start_up_check_lists_routes_without_declared_security() -> None:
    app = _app(SecurityEvents())
    assert routes_without_security(app) == []
    assert_routes_secured(app)

    @app.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    @app.delete("/also/{x}")
    async def also(x: str) -> None:
        return None

    assert routes_without_security(app) == ["GET /forgotten", "DELETE /also/{x}"]
    with pytest.raises(ConfigurationError, match="GET /forgotten; DELETE /also"):
        assert_routes_secured(app)
    with pytest.raises(ConfigurationError):
        async with security_lifespan(app):
            pass


async def test_require_without_install_fails_closed() -> None:
    app = FastAPI()

    @app.get("/x")
    async def x(p: Annotated[Principal, Depends(require("orders:read"))]) -> dict[str, str]:
        return {"id": p.id}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/x")
    assert response.status_code == 500


def test_event_listener_errors_never_break_the_publisher() -> None:
    bus = SecurityEvents()
    seen: list[str] = []

    def broken(event: SecurityEvent) -> None:
        raise RuntimeError("sink down")

    bus.subscribe(broken)
    unsubscribe = bus.subscribe(lambda e: seen.append(e.type))
    bus.publish(SecurityEvent(type="auth.login.failed", outcome="failure"))
    assert seen == ["auth.login.failed"]
    assert bus.listener_errors == 1
    unsubscribe()
    bus.publish(SecurityEvent(type="auth.login.failed", outcome="failure"))
    assert seen == ["auth.login.failed"]
    assert bus.published == 2


_TENANT_APP = _app(SecurityEvents())
_TENANT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(_TENANT, _TENANT, st.sampled_from(["viewer", "editor", "root"]))
async def test_a_principal_never_reaches_another_tenant_over_http(
    mine: str, theirs: str, role: str
) -> None:
    headers = {"Authorization": f"Bearer {_token('t', mine, [role])}"}
    transport = httpx.ASGITransport(app=_TENANT_APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get(f"/tenants/{theirs}/orders", headers=headers)
    assert response.status_code == (200 if mine == theirs else 403)


async def test_optional_principal_allows_anonymous_but_never_downgrades_bad_tokens() -> None:
    app = _app(SecurityEvents())

    @app.get("/feed")
    async def feed(p: Annotated[Principal | None, Depends(optional_principal)]) -> dict[str, str]:
        return {"who": p.id if p else "anonymous"}

    assert routes_without_security(app) == []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/feed")).json() == {"who": "anonymous"}
        good = {"Authorization": f"Bearer {_token('ola', 'acme', [])}"}
        assert (await client.get("/feed", headers=good)).json() == {"who": "ola"}
        bad = await client.get("/feed", headers={"Authorization": "Bearer x.y.z"})
        assert bad.status_code == 401


def test_route_check_sees_routes_of_included_routers() -> None:
    from fastapi import APIRouter

    app = FastAPI()
    secured = APIRouter(dependencies=[Depends(require("orders:read"))])
    open_router = APIRouter()
    nested = APIRouter()

    @secured.get("/list")
    async def listing() -> None:
        return None

    @open_router.get("/leak")
    async def leak() -> None:
        return None

    @open_router.get("/fine", dependencies=[Depends(public)])
    async def fine() -> None:
        return None

    @nested.post("/deep")
    async def deep() -> None:
        return None

    open_router.include_router(nested, prefix="/nested")
    app.include_router(secured, prefix="/orders")
    app.include_router(open_router, prefix="/v1")
    plain = APIRouter()

    @plain.get("/x")
    async def guarded_by_include() -> None:
        return None

    app.include_router(plain, prefix="/guarded", dependencies=[Depends(require("orders:read"))])
    assert routes_without_security(app) == ["GET /v1/leak", "POST /v1/nested/deep"]
