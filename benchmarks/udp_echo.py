"""CPU per datagram round trip: RecvFrom and SendTo on both loops, and asyncio.

One process, one loop: a UDP echo server task and ``--clients`` client
tasks on 127.0.0.1, each client sending a 64-byte datagram and waiting for
its echo, over and over for ``--seconds``.  Reported: round trips per CPU
second of the process (clients included, which cost the same for every
contender but asyncio), median of ``--rounds``.  Contenders:

- ``compiled``: the compiled loop, whose RecvFrom and SendTo do recvfrom
  and sendto in C;
- ``compiled, Python I/O``: the compiled loop running the pure events'
  methods (``aioc.events.RecvFrom``), which go through the socket module;
- ``pure``: the pure loop;
- ``asyncio``: a ``DatagramProtocol`` echo server and clients.

Pin it to one CPU for steadier figures (``taskset -c 0``).

    python benchmarks/udp_echo.py [--seconds 2] [--rounds 3] [--clients 10]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from collections.abc import Callable, Generator
from typing import Any

from aioc import _loop_c, _loop_py, events

PAYLOAD = b"x" * 64


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def aioc_round_trips(module: Any, recv_from: Any, send_to: Any, seconds: float, clients: int) -> float:
    """Round trips per CPU second on ``module``'s loop with the given event classes."""
    server = udp_socket()
    sockets = [udp_socket() for _ in range(clients)]
    address = server.getsockname()
    done = [0]
    stop_at = [0.0]

    def echo() -> Generator[Any, Any, None]:
        while True:
            data, peer = yield recv_from(server, 2048)
            yield send_to(server, data, peer)

    def client(sock: socket.socket) -> Generator[Any, Any, None]:
        while time.monotonic() < stop_at[0]:
            yield send_to(sock, PAYLOAD, address)
            yield recv_from(sock, 2048)
            done[0] += 1

    def main() -> Generator[Any, Any, None]:
        server_task = yield module.Spawn(echo())
        stop_at[0] = time.monotonic() + seconds
        tasks = []
        for sock in sockets:
            tasks.append((yield module.Spawn(client(sock))))
        for task in tasks:
            yield module.Join(task)
        server_task.cancel()

    started = time.process_time()
    try:
        with module.EventLoop() as loop:
            loop.run_until_complete(main())
    finally:
        for sock in (server, *sockets):
            sock.close()
    return done[0] / (time.process_time() - started)


class EchoServer(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


class EchoClient(asyncio.DatagramProtocol):
    def __init__(self, stop_at: float, done: list[int]) -> None:
        self.stop_at, self.done = stop_at, done
        self.finished = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.sendto(PAYLOAD)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.done[0] += 1
        if time.monotonic() < self.stop_at:
            self.transport.sendto(PAYLOAD)
        elif not self.finished.done():
            self.finished.set_result(None)


def asyncio_round_trips(seconds: float, clients: int) -> float:
    done = [0]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, _ = await loop.create_datagram_endpoint(EchoServer, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        stop_at = time.monotonic() + seconds
        protocols = []
        for _ in range(clients):
            _, protocol = await loop.create_datagram_endpoint(lambda: EchoClient(stop_at, done), remote_addr=address)
            protocols.append(protocol)
        await asyncio.gather(*(protocol.finished for protocol in protocols))
        for protocol in protocols:
            protocol.transport.close()
        server.close()

    started = time.process_time()
    asyncio.run(main())
    return done[0] / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description="CPU per datagram round trip.")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10)
    args = parser.parse_args()
    contenders: dict[str, Callable[[], float]] = {
        "compiled": lambda: aioc_round_trips(_loop_c, _loop_c.RecvFrom, _loop_c.SendTo, args.seconds, args.clients),
        "compiled, Python I/O": lambda: aioc_round_trips(
            _loop_c, events.RecvFrom, events.SendTo, args.seconds, args.clients),
        "pure": lambda: aioc_round_trips(_loop_py, _loop_py.RecvFrom, _loop_py.SendTo, args.seconds, args.clients),
        "asyncio": lambda: asyncio_round_trips(args.seconds, args.clients),
    }
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):  # interleaved, so that a busy moment touches every contender
        for name, run in contenders.items():
            results[name].append(run())
    baseline = statistics.median(results["compiled"])
    print(f"{'contender':<22} {'round trips / CPU s':>20} {'x compiled':>11}")
    for name, figures in results.items():
        median = statistics.median(figures)
        print(f"{name:<22} {median:>20,.0f} {median / baseline:>11.2f}")


if __name__ == "__main__":
    main()
