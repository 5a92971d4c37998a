"""``saasfw-audit``: verify a log's integrity, generate keys."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

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


def _read_secret(path: str | None, env: str) -> bytes | None:
    if path:
        return Path(path).read_bytes().strip()
    value = os.environ.get(env)
    return value.encode() if value else None


def _cmd_verify(args: argparse.Namespace) -> int:
    from saasfw.audit._chain import load_public_key
    from saasfw.audit._crypto import decode_key
    from saasfw.audit._verify import verify_log

    material = _read_secret(args.chain_key_file, CHAIN_KEY_ENV)
    if material is None:
        print(f"error: no chain key: pass --chain-key-file or set {CHAIN_KEY_ENV}", file=sys.stderr)
        return 2
    chain_key = decode_key(material, where="chain key")
    public_key = None
    if args.public_key_file:
        public_key = load_public_key(Path(args.public_key_file).read_bytes(), where="public key")
        if not args.checkpoints:
            print("error: --public-key-file needs --checkpoints", file=sys.stderr)
            return 2
    report = verify_log(
        args.log,
        chain_key=chain_key,
        public_key=public_key,
        checkpoints_path=args.checkpoints,
        progress=None if args.no_progress else _Progress(sys.stderr),
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for finding in report.findings:
            print(finding)
        producers = ", ".join(f"{p} seq {a}..{b}" for p, (a, b) in report.producers.items())
        status = "OK" if report.ok else f"FAILED ({len(report.findings)} findings)"
        print(
            f"{status}: {report.records} records, {report.checkpoints} signed checkpoints"
            + (f"; {producers}" if producers else "")
        )
    if public_key is None:
        print(
            "warning: no --public-key-file: checkpoints not checked, so truncation of the "
            "tail and re-chaining with the chain key cannot be detected",
            file=sys.stderr,
        )
    return 0 if report.ok else 1


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="saasfw-audit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="check a log's hash chain and signed checkpoints")
    verify.add_argument("log", help="the active log file (rotated segments are found)")
    verify.add_argument("--chain-key-file", help=f"file with the chain key (or ${CHAIN_KEY_ENV})")
    verify.add_argument("--public-key-file", help="Ed25519 public key of the checkpoints")
    verify.add_argument("--checkpoints", help="the checkpoint file")
    verify.add_argument("--json", action="store_true", help="machine-readable report")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    verify.set_defaults(func=_cmd_verify)
    keygen = sub.add_parser("keygen", help="print a new key")
    keygen.add_argument("kind", choices=["aes256", "hmac", "ed25519"])
    keygen.set_defaults(func=_cmd_keygen)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
