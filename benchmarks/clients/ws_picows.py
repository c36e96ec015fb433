"""picows client (callback API): the next frame is sent from on_ws_frame."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _bench_common as bc  # noqa: E402
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect  # noqa: E402

ARGS = bc.client_args(__doc__ or "")
URI = f"ws://{ARGS.host}:{ARGS.port}/"


class Client(WSListener):
    def __init__(self, counter: bc.Counter, payload: bytes) -> None:
        self.counter, self.payload = counter, payload

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.BINARY:
            self.counter.count += 1
            if not self.counter.stop:
                transport.send(WSMsgType.BINARY, self.payload)
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()


async def main() -> None:
    conns, size = bc.CLIENT_WORKLOADS[ARGS.workload]
    payload = os.urandom(size)
    counter = bc.Counter()
    transports: list[WSTransport] = []

    async def opened() -> None:
        for _ in range(conns):
            t, _l = await ws_connect(
                lambda: Client(counter, payload), URI, max_frame_size=bc.MAX_MESSAGE
            )
            transports.append(t)
        for t in transports:
            t.send(WSMsgType.BINARY, payload)

    result = await bc.measure(counter, opened, ARGS.warmup, ARGS.duration)
    await asyncio.sleep(0.05)
    for t in transports:
        t.send_close()
    for t in transports:
        try:
            await asyncio.wait_for(t.wait_disconnected(), 2)
        except asyncio.TimeoutError:
            t.disconnect(graceful=False)
    bc.report(result)


if __name__ == "__main__":
    bc.lifeline(ARGS.max_seconds, watch_stdin=False)
    bc.run(main, ARGS.uvloop)
