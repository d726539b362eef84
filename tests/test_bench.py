"""The benchmark suite's own checks: counting, option errors, summaries.  No timing is asserted."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from aioc.bench import cli, loadgen, protocol, report, runner, scheduler, summary, wrk
from aioc.bench import contenders as contenders_mod
from aioc.bench import workloads as workloads_mod
from aioc.bench.stats import median, percentile, ratio, spread

# -- a server that serves an exact number of replies ------------------------------


class CountingServer:
    """Serves exactly ``limit`` replies on 127.0.0.1, then refuses to serve more.

    Keep-alive mode: after the last reply, a connection that sends another
    request is closed, and so is every new connection.  ``close_listener``
    closes the listening socket too, so that reconnects are refused.
    Close mode (``close=True``): one reply per connection, then close.
    """

    def __init__(self, limit: int, reply: bytes, close: bool = False, close_listener: bool = True) -> None:
        self.limit = limit
        self.reply = reply
        self.close = close
        self.close_listener = close_listener
        self.served = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.stopped = False
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _take(self) -> bool:
        with self.lock:
            if self.served >= self.limit:
                return False
            self.served += 1
            return True

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _handle(self, conn: socket.socket) -> None:
        pending = b""
        with conn:
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    count, pending = protocol.split_requests(pending, data)
                    for _ in range(count):
                        if not self._take():
                            self._exhausted()
                            return
                        conn.sendall(self.reply)
                        if self.close:
                            return
            except OSError:
                return

    def _exhausted(self) -> None:
        if self.close_listener and not self.stopped:
            self._close_listener()

    def _close_listener(self) -> None:
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.sock.close()

    def stop(self) -> None:
        self._close_listener()
        for thread in self.threads:
            thread.join(timeout=5)


@pytest.fixture
def server_factory():
    servers = []

    def make(*args, **kwargs) -> CountingServer:
        server = CountingServer(*args, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


# -- the load generator counts ------------------------------------------------------


def test_keepalive_counts_exactly_the_replies_served(server_factory):
    server = server_factory(25, protocol.reply_for("ka64"))
    result = loadgen.run_load(server.port, "ka64", connections=1, warmup=0, window=30, max_errors=3)
    assert result["completed"] == 25
    assert result["errors"] == 3  # the closed connection, then two refused reconnects
    assert result["stop_reason"] == "max_errors"
    assert result["samples"] == 25  # one latency sample per completed request
    assert sum(result["error_kinds"].values()) == 3


def test_keepalive_counts_across_connections(server_factory):
    server = server_factory(60, protocol.reply_for("ka1024"), close_listener=False)
    result = loadgen.run_load(server.port, "ka1024", connections=4, warmup=0, window=30, max_errors=40)
    assert result["completed"] == 60
    assert result["errors"] == 40
    assert result["samples"] == 60


def test_close_mode_counts_connections(server_factory):
    server = server_factory(15, protocol.reply_for("close"), close=True)
    result = loadgen.run_load(server.port, "close", connections=1, warmup=0, window=30, max_errors=2)
    assert result["completed"] == 15
    assert result["errors"] == 2
    assert result["mode"] == "close"


def test_a_wrong_reply_is_an_error_not_a_completion(server_factory):
    bad = b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"
    server = server_factory(100, bad, close_listener=False)
    result = loadgen.run_load(server.port, "ka64", connections=2, warmup=0, window=30, max_errors=5)
    assert result["completed"] == 0
    assert result["errors"] == 5
    assert result["error_kinds"] == {"BadReply": 5}


def test_a_reply_too_long_is_an_error(server_factory):
    server = server_factory(100, protocol.reply_for("ka64") + b"extra", close_listener=False)
    result = loadgen.run_load(server.port, "ka64", connections=1, warmup=0, window=30, max_errors=3)
    assert result["completed"] == 0
    assert result["errors"] == 3


def test_max_requests_stops_the_run(server_factory):
    server = server_factory(10_000, protocol.reply_for("ka64"), close_listener=False)
    result = loadgen.run_load(server.port, "ka64", connections=1, warmup=0, window=30, max_requests=40)
    assert result["completed"] == 40
    assert result["errors"] == 0
    assert result["stop_reason"] == "max_requests"
    assert result["duration_s"] > 0
    assert result["rate"] > 0


def test_nothing_listening_counts_errors_and_stops():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    result = loadgen.run_load(port, "ka64", connections=3, warmup=0, window=30, max_errors=6)
    assert result["completed"] == 0
    assert result["errors"] == 6
    assert result["error_kinds"] == {"ConnectionRefusedError": 6}


def test_hold_connections_keeps_them_open(server_factory):
    server = server_factory(100, protocol.reply_for("ka64"), close_listener=False)
    held, errors = loadgen.hold_connections(server.port, 7, concurrency=3)
    try:
        assert errors == 0
        assert len(held) == 7
        assert server.served == 7
        assert all(sock.fileno() >= 0 for sock in held)
    finally:
        for sock in held:
            sock.close()


def test_serve_commands_answers_one_line_per_command(server_factory):
    import io

    server = server_factory(100, protocol.reply_for("ka64"), close_listener=False)
    commands = [
        {"op": "ping"},
        {"op": "hold", "port": server.port, "count": 3},
        {"op": "release"},
        {"op": "run", "port": server.port, "mode": "ka64", "connections": 1, "warmup": 0, "window": 30,
         "max_requests": 5},
        {"op": "bogus"},
        {"op": "exit"},
    ]
    out = io.StringIO()
    loadgen.serve_commands(io.StringIO("".join(json.dumps(c) + "\n" for c in commands)), out)
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert answers[0]["pong"] is True
    assert answers[1] == {"held": 3, "errors": 0}
    assert answers[2] == {"released": 3}
    assert answers[3]["completed"] == 5
    assert "unknown op" in answers[4]["error"]
    assert len(answers) == 5


# -- the servers ------------------------------------------------------------------------


def _start(argv: list[str], env: dict | None = None) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY":
        _stop(proc)
        raise AssertionError(f"server did not start: {line}")
    return proc, line


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.communicate()  # reaps it and closes its pipes


def test_seed_style_aioc_server_serves_every_mode():
    env = dict(os.environ, AIOC_NO_EXTENSIONS="1")
    env.pop("AIOC_REQUIRE_EXTENSIONS", None)
    proc, line = _start([sys.executable, "-m", "aioc.bench.servers", "aioc", "--lifetime", "60"], env)
    try:
        assert line[2] == "aioc-pure-epoll"
        ports = dict(zip(protocol.MODES, map(int, line[3:])))
        for mode in protocol.MODES:
            result = loadgen.run_load(ports[mode], mode, connections=2, warmup=0, window=30, max_requests=20,
                                      server_pid=proc.pid)
            assert (result["completed"], result["errors"]) == (20, 0), mode
            assert result["server_cpu_s"] >= 0
    finally:
        _stop(proc)


def _serves_every_mode(ports: dict[str, int], pid: int | None = None, connections: int = 3) -> None:
    for mode in protocol.MODES:
        result = loadgen.run_load(ports[mode], mode, connections=connections, warmup=0, window=30,
                                  max_requests=30, server_pid=pid)
        assert (result["completed"], result["errors"]) == (30, 0), mode


@pytest.mark.parametrize("kind", ["curio", "trio", "asyncio-streams"])
def test_other_loops_servers_serve_every_mode(kind):
    if kind != "asyncio-streams":
        pytest.importorskip(kind)
    proc, line = _start([sys.executable, "-m", "aioc.bench.servers", kind, "--lifetime", "60"])
    try:
        assert line[2].split("-")[0] == kind.split("-")[0]
        _serves_every_mode(dict(zip(protocol.MODES, map(int, line[3:]))), proc.pid)
    finally:
        _stop(proc)


def test_aioc_streams_server_serves_every_mode():
    missing = contenders_mod.aioc_missing(("serve_tcp", "Stream"))
    if missing:
        pytest.skip(missing)
    proc, line = _start([sys.executable, "-m", "aioc.bench.servers", "aioc-streams", "--lifetime", "60"])
    try:
        _serves_every_mode(dict(zip(protocol.MODES, map(int, line[3:]))), proc.pid)
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    from aioc.bench import tlscert

    files, reason = tlscert.make_certificate(str(tmp_path_factory.mktemp("tls")))
    if files is None:
        pytest.skip(reason)
    return files


def _tls_server_kinds() -> list[list[str]]:
    kinds = [["asyncio-streams"]]
    try:
        import uvloop  # noqa: F401

        kinds.append(["asyncio-streams", "--uvloop"])
    except ImportError:
        pass
    if contenders_mod.aioc_missing(("serve_tcp", "Stream", "tls")) is None:
        kinds.append(["aioc-streams"])
    return kinds


@pytest.mark.parametrize("kind", _tls_server_kinds(), ids=" ".join)
def test_tls_servers_and_client_count_exactly(kind, tls_files):
    from aioc.bench import tlsload

    cert, key = tls_files
    proc, line = _start([sys.executable, "-m", "aioc.bench.servers", *kind, "--tls", cert, key, "--lifetime", "60"])
    try:
        ports = dict(zip(protocol.MODES, map(int, line[3:])))
        for mode in ("ka64", "ka16384"):
            result = tlsload.run_tls_load(ports[mode], mode, tls_cafile=cert, connections=3, warmup=0, window=30,
                                          max_requests=25, server_pid=proc.pid)
            assert (result["completed"], result["errors"]) == (25, 0), mode
            assert result["stop_reason"] == "max_requests"
            assert result["server_cpu_s"] >= 0
        # Plaintext against a TLS port is refused, not counted.
        plain = loadgen.run_load(ports["ka64"], "ka64", connections=1, warmup=0, window=30, max_errors=2)
        assert plain["completed"] == 0 and plain["errors"] == 2
    finally:
        _stop(proc)


def test_tls_client_against_a_plaintext_server_counts_errors(tls_files):
    from aioc.bench import tlsload

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def answer_in_plaintext():  # what an HTTP server says to a ClientHello
        try:
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            return  # the listener was closed

    thread = threading.Thread(target=answer_in_plaintext, daemon=True)
    thread.start()
    try:
        result = tlsload.run_tls_load(listener.getsockname()[1], "ka64", tls_cafile=tls_files[0], connections=2,
                                      warmup=0, window=30, max_errors=4)
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        thread.join(timeout=15)
    assert result["completed"] == 0
    assert result["errors"] >= 4 and result["stop_reason"] == "max_errors"
    assert set(result["error_kinds"]) <= {"SSLError", "ConnectionResetError", "SSLEOFError"}


def test_tls_only_for_the_streams_servers(capsys):
    from aioc.bench import servers

    with pytest.raises(SystemExit):
        servers.main(["curio", "--tls", "a.pem", "b.pem"])
    assert "only the streams servers speak TLS" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_io_uring_server_serves_or_says_why_not(tmp_path):
    from aioc.bench import cserver

    exe, reason = cserver.build(str(tmp_path), source="c_io_uring_server.c")
    assert reason is None and exe
    proc = subprocess.Popen([exe, "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    if not line:
        err = proc.communicate()[1]
        assert proc.returncode == 3 and "io_uring unavailable" in err
        pytest.skip(err.strip())
    try:
        assert line[2] == "c-io_uring"
        ports = dict(zip(protocol.MODES, map(int, line[3:])))
        _serves_every_mode(ports, connections=5)
        # Idle connections hold a multishot recv each; the active ones still get served.
        held, errors = loadgen.hold_connections(ports["ka64"], 40, concurrency=8)
        try:
            assert (len(held), errors) == (40, 0)
            _serves_every_mode(ports)
        finally:
            for sock in held:
                sock.close()
        # A request that never ends is cut off at the protocol's limit: a close, or a reset
        # when the server closes with bytes still unread.
        with socket.create_connection(("127.0.0.1", ports["ka64"]), timeout=10) as sock:
            sock.sendall(b"x" * (protocol.MAX_REQUEST + 4096))
            try:
                assert sock.recv(10) == b""
            except ConnectionResetError:
                pass
    finally:
        _stop(proc)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_server_builds_and_serves(tmp_path):
    from aioc.bench import cserver

    exe, reason = cserver.build(str(tmp_path))
    assert reason is None and exe
    proc, line = _start([exe, "60"])
    try:
        assert line[2] == "c-epoll"
        ports = dict(zip(protocol.MODES, map(int, line[3:])))
        for mode in protocol.MODES:
            result = loadgen.run_load(ports[mode], mode, connections=3, warmup=0, window=30, max_requests=30)
            assert (result["completed"], result["errors"]) == (30, 0), mode
    finally:
        _stop(proc)


def test_c_server_reports_a_missing_compiler(tmp_path):
    from aioc.bench import cserver

    exe, reason = cserver.build(str(tmp_path), compiler="no-such-compiler-xyz")
    assert exe is None
    assert "no C compiler" in reason


# -- the scheduler workloads ----------------------------------------------------------------


@pytest.mark.parametrize("workload,sizes", [
    ("switch", {"tasks": 5, "count": 20}),
    ("spawn", {"count": 50}),
    ("timers", {"count": 30, "max_delay": 0.002}),
    ("queue", {"count": 300, "maxsize": 7}),
    ("lock", {"count": 100}),
])
@pytest.mark.parametrize("loop", ["aioc", "asyncio", "curio", "trio"])
def test_scheduler_workloads_complete(loop, workload, sizes):
    if loop in ("curio", "trio"):
        pytest.importorskip(loop)
    result = scheduler.run(loop, workload, **sizes)
    assert result["ops"] == result["expected"]
    assert result["errors"] == 0
    if workload == "timers":
        assert result["late_p50_ms"] is not None


# -- the protocol -------------------------------------------------------------------------------


def test_split_requests_keeps_partial_requests():
    req = protocol.REQUEST
    assert protocol.split_requests(b"", req) == (1, b"")
    assert protocol.split_requests(b"", req * 3) == (3, b"")
    assert protocol.split_requests(b"", req[:10]) == (0, req[:10])
    assert protocol.split_requests(req[:10], req[10:] + req[:5]) == (1, req[:5])
    # A terminator split across two reads.
    assert protocol.split_requests(req[:-2], req[-2:]) == (1, b"")


def test_replies_have_the_announced_length():
    for mode in protocol.MODES:
        reply = protocol.reply_for(mode)
        head, body = reply.split(b"\r\n\r\n", 1)
        assert f"Content-Length: {len(body)}".encode() in head
    assert len(protocol.reply_for("ka16384").split(b"\r\n\r\n", 1)[1]) == 16384
    with pytest.raises(ValueError):
        protocol.reply_for("ka7")


# -- options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv,message", [
    (["--only", "bogus"], "unknown workload 'bogus'"),
    (["--contenders", "nope"], "unknown contender 'nope'"),
    (["--client", "curl"], "invalid choice"),
    (["--rounds", "0"], "must be at least 1"),
    (["--window", "-1"], "must be positive"),
    (["--window", "abc"], "not a number"),
    (["--idle", "x"], "comma-separated integers"),
    (["--plot", "out.jpg"], "expected a .png"),
    (["--json", "/no/such/dir/out.json"], "does not exist"),
    (["--bogus-option"], "unrecognized arguments"),
])
def test_bad_options_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_wrk_client_without_wrk_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(wrk, "available", lambda: None)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--client", "wrk"])
    assert exc.value.code == 2
    assert "wrk is not on PATH" in capsys.readouterr().err


def test_options_select_workloads_and_contenders():
    args = cli.parse_args(["--only", "keepalive,switch", "--contenders", "aioc,c"])
    assert [w.id for w in args.workloads] == ["ka64", "ka1k", "ka16k", "switch"]
    assert [c.name for c in args.selected] == ["aioc-compiled", "aioc-io_uring", "aioc-pure-epoll", "aioc-pure-select",
                                               "aioc-streams", "aioc-tls", "c-epoll", "c-io_uring"]
    both = cli.parse_args(["--only", "streams,tls,net", "--contenders", "curio,trio"])
    assert [c.name for c in both.selected] == ["curio", "trio"]
    assert {"streams", "tls", "conn"} <= {w.id for w in both.workloads}
    quick = cli.parse_args(["--quick"])
    assert quick.rounds == 1 and quick.idle == cli.QUICK_IDLE_LEVELS
    full = cli.parse_args([])
    assert full.rounds == cli.DEFAULT["rounds"] and full.window == cli.DEFAULT["window"]
    idle = cli.parse_args(["--only", "idle", "--idle", "0,500,2000"])
    assert [w.id for w in idle.workloads] == ["ka64", "idle500", "idle2000"]


def test_list_prints_everything(capsys):
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in contenders_mod.NAMES:
        assert name in out
    assert "idle10000" in out


def test_select_backend_is_not_applicable_past_its_fd_limit():
    cfg = runner.Config(connections=50)
    every = workloads_mod.build()
    contenders = {c.name: c for c in contenders_mod.all_contenders()}
    r = runner.Runner(cfg, every, list(contenders.values()))
    try:
        by_id = {w.id: w for w in every}
        assert r.fd_problem(by_id["ka64"], contenders["aioc-pure-select"]) is None
        assert "below 1024" in r.fd_problem(by_id["idle1000"], contenders["aioc-pure-select"])
        assert r.fd_problem(by_id["idle1000"], contenders["aioc-pure-epoll"]) is None
    finally:
        r.tmp.cleanup()


# -- statistics, summary, JSON, report --------------------------------------------------------------


def test_stats_helpers():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert median([None, 5, None]) == 5
    assert median([]) is None
    assert spread([3, None, 1, 2]) == (1, 3)
    assert ratio(1, 4) == 0.25 and ratio(1, 0) is None and ratio(None, 2) is None
    values = sorted(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


def _record(rnd, wid, name, rate, cpu, status="ok", **extra):
    rec = {"round": rnd, "workload": wid, "contender": name, "status": status, "rate": rate,
           "cpu_us_per_op": cpu, "completed": int(rate) if rate else 0, "errors": extra.pop("errors", 0)}
    rec.update(extra)
    return rec


def test_summary_medians_spreads_and_ratios():
    every = {c.name: c for c in contenders_mod.all_contenders()}
    chosen = [every[n] for n in ("aioc-compiled", "aioc-pure-epoll", "uvloop-protocol", "c-epoll")]
    ka64 = next(w for w in workloads_mod.build() if w.id == "ka64")
    results = [
        # aioc compiled was skipped: the pure loop is the baseline.
        {"round": 0, "workload": "ka64", "contender": "aioc-compiled", "status": "skipped", "reason": "not built"},
        _record(1, "ka64", "aioc-pure-epoll", 100, 40.0),
        _record(2, "ka64", "aioc-pure-epoll", 300, 20.0),
        _record(3, "ka64", "aioc-pure-epoll", 200, 30.0, errors=2),
        _record(1, "ka64", "uvloop-protocol", 500, 10.0),
        _record(2, "ka64", "uvloop-protocol", 400, 12.0),
        _record(3, "ka64", "uvloop-protocol", None, None, status="error", reason="server exited", errors=1),
        _record(1, "ka64", "c-epoll", 800, 5.0),
        _record(2, "ka64", "c-epoll", 1000, 6.0),
        _record(3, "ka64", "c-epoll", 900, 4.0),
    ]
    doc = summary.summarize(results, [ka64], chosen)
    entry = doc["ka64"]
    cells = entry["cells"]
    assert entry["baseline"] == "aioc-pure-epoll"
    assert cells["aioc-compiled"] == {"rounds": 0, "status": "skipped", "reason": "not built"}
    pure = cells["aioc-pure-epoll"]
    assert pure["rate"] == 200 and (pure["rate_min"], pure["rate_max"]) == (100, 300)
    assert pure["cpu_us_per_op"] == 30.0
    assert pure["errors"] == 2 and pure["rounds"] == 3
    assert pure["vs_baseline"] == 1.0
    assert pure["vs_c"] == pytest.approx(200 / 900)
    uv = cells["uvloop-protocol"]
    assert uv["rate"] == 450  # the median of the two ok rounds
    assert uv["rounds"] == 2 and uv["failed_rounds"] == 1 and uv["errors"] == 1
    assert uv["vs_baseline"] == pytest.approx(450 / 200)
    assert uv["cpu_vs_baseline"] == pytest.approx(11.0 / 30.0)
    assert cells["c-epoll"]["vs_c"] == 1.0
    assert cells["c-epoll"]["rate"] == 900


def test_compiled_is_the_baseline_when_present():
    every = {c.name: c for c in contenders_mod.all_contenders()}
    chosen = [every["aioc-compiled"], every["aioc-pure-epoll"], every["asyncio"]]
    switch = next(w for w in workloads_mod.build() if w.id == "switch")
    results = [
        _record(1, "switch", "aioc-compiled", 1000, 1.0),
        _record(1, "switch", "aioc-pure-epoll", 250, 4.0),
        _record(1, "switch", "asyncio", 100, 10.0),
    ]
    entry = summary.summarize(results, [switch], chosen)["switch"]
    assert entry["baseline"] == "aioc-compiled"
    assert entry["cells"]["asyncio"]["vs_baseline"] == 0.1
    assert "vs_c" not in entry["cells"]["asyncio"]  # no C limit for in-process workloads


def test_targets_are_ratios_of_cpu_per_request():
    every = {c.name: c for c in contenders_mod.all_contenders()}
    chosen = [every[n] for n in ("aioc-compiled", "aioc-streams", "uvloop-streams", "aioc-tls", "uvloop-tls")]
    wl = [w for w in workloads_mod.build() if w.id in ("streams", "tls")]
    results = [
        _record(1, "streams", "aioc-compiled", 900, 5.0, user_us_per_op=2.0),
        _record(1, "streams", "aioc-streams", 800, 6.0, user_us_per_op=2.5),
        _record(1, "streams", "uvloop-streams", 700, 9.0, user_us_per_op=4.0),
        # A busy second round: both sides slower, the paired ratio holds.
        _record(2, "streams", "aioc-compiled", 450, 10.0, user_us_per_op=4.0),
        _record(2, "streams", "aioc-streams", 400, 12.0, user_us_per_op=6.0),
        _record(2, "streams", "uvloop-streams", 350, 18.0, user_us_per_op=8.0),
        # A round where the reference failed is left out of the pairs.
        _record(3, "streams", "aioc-streams", 800, 6.0, user_us_per_op=1.0),
        _record(3, "streams", "uvloop-streams", None, None, status="error", reason="boom"),
        _record(3, "streams", "aioc-compiled", None, None, status="error", reason="boom"),
        _record(1, "tls", "uvloop-tls", 300, 30.0),
        {"round": 0, "workload": "tls", "contender": "aioc-tls", "status": "skipped", "reason": "no TLS"},
    ]
    summ = summary.summarize(results, wl, chosen)
    assert summ["streams"]["baseline"] == "aioc-compiled"
    checked = summary.targets(results, summ)
    assert [(t["reference"], t["ratio"], t["rounds"], t["met"]) for t in checked] == [
        ("uvloop-streams", pytest.approx((2.5 / 4.0 + 6.0 / 8.0) / 2), 2, False),
        ("aioc-compiled", pytest.approx((2.5 / 2.0 + 6.0 / 4.0) / 2), 2, True),
        ("uvloop-tls", None, 0, None)]
    assert (checked[0]["ratio_min"], checked[0]["ratio_max"]) == (2.5 / 4.0, 6.0 / 8.0)
    assert "aioc-tls skipped: no TLS" in checked[2]["reason"]
    lines = report.targets_table(checked)
    assert any("= 0.69 (0.62-0.75, 2 rounds)  target <= 0.5: NOT met" in line for line in lines)
    assert any("= 1.38 (1.25-1.50, 2 rounds)  target <= 1.5: met" in line for line in lines)
    assert any("not measured (aioc-tls skipped: no TLS)" in line for line in lines)
    assert report.targets_table([]) == []


def test_availability_reasons(monkeypatch):
    every = contenders_mod.all_contenders()
    real = contenders_mod.package_status
    monkeypatch.setattr(contenders_mod, "package_status",
                        lambda name: (None, f"{name} is not installed") if name == "trio" else real(name))
    c_servers = {"c-epoll": ("/bin/true", None), "c-io_uring": (None, "cc -O2 c_io_uring_server.c failed: old")}
    contenders_mod.check_availability(every, c_servers, tls_reason="no openssl")
    by_name = {c.name: c for c in every}
    assert by_name["trio"].reason == "trio is not installed" and not by_name["trio"].available
    assert by_name["c-io_uring"].reason.endswith("failed: old")
    assert by_name["c-epoll"].available
    assert not by_name["asyncio-tls"].available and by_name["asyncio-tls"].reason == "no openssl"
    assert by_name["asyncio-streams"].available
    tls_argv = contenders_mod.server_argv(by_name["uvloop-streams"], c_servers, 60)
    assert "--tls" not in tls_argv
    argv = contenders_mod.server_argv(by_name["asyncio-tls"], c_servers, 60, ("c.pem", "k.pem"))
    assert argv[argv.index("--tls"):argv.index("--tls") + 3] == ["--tls", "c.pem", "k.pem"]


def test_a_server_that_cannot_start_says_why(tmp_path):
    """What the io_uring server does where the kernel refuses a ring: its reason reaches the row."""
    c = contenders_mod.Contender("c-io_uring", "C io_uring", "c", ["<c>"], c_source="c_io_uring_server.c")
    refuse = "echo 'io_uring unavailable: io_uring_setup: Operation not permitted' >&2; exit 3"
    server = runner.ServerProcess(c, ["sh", "-c", refuse], None, str(tmp_path))
    server.launch()
    with pytest.raises(RuntimeError, match="io_uring unavailable: io_uring_setup: Operation not permitted"):
        server.wait_ready()


def test_tls_is_not_applicable_under_wrk():
    every = {c.name: c for c in contenders_mod.all_contenders()}
    wl = {w.id: w for w in workloads_mod.build()}
    r = runner.Runner(runner.Config(client="wrk"), list(wl.values()), list(every.values()))
    try:
        assert "plaintext only" in r.fd_problem(wl["tls"], every["uvloop-tls"])
        assert r.fd_problem(wl["streams"], every["uvloop-streams"]) is None
        assert [c.name for c in r.net_contenders(wl["streams"])] == [
            "aioc-compiled", "aioc-streams", "asyncio-streams", "uvloop-streams"]
    finally:
        r.tmp.cleanup()


def test_quick_run_of_the_streams_and_tls_workloads(capsys):
    """End to end at tiny scale: the servers start, every row is measured or says why not."""
    code = cli.main(["--only", "streams,tls,lock", "--rounds", "1", "--window", "0.1", "--warmup", "0",
                     "--contenders", "aioc-compiled,aioc-streams,aioc-tls,asyncio-streams,asyncio-tls,trio",
                     "--sched-scale", "0.0005", "--quiet", "--no-keep-awake"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "streams API, keep-alive 64 B" in out and "TLS streams, keep-alive 64 B" in out
    assert "targets: ratios of the SERVER's CPU per request" in out
    for row in ("asyncio-streams", "asyncio-tls", "aioc-compiled"):
        assert f"\n{row} " in out
    assert "error" not in out.split("targets:")[0].replace("errors", "")


def test_derived_per_request_numbers():
    rec = runner.derive_net({"completed": 1000, "duration_s": 2.0, "server_user_s": 0.5, "server_sys_s": 0.25,
                             "server_cpu_s": 0.75, "client_cpu_s": 1.9, "server_wait_s": 0.1,
                             "client_wait_s": 0.4})
    assert rec["user_us_per_op"] == 500 and rec["sys_us_per_op"] == 250 and rec["cpu_us_per_op"] == 750
    assert rec["server_busy"] == 0.375 and rec["client_busy"] == 0.95
    assert rec["wait"] == 0.2
    empty = runner.derive_net({"completed": 0, "duration_s": 0.0})
    assert empty["cpu_us_per_op"] is None and empty["server_busy"] is None
    sched = runner.derive_sched({"ops": 100, "user_s": 0.001, "sys_s": 0.0005, "elapsed_s": 0.01, "wait_s": 0.001})
    assert sched["cpu_us_per_op"] == pytest.approx(15.0) and sched["wait"] == pytest.approx(0.1)


def test_idle_series_and_json_and_report(tmp_path):
    every = {c.name: c for c in contenders_mod.all_contenders()}
    chosen = [every["aioc-pure-epoll"], every["aioc-pure-select"]]
    wl = [w for w in workloads_mod.build((0, 1000)) if w.id in ("ka64", "idle1000")]
    results = [
        _record(1, "ka64", "aioc-pure-epoll", 100, 30.0),
        _record(1, "idle1000", "aioc-pure-epoll", 80, 33.0),
        _record(1, "ka64", "aioc-pure-select", 90, 31.0),
        {"round": 0, "workload": "idle1000", "contender": "aioc-pure-select", "status": "n/a",
         "reason": "select() watches only fds below 1024"},
    ]
    summ = summary.summarize(results, wl, chosen)
    series = summary.idle_series(summ, wl)
    assert series == {"aioc-pure-epoll": [(0, 100), (1000, 80)], "aioc-pure-select": [(0, 90), (1000, None)]}
    doc = summary.document(machine={"date": "2026-01-01T00:00:00+00:00", "cpu_model": "Test CPU", "cpu_count": 2,
                                    "kernel": "6.0", "python": "3.11", "aioc_implementation": "pure",
                                    "uvloop_version": None},
                           config={"quick": True, "rounds": 1, "warmup": 0.1, "window": 0.3, "connections": 50,
                                   "client": "aioc", "keep_awake": True, "pinning": {}},
                           contenders=chosen, workloads=wl, results=results, summary=summ, notes=["a note"],
                           elapsed=1.0)
    path = tmp_path / "bench.json"
    summary.write_json(str(path), doc)
    loaded = json.loads(path.read_text())
    assert loaded["schema"] == summary.SCHEMA
    assert loaded["summary"]["idle1000"]["cells"]["aioc-pure-select"]["status"] == "n/a"
    assert len(loaded["results"]) == 4
    text = report.render(doc, chosen, "aioc-pure-epoll")
    assert "n/a: select() watches only fds below 1024" in text
    assert "idle scaling" in text
    assert "note: a note" in text
    assert "WARNING" not in text  # no run measured any wait
    noisy = [dict(r, wait=0.5) if r.get("status") == "ok" else r for r in results]
    doc["noise"] = summary.noise(noisy)
    assert doc["noise"] == {"median_wait": 0.5, "max_wait": 0.5, "runs": 3}
    assert "WARNING: other processes held the CPUs" in report.render(doc, chosen, "aioc-pure-epoll")


def test_plot_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from aioc.bench import plot

    every = {c.name: c for c in contenders_mod.all_contenders()}
    chosen = [every["aioc-pure-epoll"], every["c-epoll"], every["asyncio"], every["uvloop-tls"]]
    wl = [w for w in workloads_mod.build((0, 1000)) if w.id in ("ka64", "idle1000", "tls", "switch")]
    results = [
        _record(1, "tls", "uvloop-tls", 900, 30.0, user_us_per_op=20.0, sys_us_per_op=10.0),
        _record(1, "ka64", "aioc-pure-epoll", 100, 30.0),
        _record(1, "ka64", "c-epoll", 300, 10.0),
        _record(1, "idle1000", "aioc-pure-epoll", 90, 31.0),
        {"round": 0, "workload": "idle1000", "contender": "c-epoll", "status": "error", "reason": "boom"},
        _record(1, "switch", "aioc-pure-epoll", 5e5, 2.0),
        _record(1, "switch", "asyncio", 4e5, 2.5),
    ]
    summ = summary.summarize(results, wl, chosen)
    doc = summary.document(machine={"date": "2026-01-01", "cpu_model": "Test", "cpu_count": 2, "python": "3.11",
                                    "aioc_implementation": "pure", "uvloop_version": None},
                           config={"rounds": 1, "window": 0.3, "connections": 50, "client": "aioc"},
                           contenders=chosen, workloads=wl, results=results, summary=summ, notes=[], elapsed=1.0)
    out = tmp_path / "plot.png"
    assert ("cpu", "tls", "server CPU per request, tls workload (keep-alive 64 B)") in plot.panels(doc)
    plot.plot(doc, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wrk_output_is_parsed():
    sample = """Running 1s test @ http://127.0.0.1:40000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   800.00us  200.00us   5.00ms   90.00%
    Req/Sec    60.00k     1.00k   62.00k    80.00%
  Latency Distribution
     50%  750.00us
     75%    0.90ms
     90%    1.10ms
     99%    2.50ms
  60000 requests in 1.00s, 9.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:  59876.54
Transfer/sec:      8.99MB
"""
    parsed = wrk.parse(sample)
    assert parsed["completed"] == 60000 and parsed["duration_s"] == 1.0
    assert parsed["rate"] == 59876.54
    assert parsed["p50_ms"] == 0.75 and parsed["p99_ms"] == 2.5
    assert parsed["errors"] == 6
    assert parsed["error_kinds"] == {"read": 3, "timeout": 1, "non-2xx": 2}
    assert wrk.command(8080, True, 50, 1)[-3:] == ["-H", "Connection: close", "http://127.0.0.1:8080/"]
