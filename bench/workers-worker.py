"""The Python worker of bench/workers.ts: `bench.wait` waits until cancelled and
writes the CLOCK_MONOTONIC time (ms) at which CancelledError reached it."""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clients", "python"))
import leash  # noqa: E402

worker = leash.Worker(sys.argv[1], slots=16)


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


@worker.task("bench.wait")
async def wait(ctx, input):
    write(input["started"], "1")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        write(input["marker"], repr(time.monotonic() * 1000))
        raise


@worker.task("bench.noop")
async def noop(ctx, input):
    return 1


async def main():
    task = asyncio.ensure_future(worker.run())
    while worker.worker_id is None and not task.done():
        await asyncio.sleep(0.01)
    print("ready", worker.worker_id, flush=True)
    await task


asyncio.run(main())
