"""Cost of verifying an already-seen JWT plus a permission check, against a plain
``jwt.decode`` of the same token (HS256 and RS256), as a ratio.

``python bench/bench_security_jwt.py [--smoke] [--rounds N] [--seconds S]``

The saasfw path is the one a request takes: ``await JwtVerifier.verify(token)`` (size
bound, SHA-256 digest, cache lookup, expiry check, revocation check on the in-memory
store) then ``RbacPolicy.is_allowed(principal, "orders:read")`` with role inheritance.
The baseline is pyjwt's ``jwt.decode`` with algorithm, issuer and audience checks.
Target: saasfw under a tenth of the baseline. ``--smoke`` runs about a second, no assertion.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from saasfw.security import (
    JwtVerifier,
    MemoryRevocationStore,
    RbacPolicy,
    StaticKeySet,
)

ISSUER = "https://auth.bench"
AUDIENCE = "orders-api"
TARGET = 0.10


def _token(key: Any, alg: str) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "iat": now,
        "exp": now + 3600,
        "jti": "bench-1",
        "tenant": "acme",
        "roles": ["editor"],
        "scope": "profile:read",
    }
    return jwt.encode(claims, key, algorithm=alg, headers={"typ": "at+jwt", "kid": "k1"})


def _per_op(fn: Callable[[int], None], seconds: float) -> float:
    """Seconds per operation, calibrating the batch size to about ``seconds``."""
    n = 64
    while True:
        started = time.perf_counter()
        fn(n)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds or n >= 1 << 24:
            return elapsed / n
        n = max(n * 2, int(n * seconds / max(elapsed, 1e-6) * 1.1))


def measure(alg: str, rounds: int, seconds: float, revocation: Any = None) -> tuple[float, float]:
    if alg == "HS256":
        signing: Any = b"k" * 64
        verifying: Any = signing
        keys = StaticKeySet(algorithms=[alg], hmac_secrets={"k1": signing})
    else:
        signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        verifying = signing.public_key()
        keys = StaticKeySet(algorithms=[alg], public_keys={"k1": verifying})
    verifier = JwtVerifier(
        keys,
        algorithms=[alg],
        issuer=ISSUER,
        audiences=[AUDIENCE],
        revocation=revocation or MemoryRevocationStore(),
    )
    policy = RbacPolicy.from_mapping(
        {
            "roles": {
                "viewer": {"permissions": ["orders:read", "catalog:read"]},
                "editor": {"permissions": ["orders:write"], "inherits": ["viewer"]},
            }
        }
    )
    token = _token(signing, alg)

    def baseline(n: int) -> None:
        decode = jwt.decode
        for _ in range(n):
            decode(token, verifying, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)

    async def _cached(n: int) -> None:
        verify, allowed = verifier.verify, policy.is_allowed
        for _ in range(n):
            principal = (await verify(token)).principal
            if not allowed(principal, "orders:read"):
                raise AssertionError("permission check failed")

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_cached(1))  # first sight: full verification, then cached

        def cached(n: int) -> None:
            loop.run_until_complete(_cached(n))

        base_runs, ours_runs = [], []
        for _ in range(rounds):  # interleaved so drift hits both sides alike
            base_runs.append(_per_op(baseline, seconds))
            ours_runs.append(_per_op(cached, seconds))
    finally:
        loop.close()
    if verifier.cache_misses != 1:
        raise AssertionError(f"expected one cache miss, saw {verifier.cache_misses}")
    return statistics.median(base_runs), statistics.median(ours_runs)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="about a second, no assertion")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    parser.add_argument(
        "--redis-url", help="also report the cached path with the Redis revocation store"
    )
    args = parser.parse_args(argv)
    rounds, seconds = (1, 0.1) if args.smoke else (args.rounds, args.seconds)
    failed = False
    for alg in ("HS256", "RS256"):
        base, ours = measure(alg, rounds, seconds)
        ratio = ours / base
        print(
            f"{alg}: jwt.decode {base * 1e6:8.2f} us/op | saasfw cached verify + "
            f"permission check {ours * 1e6:6.2f} us/op | ratio {ratio:.3f} (target < {TARGET})"
        )
        failed |= ratio >= TARGET
    if args.redis_url:
        from saasfw.security import RedisRevocationStore

        store = RedisRevocationStore.from_url(args.redis_url, prefix="bench:revocation:")
        base, ours = measure("RS256", rounds, seconds, revocation=store)
        print(
            f"RS256 with Redis revocation: jwt.decode {base * 1e6:8.2f} us/op | saasfw "
            f"{ours * 1e6:6.2f} us/op | ratio {ours / base:.3f} (informative: one MGET per check)"
        )
        from saasfw.security.tokens import CachedRevocationStore

        # A fresh client: the first one belongs to the previous measurement's event loop.
        fresh = RedisRevocationStore.from_url(args.redis_url, prefix="bench:revocation:")
        base, ours = measure("RS256", rounds, seconds, revocation=CachedRevocationStore(fresh))
        print(
            f"RS256 with Redis + 1 s local revocation memory: jwt.decode {base * 1e6:8.2f} us/op"
            f" | saasfw {ours * 1e6:6.2f} us/op | ratio {ours / base:.3f} (informative)"
        )
    if failed and not args.smoke:
        print("error: the cached path is not under a tenth of jwt.decode", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
