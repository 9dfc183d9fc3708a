"""The worker: one WebSocket to leash, read on the SDK's own thread and event loop.

Handlers run on the caller's event loop (async ones) or in threads (sync=True). The
socket lives on a loop of its own in a thread of its own, so a handler that blocks
the caller's loop can neither stop the pings nor hold up a cancel: a `cancel` frame
sets `ctx.cancelled` on the SDK thread at once and cancels the handler's asyncio task
with `call_soon_threadsafe` (no sleep in between). Events and finishes are kept until
the server acknowledges them and re-sent after a reconnect, each with an id the
server deduplicates on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import websockets
import websockets.exceptions

try:  # websockets ≥ 13: the new asyncio client (the default `connect` from 14 on)
    from websockets.asyncio.client import connect as _ws_connect

    _HEADERS_KW = "additional_headers"
except ImportError:  # websockets 10–12 (Debian bookworm ships 10.4)
    from websockets import connect as _ws_connect

    _HEADERS_KW = "extra_headers"

from .errors import AuthError, ConnectError, LeashError, TypeConflictError

log = logging.getLogger("leash")

SDK = "leash-python/0.1"
CONNECT_PATH = "/api/workers/connect"


class Ack:
    """What `ctx.progress`, `ctx.emit` and `ctx.checkpoint` return: `await` it in async
    code, call `.result(timeout)` in sync code, or ignore it (the SDK still delivers it).

    It resolves, once the server applied the event, to the seq the event got in the
    task's log (the `id` an SSE reader sees; emits coalesced into one `output.delta`
    share its seq; a checkpoint's seq is the last one it covers), or to None when the
    server dropped it (the task is being cancelled). A retried event keeps its seq."""

    def __init__(self, fut: concurrent.futures.Future):
        self._fut = fut

    def __await__(self):
        return asyncio.wrap_future(self._fut).__await__()

    def result(self, timeout: float | None = None) -> int | None:
        return self._fut.result(timeout)

    def done(self) -> bool:
        return self._fut.done()


class Context:
    """What a handler gets besides its input."""

    def __init__(self, worker: "Worker", attempt: "_Attempt"):
        self._worker = worker
        self._attempt = attempt
        self.task_id: str = attempt.task["id"]
        self.type: str = attempt.task["type"]
        self.attempt: str = attempt.id
        self.deadline: str | None = attempt.task.get("deadline_at")
        #: The state of the last `checkpoint()` of an earlier attempt (after a worker was lost), else None.
        self.resume_state: Any = attempt.task.get("resume_state")
        #: Set the moment a cancel arrives (any thread may wait on it).
        self.cancelled = threading.Event()
        #: Why: "user", "deadline", "shutdown", "interrupted", "fenced", … (None until cancelled).
        self.cancel_reason: str | None = None

    def progress(self, percent: float | None, message: str | None = None) -> Ack:
        pct = None if percent is None else max(0.0, min(100.0, float(percent)))
        return self._worker._event(self._attempt, {"kind": "progress", "progress": pct, "message": message})

    def emit(self, text: str) -> Ack:
        return self._worker._event(self._attempt, {"kind": "output", "text": str(text)})

    def checkpoint(self, state: Any) -> Ack:
        json.dumps(state)  # fail here, in the handler, on state that can't be sent
        return self._worker._event(self._attempt, {"kind": "checkpoint", "state": state})


@dataclass
class _Attempt:
    id: str
    fence: int
    task: dict
    ctx: Context | None = None
    future: concurrent.futures.Future | None = None
    sync: bool = False
    finished: bool = False
    acked_cancel: bool = False


@dataclass
class _Handler:
    fn: Callable[..., Any]
    sync: bool
    schema: dict | None = None


@dataclass
class _Pending:
    frame: dict
    fut: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class Worker:
    """Serves task types to a leash server.

    worker = leash.Worker("http://127.0.0.1:8080", api_key=None, slots=4)

    @worker.task("summarize")
    async def summarize(ctx, input): ...

    asyncio.run(worker.run())   # or worker.run_forever()
    """

    def __init__(self, url: str, api_key: str | None = None, slots: int = 4, *, reconnect: bool = True):
        if not isinstance(slots, int) or slots < 1:
            raise ValueError("slots must be an integer ≥ 1")
        self.url = url
        self.api_key = api_key
        self.slots = slots
        self.reconnect = reconnect
        self.worker_id: str | None = None
        self._handlers: dict[str, _Handler] = {}
        self._attempts: dict[str, _Attempt] = {}
        self._outbox: dict[str, _Pending] = {}  # unacknowledged events and finishes, in send order
        self._ids = itertools.count(1)
        self._ws = None
        self._sdk_loop: asyncio.AbstractEventLoop | None = None
        self._user_loop: asyncio.AbstractEventLoop | None = None
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._draining = False
        self._stopped = threading.Event()
        self._last_heard = time.monotonic()
        self._ping_s = 5.0
        self._lease_s = 15.0
        self._retry_after = 0.0  # the server said "rate_limited": wait this long before reconnecting

    # ── registration ───────────────────────────────────────────────────
    def task(self, name: str, *, sync: bool = False, schema: dict | None = None):
        """Registers `fn(ctx, input)` for task type `name`. `sync=True`: a plain function run in a thread.
        `schema`: a JSON Schema (a dict, e.g. a Pydantic model's `model_json_schema()`) the server checks
        each create's input against (400 `invalid_request` naming the field; the handler never sees it)."""
        if schema is not None:
            if not isinstance(schema, dict):
                raise TypeError(f'the schema of "{name}" must be a dict (a JSON Schema object)')
            json.dumps(schema)  # fail here, at registration, on a schema that can't be sent

        def register(fn):
            if name in self._handlers:
                raise ValueError(f'task type "{name}" is registered twice')
            if not sync and not asyncio.iscoroutinefunction(fn):
                raise TypeError(f'handler of "{name}" is not async: pass sync=True to run it in a thread')
            self._handlers[name] = _Handler(fn, sync, schema)
            return fn

        return register

    # ── running ────────────────────────────────────────────────────────
    async def run(self) -> None:
        """Connects and serves until `drain()` (SIGTERM in run_forever) has let running handlers finish.
        Raises ConnectError / AuthError / LeashError if the first connection fails."""
        if not self._handlers:
            raise ValueError("no task types registered: use @worker.task(name)")
        self._user_loop = asyncio.get_running_loop()
        self._threads = concurrent.futures.ThreadPoolExecutor(self.slots, thread_name_prefix="leash-handler")
        first: concurrent.futures.Future = concurrent.futures.Future()
        done = asyncio.Event()
        user_loop = self._user_loop

        def sdk_thread():
            loop = asyncio.new_event_loop()
            self._sdk_loop = loop
            try:
                loop.run_until_complete(self._main(first))
            except BaseException as e:  # noqa: BLE001 — reported to run()
                if not first.done():
                    first.set_exception(e)
            finally:
                loop.close()
                try:
                    user_loop.call_soon_threadsafe(done.set)
                except RuntimeError:
                    pass  # run() already raised the first connection's error and its loop is gone

        t = threading.Thread(target=sdk_thread, name="leash-socket", daemon=True)
        t.start()
        await asyncio.wrap_future(first)  # raises the first connection's error
        await done.wait()
        self._threads.shutdown(wait=False)

    def run_forever(self) -> None:
        """`asyncio.run(worker.run())` with SIGTERM and SIGINT draining the worker."""

        async def main():
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self.drain)
                except (NotImplementedError, RuntimeError):
                    pass
            await self.run()

        asyncio.run(main())

    def drain(self) -> None:
        """Takes no new work; returns from run() once running handlers have finished and been acknowledged."""
        self._draining = True
        loop = self._sdk_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._send_nowait, {"type": "drain"})
            loop.call_soon_threadsafe(self._maybe_stop)

    def stop(self) -> None:
        """Stops at once: cancels running handlers (reason "shutdown") and closes the socket."""
        self._draining = True
        for a in list(self._attempts.values()):
            self._cancel_handler(a, "shutdown")
        self._stopped.set()
        loop = self._sdk_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._close_socket)

    # ── the SDK thread ─────────────────────────────────────────────────
    def _ws_url(self) -> str:
        u = urlsplit(self.url)
        scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(u.scheme)
        if scheme is None or not u.netloc:
            raise ConnectError("bad_url", f"{self.url!r} is not an http(s):// or ws(s):// URL")
        path = u.path.rstrip("/")
        if not path.endswith(CONNECT_PATH):
            path += CONNECT_PATH
        return urlunsplit((scheme, u.netloc, path, "", ""))

    async def _main(self, first: concurrent.futures.Future) -> None:
        backoff = 0.1
        while not self._stopped.is_set():
            try:
                await self._session(first)
                backoff = 0.1
            except (AuthError, ConnectError, LeashError) as e:
                if not first.done():
                    first.set_exception(e)
                    return
                log.warning("leash: %s", e)
                if isinstance(e, AuthError) or e.code == "type_conflict":
                    self._stopped.set()
                    return
            except Exception as e:  # noqa: BLE001 — a dropped connection: reconnect
                if not first.done():
                    first.set_exception(ConnectError("unreachable", f"can't connect to {self.url}: {e}"))
                    return
                log.warning("leash: connection lost (%s); reconnecting", e)
            if self._stopped.is_set() or not self.reconnect:
                break
            if self._draining and not self._attempts:
                break
            wait, self._retry_after = max(backoff, self._retry_after), 0.0
            await asyncio.sleep(wait)
            backoff = min(2.0, backoff * 2)
        self._stopped.set()

    async def _session(self, first: concurrent.futures.Future) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            ws = await _ws_connect(self._ws_url(), open_timeout=10, max_size=2**20, **{_HEADERS_KW: headers})
        except websockets.exceptions.InvalidHandshake as e:
            # InvalidStatusCode (≤ 13) has .status_code; InvalidStatus (≥ 13) has .response.status_code.
            status = getattr(e, "status_code", None) or getattr(getattr(e, "response", None), "status_code", None)
            if status in (401, 403):
                raise AuthError("unauthorized", f"the server refused the API key (HTTP {status})") from None
            if status is not None:
                raise ConnectError("bad_url", f"no leash worker endpoint at {self.url} (HTTP {status})") from None
            raise ConnectError("unreachable", f"can't connect to {self.url}: {e}") from None
        except (OSError, asyncio.TimeoutError) as e:
            raise ConnectError("unreachable", f"can't connect to {self.url}: {e}") from None
        self._ws = ws
        try:
            running = [{"attempt": a.id, "fence": a.fence} for a in self._attempts.values()]
            hello = {
                "type": "hello",
                "types": sorted(self._handlers),
                "slots": self.slots,
                "running": running,
                "sdk": SDK,
            }
            schemas = {name: h.schema for name, h in self._handlers.items() if h.schema is not None}
            if schemas:
                hello["schemas"] = schemas
            await ws.send(json.dumps(hello))
            welcome = await self._welcome(ws)
            self.worker_id = welcome["worker_id"]
            self._ping_s = welcome["ping_ms"] / 1000
            self._lease_s = welcome["lease_ms"] / 1000
            kept = set(welcome.get("kept", []))
            for a in list(self._attempts.values()):
                if a.id not in kept:
                    self._forget(a, "worker_lost")  # the server gave it up while we were away
            # Everything not yet acknowledged goes again, in order (the server deduplicates).
            for p in list(self._outbox.values()):
                await ws.send(json.dumps(p.frame))
            if self._draining:
                await ws.send(json.dumps({"type": "drain"}))
            if not first.done():
                first.set_result(None)
            self._last_heard = time.monotonic()
            pinger = asyncio.ensure_future(self._pinger(ws))
            try:
                async for raw in ws:
                    self._last_heard = time.monotonic()
                    self._on_frame(json.loads(raw))
                    if self._stopped.is_set():
                        break
            finally:
                pinger.cancel()
        finally:
            self._ws = None
            await ws.close()

    async def _welcome(self, ws) -> dict:
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), 10)
            except websockets.exceptions.ConnectionClosed as e:
                raise LeashError("refused", f"the server closed the connection ({e.code} {e.reason})") from None
            f = json.loads(raw)
            if f.get("type") == "welcome":
                return f
            if f.get("type") == "error":
                err = f.get("error", {})
                self._note_rate_limit(err)
                code = err.get("code", "error")
                raise (TypeConflictError if code == "type_conflict" else LeashError)(code, err.get("message", ""))

    async def _pinger(self, ws) -> None:
        while True:
            await asyncio.sleep(self._ping_s)
            if time.monotonic() - self._last_heard > self._lease_s:
                log.warning("leash: the server is silent past the lease; reconnecting")
                await ws.close()
                return
            await ws.send('{"type":"ping"}')

    def _send_nowait(self, frame: dict) -> None:
        ws = self._ws
        if ws is not None:
            asyncio.ensure_future(self._send(ws, frame))

    async def _send(self, ws, frame: dict) -> None:
        try:
            await ws.send(json.dumps(frame))
        except websockets.exceptions.ConnectionClosed:
            pass  # kept in the outbox when it needs an ack: re-sent after the reconnect

    def _close_socket(self) -> None:
        if self._ws is not None:
            asyncio.ensure_future(self._ws.close())

    def _maybe_stop(self) -> None:
        if self._draining and not self._attempts and not self._outbox:
            self._stopped.set()
            self._close_socket()

    def _on_frame(self, f: dict) -> None:
        t = f.get("type")
        if t == "ping":
            self._send_nowait({"type": "pong"})
        elif t == "assign":
            self._on_assign(f)
        elif t == "cancel":
            a = self._attempts.get(f["attempt"])
            self._send_nowait({"type": "cancel_ack", "attempt": f["attempt"]})
            if a is not None:
                self._cancel_handler(a, f.get("reason", "user"))
        elif t == "ack":
            p = self._outbox.pop(f["id"], None)
            if p is not None and not p.fut.done():
                seq = f.get("seq")
                p.fut.set_result(None if f.get("applied") is False else (seq if isinstance(seq, int) else 0))
            if p is not None and p.frame["type"] == "finish":
                self._attempts.pop(p.frame["attempt"], None)
            if p is not None:
                self._maybe_stop()  # draining: the last ack may be an event's
        elif t == "error":
            err = f.get("error", {})
            self._note_rate_limit(err)
            p = self._outbox.pop(f.get("id"), None) if f.get("id") else None
            if p is not None and not p.fut.done():
                p.fut.set_exception(LeashError(err.get("code", "error"), err.get("message", "")))
            if err.get("code") == "fenced" and f.get("attempt") in self._attempts:
                self._forget(self._attempts[f["attempt"]], "fenced")
            elif p is None:
                log.warning("leash: server error %s: %s", err.get("code"), err.get("message"))

    def _note_rate_limit(self, err: dict) -> None:
        """Over the key's LEASH_RATE_LIMIT the server closes the socket; unacknowledged frames
        are re-sent after the reconnect, which waits `retry_after_s`."""
        if err.get("code") == "rate_limited":
            retry = (err.get("details") or {}).get("retry_after_s")
            self._retry_after = float(retry) if isinstance(retry, (int, float)) else 1.0
            log.warning("leash: %s", err.get("message"))

    def _on_assign(self, f: dict) -> None:
        task = f["task"]
        h = self._handlers.get(task["type"])
        if self._draining or h is None:
            return  # not accepted: the server gives it to another worker
        a = _Attempt(id=f["attempt"], fence=f["fence"], task=task, sync=h.sync)
        a.ctx = Context(self, a)
        self._attempts[a.id] = a
        self._send_nowait({"type": "accept", "attempt": a.id, "fence": a.fence})
        a.future = asyncio.run_coroutine_threadsafe(self._run_handler(a, h), self._user_loop)

    def _cancel_handler(self, a: _Attempt, reason: str) -> None:
        ctx = a.ctx
        if ctx is None or ctx.cancelled.is_set():
            return
        ctx.cancel_reason = reason
        ctx.cancelled.set()
        # An async handler gets CancelledError at its next await; a thread can't be
        # interrupted, so a sync one sees only ctx.cancelled (its work must stop first).
        if not a.sync and a.future is not None:
            a.future.cancel()

    def _forget(self, a: _Attempt, reason: str) -> None:
        """The server no longer counts this attempt as ours: stop its handler and send nothing more for it."""
        self._cancel_handler(a, reason)
        a.finished = True
        self._attempts.pop(a.id, None)
        for key, p in list(self._outbox.items()):
            if p.frame.get("attempt") == a.id:
                del self._outbox[key]
                if not p.fut.done():
                    p.fut.set_exception(LeashError("fenced", f"attempt {a.id} is no longer this worker's"))
        self._maybe_stop()

    # ── called from handlers (any thread) ──────────────────────────────
    def _event(self, a: _Attempt, body: dict) -> Ack:
        frame = {"type": "event", "id": f"e{next(self._ids)}", "attempt": a.id, "fence": a.fence, **body}
        return Ack(self._queue(frame, a))

    def _queue(self, frame: dict, a: _Attempt) -> concurrent.futures.Future:
        p = _Pending(frame)
        if a.finished and frame["type"] != "finish":
            p.fut.set_result(None)
            return p.fut

        def put():
            if a.id not in self._attempts:
                p.fut.set_result(None)
                return
            self._outbox[frame["id"]] = p
            self._send_nowait(frame)

        self._sdk_loop.call_soon_threadsafe(put)
        return p.fut

    async def _run_handler(self, a: _Attempt, h: _Handler) -> None:
        ctx = a.ctx
        task = a.task
        try:
            if h.sync:
                result = await asyncio.get_running_loop().run_in_executor(self._threads, h.fn, ctx, task["input"])
            else:
                result = await h.fn(ctx, task["input"])
            if ctx.cancelled.is_set():
                body = {"error": {"code": "cancelled", "message": "cancelled", "cancelled": True}}
            else:
                json.dumps(result)
                body = {"result": result}
        except asyncio.CancelledError:
            body = {"error": {"code": "cancelled", "message": "cancelled", "cancelled": True}}
        except Exception as e:  # noqa: BLE001 — the task fails with it
            code = getattr(e, "code", None)
            body = {
                "error": {
                    "code": code if isinstance(code, str) else "handler_error",
                    "message": (f"{type(e).__name__}: {e}")[:4000],
                }
            }
        frame = {"type": "finish", "id": f"f{next(self._ids)}", "attempt": a.id, "fence": a.fence, **body}
        a.finished = True
        self._queue(frame, a)
