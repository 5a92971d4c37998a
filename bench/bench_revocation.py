"""Per-check cost of the SQL revocation store's cache against MemoryRevocationStore, as a ratio.

``python bench/bench_revocation.py [--smoke] [--rounds N] [--seconds S] [--postgres-url URL]``

Both stores hold the same 1,000 live revocations (token ids, families, not-befores) and
answer the check the verifier makes on every request:
``await store.is_revoked(jti=, family=, subject=, issued_at=)`` for a token that is not
revoked (the common case: every lookup misses). Measured in interleaved rounds in one
process and one event loop:

- ``memory``: ``MemoryRevocationStore`` (process-local dictionaries; the baseline).
- ``sql cached``: ``SqlRevocationStore`` on PostgreSQL, listening, answering from its
  NOTIFY-fed in-process copy (it asserts every measured check came from that copy).
- ``sql read`` (informative): the same store with ``listen=False``, one database round
  trip per check: what a check costs while the listener is down.

Needs a PostgreSQL (``--postgres-url`` or ``SAASFW_TEST_POSTGRES_URL``); works in its own
schema, dropped at the end. No assertion on speed; ``--smoke`` runs a second or two.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from saasfw.security import MemoryRevocationStore, SqlRevocationStore
from saasfw.security.tokens import RevocationStore

LIVE = 1000


async def _per_op(fn: Callable[[int], Awaitable[None]], seconds: float) -> float:
    """Seconds per operation, calibrating the batch size to about ``seconds``."""
    n = 16
    while True:
        started = time.perf_counter()
        await fn(n)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds or n >= 1 << 22:
            return elapsed / n
        n = max(n * 2, int(n * seconds / max(elapsed, 1e-6) * 1.1))


async def _fill(store: RevocationStore) -> None:
    expires = time.time() + 3600

    async def one(i: int) -> None:
        await store.revoke_token(f"jti-{i}", expires)
        await store.revoke_family(f"fam-{i}", expires)
        await store.set_not_before(f"user-{i}", time.time() - 3600, ttl=3600)

    for start in range(0, LIVE // 3, 8):  # a few at a time: within the engine's pool
        await asyncio.gather(*(one(i) for i in range(start, min(start + 8, LIVE // 3))))


def _checker(store: RevocationStore) -> Callable[[int], Awaitable[None]]:
    issued_at = time.time()

    async def check(n: int) -> None:
        is_revoked = store.is_revoked
        for _ in range(n):
            if await is_revoked(
                jti="live-jti", family="live-fam", subject="user-7", issued_at=issued_at
            ):
                raise AssertionError("a live token was reported revoked")

    return check


async def run(url: str, rounds: int, seconds: float) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    schema = f"bench_rev_{secrets.token_hex(4)}"
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    cached = SqlRevocationStore(engine, schema=schema, application_name="bench-revocation")
    reading = SqlRevocationStore(engine, schema=schema, listen=False)
    try:
        await cached.create_tables()
        memory = MemoryRevocationStore()
        await _fill(memory)
        await _fill(reading)
        await cached.start()
        async with asyncio.timeout(60):
            await cached.wait_until_listening()
        stores: dict[str, Any] = {"memory": memory, "sql cached": cached, "sql read": reading}
        runs: dict[str, list[float]] = {name: [] for name in stores}
        for _ in range(rounds):  # interleaved so drift hits every side alike
            for name, store in stores.items():
                runs[name].append(await _per_op(_checker(store), seconds))
        if cached.database_checks:
            raise AssertionError(f"the cached store read the database {cached.database_checks}x")
    finally:
        await cached.aclose()
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()
    med = {name: statistics.median(values) for name, values in runs.items()}
    base = med["memory"]
    print(f"revocation check, {LIVE} live revocations, median of {rounds} rounds:")
    for name, value in med.items():
        print(f"  {name:11s} {value * 1e6:9.2f} us/check | ratio to memory {value / base:7.2f}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a second or two, no assertion")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    parser.add_argument("--postgres-url", default=os.environ.get("SAASFW_TEST_POSTGRES_URL"))
    args = parser.parse_args(argv)
    if not args.postgres_url:
        print("skipped: needs --postgres-url or SAASFW_TEST_POSTGRES_URL", file=sys.stderr)
        return 0
    rounds, seconds = (1, 0.05) if args.smoke else (args.rounds, args.seconds)
    asyncio.run(run(args.postgres_url, rounds, seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
