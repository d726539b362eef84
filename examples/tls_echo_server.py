"""A TLS echo server: ``python examples/tls_echo_server.py [--port PORT] [--cert CERT --key KEY]``.

Each line a client sends comes back to it; the line ``quit`` closes the
connection.  Without ``--cert`` and ``--key`` the server makes a self-signed
certificate for ``localhost`` and 127.0.0.1 at start, with the ``openssl``
command, in a temporary directory it removes on exit.  Try it with::

    openssl s_client -connect 127.0.0.1:PORT -quiet

``--port 0`` (the default) picks a free port; the server prints ``listening
on 127.0.0.1:PORT`` once it accepts connections, and exits with status 0 on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import ssl
import subprocess
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

import aioc

MAX_LINE = 65536
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and its key, made by the openssl command: (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def echo(stream: aioc.Stream) -> Generator[Any, Any, None]:
    """Send every line back until the client says ``quit`` or leaves."""
    try:
        while True:
            line = yield from stream.readline(limit=MAX_LINE)
            if not line or line.strip() == b"quit":
                return
            yield from stream.write(line)
    except (aioc.IncompleteReadError, aioc.LimitOverrunError, ConnectionError):
        pass  # a truncated or over-long line, or a reset


def main(port: int, context: ssl.SSLContext) -> Generator[Any, Any, None]:
    yield from aioc.watch_signals(*STOP_SIGNALS)
    listener = aioc.tcp_listener("127.0.0.1", port)
    server: aioc.Task = yield aioc.Spawn(aioc.serve_tcp(echo, sock=listener, ssl=context))
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    yield from aioc.wait_signal(*STOP_SIGNALS)
    server.cancel()  # stops accepting, cancels the handlers and waits for them
    try:
        yield aioc.Join(server)
    except aioc.Cancelled:
        if not server.done():
            raise  # this task itself was cancelled


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A TLS echo server.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert", type=Path, help="certificate chain (PEM); self-signed if not given")
    parser.add_argument("--key", type=Path, help="private key (PEM)")
    args = parser.parse_args()
    if (args.cert is None) != (args.key is None):
        parser.error("give both --cert and --key, or neither")
    with tempfile.TemporaryDirectory(prefix="aioc-tls-echo-") as scratch:
        cert, key = (args.cert, args.key) if args.cert else self_signed(Path(scratch))
        aioc.run(main(args.port, server_context(cert, key)))
