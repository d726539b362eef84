"""A throwaway self-signed certificate for the TLS workload, made at run time with the ``openssl`` CLI.

The key is ECDSA P-256 and the certificate names ``127.0.0.1`` (as an IP
subject alternative name), the only address the benchmark talks to.  Every
TLS server uses the same certificate, and the load generator trusts exactly
it.  Handshakes happen during the warm-up, so the key type does not weigh on
the measured requests; the record cipher is whatever TLS 1.3 negotiates by
default, the same for every server.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .loadgen import HOST


def make_certificate(directory: str) -> tuple[tuple[str, str] | None, str | None]:
    """``((certificate, key), None)`` written into ``directory``, or ``(None, reason)``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None, "the TLS workload needs the openssl command to make its certificate; it is not on PATH"
    cert, key = os.path.join(directory, "tls-cert.pem"), os.path.join(directory, "tls-key.pem")
    argv = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={HOST}",
            "-addext", f"subjectAltName=IP:{HOST}"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"openssl req failed to run: {exc}"
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        return None, f"openssl req failed: {lines[-1] if lines else 'exit ' + str(out.returncode)}"
    return (cert, key), None
