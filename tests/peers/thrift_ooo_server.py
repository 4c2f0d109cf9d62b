#!/usr/bin/env python3
"""An out-of-order Thrift backend (strict binary, framed): answers pipelined calls in random order after
random delays, so a proxy multiplexing many clients on one connection must match replies by seqid.

  thrift_ooo_server.py --port P --name v1 [--max-delay-ms 20]

Understands every call whose args struct has a string field 1 (e.g. sayHello(name), echo(msg)) and
replies "hello <arg> from <name>" for sayHello, <arg> otherwise; one-way calls get no reply.
Prints "READY" once listening. Counts connections and prints them on each accept.
"""

import argparse
import asyncio
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from thrift_common import ONEWAY, REPLY, T_STOP, T_STRING, parse_binary_message  # noqa: E402


def reply(name, seqid, text):
    body = struct.pack(">I", 0x80010000 | REPLY) + struct.pack(">i", len(name)) + name.encode()
    body += struct.pack(">i", seqid) + struct.pack(">bh", T_STRING, 0)
    data = text.encode()
    body += struct.pack(">i", len(data)) + data + bytes([T_STOP])
    return struct.pack(">i", len(body)) + body


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="v1")
    ap.add_argument("--max-delay-ms", type=int, default=20)
    a = ap.parse_args()
    connections = 0

    async def handle(reader, writer):
        nonlocal connections
        connections += 1
        print("connection %d" % connections, flush=True)
        lock = asyncio.Lock()
        tasks = set()

        async def answer(name, seqid, text):
            await asyncio.sleep(random.uniform(0, a.max_delay_ms / 1000.0))
            async with lock:
                writer.write(reply(name, seqid, text))
                await writer.drain()

        try:
            while True:
                (length,) = struct.unpack(">i", await reader.readexactly(4))
                name, mtype, seqid, fields = parse_binary_message(await reader.readexactly(length))
                if mtype == ONEWAY:
                    continue
                arg = fields.get(1, "")
                text = "hello %s from %s" % (arg, a.name) if name == "sayHello" else arg
                t = asyncio.ensure_future(answer(name, seqid, text))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            for t in list(tasks):
                t.cancel()
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", a.port)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
