"""The typed client that ``mypy --strict`` checks (tests/typed/client.py) also runs."""

from __future__ import annotations

import importlib.util
import pathlib

CLIENT = pathlib.Path(__file__).parent / "typed" / "client.py"


def test_typed_client_echoes(backend):
    spec = importlib.util.spec_from_file_location("aioc_typed_client", CLIENT)
    assert spec is not None and spec.loader is not None
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    assert client.main(["client.py", backend]) == 0
