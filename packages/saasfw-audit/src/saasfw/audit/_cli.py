"""``saasfw-audit``: the command line: verify logs' and the SQL table's integrity, make keys."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from saasfw.audit._chaincheck import VerifyReport
from saasfw.audit._errors import AuditError

CHAIN_KEY_ENV = "SAASFW_AUDIT__CHAIN_KEY"
_PROGRESS_MIN_BYTES = 1 << 20


class _Progress:
    """A one-line progress bar on stderr (redrawn on a terminal, every 10% otherwise)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = -1
        self._start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if total < _PROGRESS_MIN_BYTES:
            return
        pct = done * 100 // total
        step = pct if self._tty else pct // 10 * 10
        if step == self._last:
            return
        self._last = step
        width = 30
        filled = width * done // total
        bar = "#" * filled + "-" * (width - filled)
        line = f"verifying [{bar}] {pct:3d}% {done / 1e6:.1f}/{total / 1e6:.1f} MB read (2 passes)"
        if self._tty:
            self._stream.write("\r" + line + ("\n" if done >= total else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


KEY_ENCODINGS = "base64 (standard or url-safe), 64 hex digits, or exactly 32 raw bytes"


class _UsageError(Exception):
    """A one-line error for the user: exit code 2, never a traceback."""


def decode_key_file(data: bytes, what: str) -> bytes:
    """A 32-byte key from a key file's bytes: raw, base64 or hex (see ``KEY_ENCODINGS``).

    A file of exactly 32 bytes is the raw key (text encodings of 32 bytes are longer, and
    surrounding whitespace is part of a raw key, so nothing is stripped from it).
    """
    if len(data) == 32:
        return data
    from saasfw.audit._crypto import decode_key

    try:
        text = data.decode("ascii")
        return decode_key(text, where=what)
    except (UnicodeDecodeError, AuditError):
        raise _UsageError(
            f"{what}: not a 32-byte key in a known encoding ({len(data)} bytes read); "
            f"expected {KEY_ENCODINGS}"
        ) from None


def _chain_key(path: str | None) -> bytes:
    if path:
        return decode_key_file(Path(path).read_bytes(), f"chain key file {path}")
    value = os.environ.get(CHAIN_KEY_ENV)
    if not value:
        raise _UsageError(f"no chain key: pass --chain-key-file or set {CHAIN_KEY_ENV}")
    from saasfw.audit._crypto import decode_key

    try:  # text only, as the service reads the same variable: base64 or hex
        return decode_key(value, where=CHAIN_KEY_ENV)
    except AuditError:
        raise _UsageError(
            f"{CHAIN_KEY_ENV}: not a 32-byte key as base64 or 64 hex digits"
        ) from None


def _public_key(path: str) -> Any:
    """An Ed25519 public key from a PEM, base64, hex or raw 32-byte file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from saasfw.audit._chain import load_public_key

    data = Path(path).read_bytes()
    what = f"public key file {path}"
    try:
        if b"-----BEGIN" in data:
            return load_public_key(data, where=what)
        return Ed25519PublicKey.from_public_bytes(decode_key_file(data, what))
    except (ValueError, TypeError, UnicodeDecodeError, AuditError) as exc:
        if isinstance(exc, _UsageError):
            raise
        raise _UsageError(f"{what}: not an Ed25519 public key (PEM, or {KEY_ENCODINGS})") from None


def _verify_sql(url: str, schema: str | None, **kwargs: Any) -> VerifyReport:
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine

    from saasfw.audit._sql import async_url
    from saasfw.audit._verify_sql import verify_sql

    async def run() -> VerifyReport:
        try:
            engine = create_async_engine(async_url(url))
        except Exception as exc:
            raise _UsageError(f"--sql: cannot use this URL ({type(exc).__name__})") from None
        try:
            return await verify_sql(engine, schema=schema, **kwargs)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _print_report(report: VerifyReport) -> None:
    for finding in report.findings:
        print(finding)
    producers = ", ".join(
        f"{p or '(no producer)'} seq {a}..{b}" for p, (a, b) in report.producers.items()
    )
    if report.ok:
        status = "OK"
    elif report.tampered:
        status = f"FAILED ({len(report.findings)} findings)"
    else:
        status = f"UNTERMINATED ({len(report.findings)} chains end without a final checkpoint)"
    print(
        f"{status}: {report.records} records, {report.checkpoints} signed checkpoints"
        + (f"; {producers}" if producers else "")
    )


def _cmd_verify(args: argparse.Namespace) -> int:
    from saasfw.audit._verify import verify_logs

    if not args.log and not args.sql:
        raise _UsageError("nothing to verify: give one or more log files, or --sql URL")
    chain_key = _chain_key(args.chain_key_file)
    public_key = None
    checkpoints = args.checkpoints or []
    if args.public_key_file:
        public_key = _public_key(args.public_key_file)
        if not checkpoints:
            raise _UsageError("--public-key-file needs --checkpoints")
    common: dict[str, Any] = {
        "chain_key": chain_key,
        "public_key": public_key,
        "checkpoints_paths": checkpoints,
    }
    report = VerifyReport()
    if args.log:
        progress = None if args.no_progress else _Progress(sys.stderr)
        report = verify_logs(args.log, progress=progress, **common)
    if args.sql:
        report.merge(_verify_sql(args.sql, args.sql_schema, **common))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_report(report)
    if public_key is None:
        print(
            "warning: no --public-key-file: checkpoints not checked, so truncation of the "
            "tail, re-chaining with the chain key and killed producers cannot be detected",
            file=sys.stderr,
        )
    if report.ok:
        return 0
    return 1 if report.tampered else 3


def _cmd_keygen(args: argparse.Namespace) -> int:
    if args.kind == "ed25519":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        pub = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        print(f"private (keep secret, checkpoint.signing_key): {base64.b64encode(seed).decode()}")
        print(f"public (for verify --public-key-file):          {base64.b64encode(pub).decode()}")
    else:
        print(base64.b64encode(os.urandom(32)).decode())
    return 0


_VERIFY_HELP = f"""Check the hash chains of audit logs and/or the SQL table, per producer.

Each producer's records form their own chain (several replicas may share a file or the
table); each chain is checked on its own. With --public-key-file and --checkpoints, every
chain must also match its signed checkpoints and end in a final one (a clean shutdown).

Keys: the chain key file holds {KEY_ENCODINGS}; the public key file holds a PEM or the
same encodings of the raw 32-byte Ed25519 public key.

Exit status: 0 all verified; 1 tampering or damage found; 3 only unterminated chains
(producers killed, or still running, without a final checkpoint); 2 usage or key error.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saasfw-audit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser(
        "verify",
        help="check hash chains and signed checkpoints",
        description=_VERIFY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument(
        "log", nargs="*", help="active log files, one or more (rotated segments are found)"
    )
    verify.add_argument("--sql", metavar="URL", help="verify the SQL sink's table at this URL")
    verify.add_argument("--sql-schema", metavar="SCHEMA", help="the table's schema (PostgreSQL)")
    verify.add_argument(
        "--chain-key-file", help=f"file with the chain key (or ${CHAIN_KEY_ENV}, base64/hex)"
    )
    verify.add_argument("--public-key-file", help="Ed25519 public key of the checkpoints")
    verify.add_argument(
        "--checkpoints", action="append", help="a checkpoint file (repeat for several)"
    )
    verify.add_argument("--json", action="store_true", help="machine-readable report")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    verify.set_defaults(func=_cmd_verify)
    keygen = sub.add_parser("keygen", help="print a new key (base64)")
    keygen.add_argument("kind", choices=["aes256", "hmac", "ed25519"])
    keygen.set_defaults(func=_cmd_keygen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (_UsageError, AuditError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
