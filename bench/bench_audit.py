"""Audit throughput: saasfw-audit (chain + two encrypted fields, fsync per batch) against
the standard library's logging writing the same events as JSON lines to a file.

Reports events/s for both, their ratio (target >= 1.0) and the caller-side p50/p99 of the
record call (target p99 < 50 us). Figures are noisy on a shared machine.

    uv run python bench/bench_audit.py            # full run (~10 s)
    uv run python bench/bench_audit.py --smoke    # about a second, no assertions
    uv run python bench/bench_audit.py --check    # exit 1 if a target is missed
    uv run python bench/bench_audit.py --stages   # also CPU per event, per thread
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from saasfw.audit import (
    Actor,
    AuditLogger,
    FieldCipher,
    FileSink,
    Keyring,
    Resource,
)

# CPU seconds per thread role, summed over rounds (--stages); measured with thread_time,
# so a busy machine inflates wall time but not these.
_cpu: dict[str, float] = {}
_cpu_lock = threading.Lock()


def _timed_thread(role: str, run: Callable[..., None]) -> Callable[..., None]:
    def wrapper(self: Any) -> None:
        try:
            run(self)
        finally:
            with _cpu_lock:
                _cpu[role] = _cpu.get(role, 0.0) + time.thread_time()

    return wrapper


def _install_stage_timers() -> None:
    """Report the CPU each audit thread used, by wrapping the threads' run loops."""
    from saasfw.audit._delivery import SinkChannel
    from saasfw.audit._logger import AuditLogger as _Logger

    _Logger._run = _timed_thread("pipeline", _Logger._run)  # type: ignore[method-assign]
    SinkChannel._run = _timed_thread("writer", SinkChannel._run)  # type: ignore[method-assign]


def _event(i: int) -> tuple[str, dict[str, object]]:
    return "user.profile.updated", {
        "email": f"user{i}@example.com",
        "ssn": "078-05-1120",
        "changed": ["email", "phone"],
        "n": i,
    }


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": self.formatTime(record),
                "type": record.msg,
                "action": "updated",
                "outcome": "success",
                "actor": record.__dict__["actor"],
                "resource": record.__dict__["resource"],
                "details": record.__dict__["details"],
            }
        )


def bench_stdlib(path: Path, n: int) -> float:
    logger = logging.getLogger(f"bench.stdlib.{path.name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path)
    handler.setFormatter(_JsonFormatter())
    logger.addHandler(handler)
    actor = {"id": "u1", "kind": "user", "tenant": "t1", "address": "10.0.0.1"}
    cpu0 = time.thread_time()
    start = time.perf_counter()
    for i in range(n):
        typ, details = _event(i)
        logger.info(
            typ,
            extra={"actor": actor, "resource": {"type": "user", "id": str(i)}, "details": details},
        )
    handler.flush()
    os.fsync(handler.stream.fileno())
    elapsed = time.perf_counter() - start
    _cpu["stdlib"] = _cpu.get("stdlib", 0.0) + time.thread_time() - cpu0
    handler.close()
    logger.removeHandler(handler)
    return n / elapsed


def bench_audit(root: Path, n: int) -> tuple[float, list[int]]:
    ring = Keyring({"k1": os.urandom(32)}, "k1")
    actor = Actor("u1", tenant="t1", address="10.0.0.1")
    logger = AuditLogger(
        [FileSink(root / "audit.jsonl")],
        producer_id="bench",
        chain_key=os.urandom(32),
        cipher=FieldCipher(ring),
        encrypted_fields=["email", "ssn"],
        actor_provider=lambda: actor,
        queue_size=max(65_536, n),
    )
    logger.start()
    record = logger.record
    clock = time.perf_counter_ns
    latencies = [0] * n
    cpu0 = time.thread_time()
    start = time.perf_counter()
    for i in range(n):
        typ, details = _event(i)
        t0 = clock()
        record(typ, resource=Resource("user", str(i)), details=details)
        latencies[i] = clock() - t0
    _cpu["caller"] = _cpu.get("caller", 0.0) + time.thread_time() - cpu0
    report = logger.close(timeout=120)  # everything encrypted, chained, written, fsynced
    elapsed = time.perf_counter() - start
    if not report.complete:
        raise SystemExit(f"audit flush incomplete: {report}")
    return n / elapsed, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="about a second, no assertions")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--stages", action="store_true", help="also report CPU per event of each thread"
    )
    args = parser.parse_args()
    if args.stages:
        _install_stage_timers()
    n = args.events or (5_000 if args.smoke else 50_000)
    rounds = args.rounds or (1 if args.smoke else 3)
    ours: list[float] = []
    theirs: list[float] = []
    lat: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            root = Path(tmp) / f"r{r}"
            root.mkdir()
            theirs.append(bench_stdlib(root / "stdlib.jsonl", n))
            eps, latencies = bench_audit(root, n)
            ours.append(eps)
            lat.extend(latencies)
    lat.sort()
    p50 = lat[len(lat) // 2] / 1000
    p99 = lat[int(len(lat) * 0.99)] / 1000
    ours_eps, theirs_eps = statistics.median(ours), statistics.median(theirs)
    ratio = ours_eps / theirs_eps
    print(f"events per round        {n:>10,}  rounds {rounds}")
    print(f"stdlib logging (JSONL)  {theirs_eps:>10,.0f} events/s")
    print(f"saasfw-audit            {ours_eps:>10,.0f} events/s  (chain + 2 AES-GCM fields, fsync)")
    print(f"ratio                   {ratio:>10.2f}   (target >= 1.0)")
    print(f"record() p50 / p99      {p50:>7.1f} / {p99:.1f} us  (target p99 < 50 us)")
    if args.stages:
        per = 1e6 / (n * rounds)
        audit = sum(_cpu.get(k, 0.0) for k in ("caller", "pipeline", "writer"))
        print(
            f"CPU us/event           stdlib {_cpu.get('stdlib', 0.0) * per:.2f}  |  audit "
            f"{audit * per:.2f} = caller loop {_cpu.get('caller', 0.0) * per:.2f} + pipeline "
            f"{_cpu.get('pipeline', 0.0) * per:.2f} + writer {_cpu.get('writer', 0.0) * per:.2f}"
        )
    if args.check and not args.smoke and (ratio < 1.0 or p99 >= 50):
        print("target missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
