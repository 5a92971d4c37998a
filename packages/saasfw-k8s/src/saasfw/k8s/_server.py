"""uvicorn integration: SIGTERM turns readiness off, drains in-flight requests, then exits 0.

Plain uvicorn stops listening the moment SIGTERM arrives and re-raises the signal after
shutdown (exit status 143). ``GracefulServer`` instead keeps serving while draining, so
probes can see the 503 and in-flight requests finish, then runs uvicorn's normal shutdown
(which runs the lifespan shutdown and with it the lifecycle's hooks) and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from saasfw.k8s._errors import LifecycleError, MissingExtraError
from saasfw.k8s._lifecycle import Lifecycle, running_lifecycles

try:
    import uvicorn
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("uvicorn", "uvicorn") from exc

_STARTUP_FAILURE = 3


class GracefulServer(uvicorn.Server):
    """A ``uvicorn.Server`` whose SIGTERM drains before it stops.

    On the first SIGTERM every target lifecycle (``lifecycles``, or every lifecycle whose
    lifespan is running in this process) begins draining at once, so readiness answers 503;
    the server keeps accepting and serving while it waits for in-flight requests to reach zero
    or the drain timeout to pass, then shuts down as uvicorn does. A second SIGTERM skips the
    rest of the drain. SIGINT keeps uvicorn's behaviour (Ctrl+C twice forces exit).
    """

    def __init__(
        self, config: uvicorn.Config, *, lifecycles: Sequence[Lifecycle] | None = None
    ) -> None:
        super().__init__(config)
        self._lifecycles = None if lifecycles is None else list(lifecycles)
        self._drain_requested = False
        self._drain_task: asyncio.Task[None] | None = None

    def _targets(self) -> list[Lifecycle]:
        return running_lifecycles() if self._lifecycles is None else self._lifecycles

    @property
    def in_flight(self) -> int:
        """HTTP requests uvicorn is running right now (one task per request)."""
        return len(self.server_state.tasks)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM:
            super().handle_exit(sig, frame)
            return
        # Not recorded in uvicorn's captured signals: a drained shutdown is a clean exit (0).
        if self._drain_requested:
            self.should_exit = True
            return
        self._drain_requested = True
        for lifecycle in self._targets():
            lifecycle.begin_drain()

    async def _drain(self) -> None:
        targets = self._targets()
        if targets:
            await asyncio.gather(*(lc.drain(lambda: self.in_flight) for lc in targets))

    async def on_tick(self, counter: int) -> bool:
        if self._drain_requested and self._drain_task is None:
            self._drain_task = asyncio.create_task(self._drain(), name="saasfw-drain")
        if self._drain_task is not None and self._drain_task.done():
            self.should_exit = True
        return await super().on_tick(counter)


def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    lifecycles: Sequence[Lifecycle] | None = None,
    app_dir: str | None = None,
    **uvicorn_options: Any,
) -> None:
    """Run ``app`` (an ASGI app or ``"module:attr"``) under ``GracefulServer`` until SIGTERM.

    ``app_dir`` is put first on ``sys.path``; ``uvicorn_options`` go to ``uvicorn.Config``.
    ``timeout_graceful_shutdown`` defaults to 1 second: by the time uvicorn's own shutdown
    starts, the drain has already waited for in-flight requests. One worker only: in
    Kubernetes, scale with replicas.
    """
    uvicorn_options.setdefault("timeout_graceful_shutdown", 1)
    if uvicorn_options.get("workers", 1) != 1 or uvicorn_options.get("reload", False):
        raise LifecycleError("serve() runs one worker without reload; scale with pod replicas")
    if app_dir:
        # What `uvicorn --app-dir` does: the app module is imported from there.
        sys.path.insert(0, app_dir)
    config = uvicorn.Config(app, host=host, port=port, **uvicorn_options)
    server = GracefulServer(config, lifecycles=lifecycles)
    server.run()
    if not server.started:
        sys.exit(_STARTUP_FAILURE)
