#!/usr/bin/env python3
"""What TLS costs on aioc's loops, next to asyncio's own TLS, in one process.

``python benchmarks/tls.py [--mib 64] [--requests 20000] [--connections 500] [--rounds 3]``
runs, for aioc's compiled loop, aioc's pure loop (both with the streams
``aioc.Stream`` gives) and asyncio, a server and a client in the same
process over loopback (one CPU does both ends, so the
figures compare loops, not machines):

- bulk: the client sends ``--mib`` MiB through TLS, the server reads it all
  (``Stream.read`` / ``StreamReader.read``), MiB/s;
- ping-pong: ``--requests`` round trips of a 64-byte line over one TLS
  connection (``readline`` then ``write``), requests/s;
- connect: ``--connections`` connections one after another, each a TLS
  handshake, one round trip and a close, connections/s;
- the same three over plain TCP, to show what TLS adds.

Rates are per second of the process's CPU time (user and system, both
ends), which a busy neighbour on a shared machine bends far less than wall
time.  Medians over ``--rounds``.  Certificates come from ``trustme`` (the ``test``
extra).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import time
from typing import Any, Callable

import trustme

import aioc
from aioc import _loop_py

try:
    from aioc import _loop_c
except ImportError:  # the compiled loop is not built
    _loop_c = None

LINE = b"x" * 63 + b"\n"
CHUNK = b"y" * 65536


def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    return server, client


# -- aioc -------------------------------------------------------------------------


def aioc_round(module: Any, work: str, count: int, server_ctx: Any, client_ctx: Any) -> float:
    done: dict[str, float] = {}

    def sink(stream: aioc.Stream) -> Any:
        while (yield from stream.read()):
            pass

    def echo(stream: aioc.Stream) -> Any:
        while line := (yield from stream.readline()):
            yield from stream.write(line)

    def main() -> Any:
        listener = aioc.tcp_listener("127.0.0.1", 0)
        port = listener.getsockname()[1]
        server = yield aioc.Spawn(aioc.serve_tcp(sink if work == "bulk" else echo, sock=listener, ssl=server_ctx))
        if work == "connect":
            start = time.process_time()
            for _ in range(count):
                stream = yield from aioc.open_tcp("127.0.0.1", port, ssl=client_ctx)
                yield from stream.write(LINE)
                yield from stream.readline()
                yield from stream.close()
            done["seconds"] = time.process_time() - start
            server.cancel()
            return
        stream = yield from aioc.open_tcp("127.0.0.1", port, ssl=client_ctx)
        start = time.process_time()
        if work == "bulk":
            for _ in range(count * 16):  # count MiB in 64 KiB writes
                yield from stream.write(CHUNK)
        else:
            for _ in range(count):
                yield from stream.write(LINE)
                yield from stream.readline()
        done["seconds"] = time.process_time() - start
        yield from stream.close()
        server.cancel()

    loop = module.EventLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return done["seconds"]


# -- asyncio -----------------------------------------------------------------------


def asyncio_round(work: str, count: int, server_ctx: Any, client_ctx: Any) -> float:
    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()

    async def main() -> float:
        server = await asyncio.start_server(sink if work == "bulk" else echo, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        if work == "connect":
            start = time.process_time()
            for _ in range(count):
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
                writer.write(LINE)
                await reader.readline()
                writer.close()
                await writer.wait_closed()
            seconds = time.process_time() - start
            await asyncio.sleep(0.05)
            server.close()
            await server.wait_closed()
            return seconds
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        start = time.process_time()
        if work == "bulk":
            for _ in range(count * 16):
                writer.write(CHUNK)
                await writer.drain()
        else:
            for _ in range(count):
                writer.write(LINE)
                await writer.drain()
                await reader.readline()
        seconds = time.process_time() - start
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)  # the server's handler sees the end and returns
        server.close()
        await server.wait_closed()
        return seconds

    return asyncio.run(main())


def median_rate(run: Callable[[], float], count: int, rounds: int) -> float:
    return statistics.median(count / run() for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server_ctx, client_ctx = contexts()
    contenders: list[tuple[str, Callable[[str, int, Any, Any], float]]] = []
    if _loop_c is not None:
        contenders.append(("aioc, compiled", lambda *a: aioc_round(_loop_c, *a)))
    contenders.append(("aioc, pure loop", lambda *a: aioc_round(_loop_py, *a)))
    contenders.append(("asyncio", asyncio_round))
    print(f"{'':16} {'TLS MiB/s':>10} {'TCP MiB/s':>10} {'TLS req/s':>10} {'TCP req/s':>10}"
          f" {'TLS conn/s':>10} {'TCP conn/s':>10}")
    for name, run in contenders:
        row = []
        for work, count in (("bulk", args.mib), ("pingpong", args.requests), ("connect", args.connections)):
            for server, client in ((server_ctx, client_ctx), (None, None)):
                row.append(median_rate(lambda: run(work, count, server, client), count, args.rounds))
        print(f"{name:16}" + "".join(f" {rate:10,.0f}" for rate in row))


if __name__ == "__main__":
    main()
