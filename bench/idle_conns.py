#!/usr/bin/env python3
"""Holds COUNT idle HTTP/1.1 keep-alive connections open to a proxy.

Each connection comes from one of several 127.0.0.x source addresses
(so per-address limits and the ephemeral port range are not the limit),
sends one request with the bearer token, reads the whole response, and
then stays open and idle. When all are done it prints "ready N" (N:
connections that got a 200) and holds them for at most HOLD seconds or
until killed.

usage: idle_conns.py PORT COUNT TOKEN_FILE [HOLD]
"""

import asyncio
import sys

PATH = "/api/configurator/apis"


async def one(port: int, src: str, request: bytes, sem: asyncio.Semaphore, held: list) -> bool:
    async with sem:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0))
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            held.append(writer)
            return status == b"200"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError):
            return False


async def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    token = open(sys.argv[3]).read().strip()
    hold = float(sys.argv[4]) if len(sys.argv) > 4 else 120.0
    request = (
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nUser-Agent: idle-conns\r\n\r\n"
    ).encode()
    sources = [f"127.0.0.{2 + i}" for i in range(max(1, (count + 2499) // 2500))]
    sem = asyncio.Semaphore(200)
    held: list = []
    results = await asyncio.gather(
        *(one(port, sources[i % len(sources)], request, sem, held) for i in range(count))
    )
    print(f"ready {sum(results)} of {count} open {len(held)}", flush=True)
    await asyncio.sleep(hold)
    for w in held:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
