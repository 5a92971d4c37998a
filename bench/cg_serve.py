"""The instruction benchmark over HTTP: one app served by uvicorn under callgrind, loaded from
outside.

``python bench/cg_serve.py APP --port P --out FILE`` (run by ``_callgrind.run_http``)
serves the app with uvicorn (h11, one process, no access log) behind a small ASGI wrapper
that answers the harness's control requests under ``/__bench__/``:

- ``start``: ``gc.collect(); gc.freeze()`` and start counting (start-up is not counted);
- ``mint?permission=P&count=N``: N tokens from the app's own issuer (in a gap);
- ``mark?label=L``: end the current window or gap. A label starting with ``window`` first
  flushes the app (spans, access lines), dumps the count, then reads the work counters
  and Redis's statistics; a ``gap`` label reads them first, then dumps, so the reads fall
  in gaps;
- ``stop``: write what was read to FILE and stop the server.

Every control request costs the same in every window, so it cancels out of
(I(N2) - I(N1)) / (N2 - N1) like everything else constant per window.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _marker import Marker
from cg_worker import MEASURE_LIMIT, SUBJECTS, build, counts, redis_stats


async def _answer(send: Any, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _others_done() -> None:
    current = asyncio.current_task()

    def busy() -> bool:
        return any(
            task is not current
            and not task.done()
            and getattr(task.get_coro(), "__qualname__", "").endswith("run_asgi")
            for task in asyncio.all_tasks()
        )

    while busy():  # noqa: ASYNC110 - no event to wait on: the tasks belong to uvicorn
        await asyncio.sleep(0)


def _write(out: Path, payload: Any) -> None:
    out.write_text(json.dumps(payload))


async def serve(name: str, port: int, out: Path) -> None:
    import uvicorn

    marker = Marker()
    with tempfile.TemporaryDirectory(prefix="saasfw-bench-serve-") as tmp:
        os.environ["BENCH_TMP"] = tmp
        subject = build(name, MEASURE_LIMIT, tmp)
        app = subject.app
        reads: list[dict[str, Any]] = []
        server: uvicorn.Server

        def read(label: str) -> None:
            reads.append(
                {"label": label, "work": counts(subject), "redis": redis_stats(subject.redis_url)}
            )

        async def control(path: str, query: dict[str, list[str]], send: Any) -> None:
            if path == "start":
                gc.collect()
                gc.freeze()
                marker.start()
                await _answer(send, {"featured": subject.featured})
            elif path == "mint":
                count = int(query["count"][0])
                permission = query["permission"][0]
                assert subject.mint is not None
                tokens = [await subject.mint(permission) for _ in range(count)]
                await _answer(send, tokens)
            elif path == "mark":
                # The previous request's task may still be running its code after the
                # response went out (metrics recorded after the last send): let it finish.
                await _others_done()
                label = query["label"][0]
                if label.startswith("window"):
                    subject.flush()
                    marker.dump(label)
                    read(label)
                else:
                    read(label)
                    marker.dump(label)
                await _answer(send, {})
            elif path == "stop":
                _write(out, {"app": name, "featured": subject.featured, "reads": reads})
                await _answer(send, {})
                server.should_exit = True

        async def wrapper(scope: Any, receive: Any, send: Any) -> None:
            path = scope.get("path", "")
            if scope["type"] == "http" and path.startswith("/__bench__/"):
                query = parse_qs(scope["query_string"].decode())
                await control(path.removeprefix("/__bench__/"), query, send)
                return
            await app(scope, receive, send)

        config = uvicorn.Config(
            wrapper,
            host="127.0.0.1",
            port=port,
            http="h11",
            loop="asyncio",
            lifespan="on",
            access_log=False,
            log_level="warning",
        )
        server = uvicorn.Server(config)
        await server.serve()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=sorted(SUBJECTS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.app, args.port, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
