"""``saasfw-messaging dead-letters``: list, inspect and replay the service's dead letters.

It reads the dead-letter table in the service's database (``--database-url`` or
``SAASFW_DB__URL``) and replays through the service's outbox, so a running relay delivers
the event again in order behind its key. Exit codes: 0 done, 1 not found or refused,
2 usage, 3 the database could not be used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict
from datetime import UTC, datetime

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from saasfw.core.outbox import outbox_tables
from saasfw.messaging._deadletters import (
    DeadLetterRecord,
    ReplayRefused,
    dead_letter_table,
    get_dead_letter,
    list_dead_letters,
    replay_dead_letter,
)

__all__ = ["add_dead_letter_commands", "run_dead_letters"]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_DATABASE = 0, 1, 2, 3


def add_dead_letter_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dead-letters list|inspect|replay`` on the top-level parser."""
    parser = commands.add_parser("dead-letters", help="list, inspect and replay dead letters")
    parser.add_argument("--database-url", default=os.environ.get("SAASFW_DB__URL"))
    parser.add_argument("--schema", default=None, help="schema of the tables (PostgreSQL)")
    parser.add_argument(
        "--table",
        default=os.environ.get(
            "SAASFW_MESSAGING__DEAD_LETTER_TABLE", "saasfw_messaging_dead_letters"
        ),
    )
    parser.add_argument(
        "--outbox-table",
        default=os.environ.get("SAASFW_MESSAGING__OUTBOX_TABLE", "saasfw_messaging_outbox"),
    )
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="dead letters, oldest first")
    listing.add_argument("--all", action="store_true", help="include replayed ones")
    listing.add_argument("--consumer", help="only this queue / durable consumer")
    listing.add_argument("--reason", help="only this reason (handler-failed, signature-...)")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    inspect = actions.add_parser("inspect", help="one dead letter, its error and its event")
    inspect.add_argument("id", type=int)
    inspect.add_argument("--json", action="store_true")
    replay = actions.add_parser("replay", help="stage dead letters again through the outbox")
    replay.add_argument("ids", type=int, nargs="*", metavar="ID")
    replay.add_argument("--all", action="store_true", help="every dead letter not replayed")
    replay.add_argument("--consumer", help="with --all: only this consumer's")
    replay.add_argument("--reason", help="with --all: only this reason")
    replay.add_argument("--again", action="store_true", help="replay replayed ones again")


def _engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    drivers = {"postgresql": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}
    if "+" not in parsed.drivername and parsed.drivername in drivers:
        parsed = parsed.set(drivername=drivers[parsed.drivername])
    return create_async_engine(parsed)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_list(records: list[DeadLetterRecord], as_json: bool) -> None:
    if as_json:
        for record in records:
            fields = asdict(record)
            fields.pop("body")
            print(json.dumps(fields, sort_keys=True))
        return
    if not records:
        print("no dead letters")
        return
    header = ("ID", "WHEN", "CONSUMER", "TYPE", "EVENT ID", "REASON", "ATTEMPTS", "STATUS")
    rows = [
        (
            str(r.id),
            _when(r.dead_lettered_at),
            r.consumer,
            r.type or "-",
            r.message_id,
            r.reason,
            str(r.attempts),
            r.status,
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def _print_record(record: DeadLetterRecord, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(record), sort_keys=True, indent=2))
        return
    for name, value in asdict(record).items():
        if name == "body":
            continue
        if name in ("dead_lettered_at", "replayed_at"):
            value = _when(value)
        print(f"{name + ':':<18}{'-' if value is None else value}")
    try:
        body = json.dumps(json.loads(record.body), indent=2, sort_keys=True)
    except ValueError:
        body = record.body
    print("event:")
    print(body)


async def _replay(args: argparse.Namespace, engine: AsyncEngine) -> int:
    table = dead_letter_table(args.table, schema=args.schema)
    outbox = outbox_tables(args.outbox_table, schema=args.schema)
    ids = list(args.ids)
    if args.all:
        records = await list_dead_letters(
            engine, table, consumer=args.consumer, reason=args.reason, limit=1_000_000
        )
        ids += [record.id for record in records]
    if not ids:
        print("nothing to replay", file=sys.stderr)
        return EXIT_REFUSED if not args.all else EXIT_OK
    code = EXIT_OK
    for id in ids:
        try:
            event = await replay_dead_letter(engine, table, outbox, id, again=args.again)
        except ReplayRefused as exc:
            print(f"dead letter {id}: not replayed: {exc}", file=sys.stderr)
            code = EXIT_REFUSED
            continue
        print(f"dead letter {id}: event {event.id} ({event.type}) staged for delivery")
    return code


async def _run(args: argparse.Namespace, engine: AsyncEngine) -> int:
    table = dead_letter_table(args.table, schema=args.schema)
    if args.action == "list":
        records = await list_dead_letters(
            engine,
            table,
            status=None if args.all else "dead",
            consumer=args.consumer,
            reason=args.reason,
            limit=args.limit,
        )
        _print_list(records, args.json)
        return EXIT_OK
    if args.action == "inspect":
        record = await get_dead_letter(engine, table, args.id)
        if record is None:
            print(f"no dead letter with id {args.id}", file=sys.stderr)
            return EXIT_REFUSED
        _print_record(record, args.json)
        return EXIT_OK
    return await _replay(args, engine)


def run_dead_letters(args: argparse.Namespace) -> int:
    """Carry out one ``dead-letters`` command; return the exit code."""
    if not args.database_url:
        print(
            "saasfw-messaging: no database: pass --database-url or set SAASFW_DB__URL",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.action == "replay" and not args.ids and not args.all:
        print("saasfw-messaging: replay needs dead-letter ids or --all", file=sys.stderr)
        return EXIT_USAGE

    async def main() -> int:
        engine = _engine(args.database_url)
        try:
            return await _run(args, engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (SQLAlchemyError, OSError) as exc:
        # The first line only: later lines carry the statement and its parameters.
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"saasfw-messaging: the database could not be used: {first}", file=sys.stderr)
        return EXIT_DATABASE
