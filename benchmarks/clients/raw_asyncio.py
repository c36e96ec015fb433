"""Raw asyncio TCP client (asyncio.Protocol, no WebSocket framing): the floor
for the client-side benchmarks, against the C echo server in raw mode."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402

ARGS = bc.client_args(__doc__ or "")


class Client(asyncio.Protocol):
    def __init__(self, counter: bc.Counter, payload: bytes) -> None:
        self.counter, self.payload, self.got = counter, payload, 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.payload)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        while self.got >= len(self.payload):
            self.got -= len(self.payload)
            self.counter.count += 1
            if not self.counter.stop:
                self.transport.write(self.payload)  # type: ignore[attr-defined]


async def main() -> None:
    conns, size = bc.CLIENT_WORKLOADS[ARGS.workload]
    payload = os.urandom(size)
    counter = bc.Counter()
    loop = asyncio.get_running_loop()
    transports = []

    async def opened() -> None:
        for _ in range(conns):
            t, _p = await loop.create_connection(
                lambda: Client(counter, payload), ARGS.host, ARGS.port
            )
            transports.append(t)

    result = await bc.measure(counter, opened, ARGS.warmup, ARGS.duration)
    await asyncio.sleep(0.05)
    for t in transports:
        t.close()
    bc.report(result)


if __name__ == "__main__":
    bc.lifeline(ARGS.max_seconds, watch_stdin=False)
    bc.run(main, ARGS.uvloop)
