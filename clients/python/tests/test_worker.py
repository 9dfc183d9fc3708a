"""The Python SDK. Unit tests run anywhere; the ones marked `server` need a leash
server at LEASH_URL (test/workers.pytest.test.ts starts one with LEASH_API_KEYS
"pykey:py", LEASH_WORKER_LEASE_MS=1500 and LEASH_WORKER_TYPES naming pyt.* types)."""

import asyncio
import json
import os
import threading
import time
import urllib.error
import urllib.request

import pytest

import leash
from leash.worker import Worker

URL = os.environ.get("LEASH_URL")
KEY = os.environ.get("LEASH_KEY")
server = pytest.mark.skipif(not URL, reason="needs a leash server at LEASH_URL")


def test_ws_url_from_http_url():
    assert Worker("http://h:1")._ws_url() == "ws://h:1/api/workers/connect"
    assert Worker("https://h/")._ws_url() == "wss://h/api/workers/connect"
    assert Worker("ws://h:2/api/workers/connect")._ws_url() == "ws://h:2/api/workers/connect"
    with pytest.raises(leash.ConnectError):
        Worker("ftp://h")._ws_url()


def test_registration_is_checked():
    w = Worker("http://h")

    def plain(ctx, input):
        return 1

    with pytest.raises(TypeError, match="sync=True"):
        w.task("a")(plain)
    w.task("a", sync=True)(plain)
    with pytest.raises(ValueError, match="twice"):
        w.task("a", sync=True)(plain)
    with pytest.raises(ValueError):
        Worker("http://h", slots=0)


def test_run_without_types_is_refused():
    with pytest.raises(ValueError, match="no task types"):
        asyncio.run(Worker("http://h").run())


def test_unreachable_server_raises_connect_error():
    w = Worker("http://127.0.0.1:1")

    @w.task("x")
    async def x(ctx, input):
        return None

    with pytest.raises(leash.ConnectError):
        asyncio.run(w.run())


def http(method, path, body=None):
    req = urllib.request.Request(
        URL + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", **({"authorization": f"Bearer {KEY}"} if KEY else {})},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


@server
def test_wrong_key_raises_auth_error():
    w = Worker(URL, api_key="not-a-key")

    @w.task("pyt.a")
    async def a(ctx, input):
        return None

    with pytest.raises(leash.AuthError):
        asyncio.run(w.run())


@server
def test_cancel_reaches_async_handler_while_another_blocks_the_loop():
    """A handler blocking the event loop for longer than the lease neither loses the
    worker (pings come from the SDK's own thread) nor keeps a sync handler in
    another thread from seeing its cancel at once."""
    w = Worker(URL, api_key=KEY, slots=4)
    seen = {}
    sync_started = threading.Event()

    @w.task("pyt.block")
    async def block(ctx, input):
        time.sleep(2.5)  # blocks the caller's loop past the 1.5 s lease
        return {"blocked": True}

    @w.task("pyt.spin", sync=True)
    def spin(ctx, input):
        sync_started.set()
        ctx.cancelled.wait(30)
        seen["spin"] = (time.monotonic(), ctx.cancel_reason)
        return None

    @w.task("pyt.wait")
    async def wait(ctx, input):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["wait"] = (time.monotonic(), ctx.cancel_reason, ctx.cancelled.is_set())
            raise

    async def scenario():
        runner = asyncio.ensure_future(w.run())
        while w.worker_id is None:
            await asyncio.sleep(0.01)
        spin_id = (await asyncio.to_thread(http, "POST", "/api/tasks", {"type": "pyt.spin", "input": {}}))["id"]
        wait_id = (await asyncio.to_thread(http, "POST", "/api/tasks", {"type": "pyt.wait", "input": {}}))["id"]
        await asyncio.to_thread(sync_started.wait, 10)
        await asyncio.sleep(0.2)
        # Cancel the sync handler from another thread while this loop is blocked.
        block_id = (await asyncio.to_thread(http, "POST", "/api/tasks", {"type": "pyt.block", "input": {}}))["id"]
        asked = {}

        def cancel_soon():
            time.sleep(0.5)
            asked["t"] = time.monotonic()
            http("POST", f"/api/tasks/{spin_id}/cancel", {})

        threading.Thread(target=cancel_soon).start()
        await asyncio.sleep(0.1)  # the block handler now holds the loop for 2.5 s
        ends = {}
        for tid in (spin_id, block_id):
            ends[tid] = await asyncio.to_thread(http, "GET", f"/api/tasks/{tid}/wait?timeout_s=15")
        t0 = time.monotonic()
        await asyncio.to_thread(http, "POST", f"/api/tasks/{wait_id}/cancel", {})
        ends[wait_id] = await asyncio.to_thread(http, "GET", f"/api/tasks/{wait_id}/wait?timeout_s=10")
        w.drain()
        await asyncio.wait_for(runner, 10)
        return ends, asked, t0

    ends, asked, t0 = asyncio.run(scenario())
    by_type = {t["type"]: t for t in ends.values()}
    assert by_type["pyt.block"]["status"] == "completed", by_type["pyt.block"]
    assert by_type["pyt.spin"]["status"] == "cancelled"
    assert by_type["pyt.wait"]["status"] == "cancelled"
    spin_at, spin_reason = seen["spin"]
    assert spin_reason == "user"
    assert spin_at - asked["t"] < 1.0, "the sync handler saw its cancel while the loop was blocked"
    wait_at, wait_reason, flag = seen["wait"]
    assert wait_reason == "user" and flag
    assert wait_at - t0 < 1.0


@server
def test_wrong_path_raises_connect_error_naming_the_url():
    w = Worker(URL + "/not-leash", api_key=KEY)

    @w.task("pyt.a")
    async def a(ctx, input):
        return None

    with pytest.raises(leash.ConnectError) as e:
        asyncio.run(w.run())
    assert e.value.code == "bad_url"
    assert "HTTP 404" in e.value.message


SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}, "tag": {"type": "string"}},
    "required": ["n"],
    "additionalProperties": False,
}


def http_error(method, path, body):
    """The status and error body of a request that must fail."""
    try:
        http(method, path, body)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    raise AssertionError(f"{method} {path} succeeded")


@server
def test_input_schema_is_checked_at_create_and_another_schema_is_a_type_conflict():
    w = Worker(URL, api_key=KEY, slots=2)

    @w.task("pyt.schema", schema=SCHEMA)
    async def typed(ctx, input):
        return {"n": input["n"]}

    async def scenario():
        runner = asyncio.ensure_future(w.run())
        while w.worker_id is None and not runner.done():
            await asyncio.sleep(0.01)
        # A bad input is refused before it is stored; the details name the field.
        status, body = await asyncio.to_thread(
            http_error, "POST", "/api/tasks", {"type": "pyt.schema", "input": {"n": "three", "extra": 1}}
        )
        assert status == 400, body
        assert body["error"]["code"] == "invalid_request"
        paths = {d["path"] for d in body["error"]["details"]}
        assert {"input.n", "input.extra"} <= paths, body
        status, body = await asyncio.to_thread(http_error, "POST", "/api/tasks", {"type": "pyt.schema", "input": {}})
        assert status == 400 and any(d["path"] == "input.n" for d in body["error"]["details"]), body
        created = await asyncio.to_thread(http, "POST", "/api/tasks", {"type": "pyt.schema", "input": {"n": 3}})
        done = await asyncio.to_thread(http, "GET", f"/api/tasks/{created['id']}/wait?timeout_s=10")
        assert done["status"] == "completed" and done["result"] == {"n": 3}, done

        # A second worker of the type with another schema is refused with a clear exception…
        other = Worker(URL, api_key=KEY, reconnect=False)
        other.task("pyt.schema", schema={**SCHEMA, "required": ["n", "tag"]})(typed)
        try:
            await other.run()
            raise AssertionError("a worker with another schema was accepted")
        except leash.TypeConflictError as e:
            assert e.code == "type_conflict"
            assert "another input schema" in e.message
        # …the same schema (keys in another order) is not.
        same = Worker(URL, api_key=KEY, reconnect=False)
        same.task("pyt.schema", schema=dict(reversed(list(SCHEMA.items()))))(typed)
        same_runner = asyncio.ensure_future(same.run())
        while same.worker_id is None and not same_runner.done():
            await asyncio.sleep(0.01)
        assert same.worker_id is not None, same_runner
        same.drain()
        w.drain()
        await asyncio.wait_for(asyncio.gather(runner, same_runner), 10)

    asyncio.run(scenario())


def test_schema_must_be_a_json_object():
    w = Worker("http://h")
    with pytest.raises(TypeError, match="JSON Schema"):
        w.task("a", schema="not a schema")
