"""The orchestrator: starts the servers and the load generator, runs the rounds, collects raw results.

Every server runs in its own process on the server CPU, the load generator
(or wrk) on the client CPU.  All servers stay up for the whole run, so that
each round can visit every contender in turn for one workload before moving
to the next (interleaved: a slow minute on a noisy machine hits every
contender, not all rounds of one); each round starts one contender further
along the list.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from . import cserver, protocol, tlscert, wrk
from .contenders import Contender, server_argv
from .progress import Progress
from .system import child_setup, nofile_limits, plan_affinity, read_cpu_times, run_delay, split_cpu, wait_quiet
from .workloads import Workload

#: Descriptors a server or client needs besides its connections.
FD_MARGIN = 64
#: Seconds a server may take to print READY.
START_TIMEOUT = 30.0


@dataclass
class Config:
    rounds: int = 3
    window: float = 1.0
    warmup: float = 0.2
    connections: int = 50
    client: str = "aioc"
    keep_awake: bool = True
    quick: bool = False
    sched_sizes: dict = field(default_factory=dict)
    settle_timeout: float = 5.0
    pin: bool = True


class ServerProcess:
    """One contender's server process."""

    def __init__(self, contender: Contender, argv: list[str], cpu: int | None, logdir: str) -> None:
        self.contender = contender
        self.argv = argv
        self.cpu = cpu
        self.log_path = os.path.join(logdir, f"{contender.name}.log")
        self.proc: subprocess.Popen | None = None
        self.pid = 0
        self.ready = False
        self.implementation = ""
        self.ports: dict[str, int] = {}

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process; :meth:`wait_ready` then waits for its READY line."""
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                env=self.contender.environ(), preexec_fn=child_setup(self.cpu),
            )
        finally:
            log.close()
        self.pid = self.proc.pid
        self.ready = False

    def wait_ready(self) -> None:
        assert self.proc is not None
        line = _readline(self.proc.stdout, START_TIMEOUT)
        parts = line.split()
        if len(parts) != 3 + len(protocol.MODES) or parts[0] != "READY":
            self.stop()
            raise RuntimeError(f"server did not start: {line.strip() or self.log_tail() or 'no output'}")
        self.pid = int(parts[1])
        self.ready = True
        self.implementation = parts[2]
        self.ports = dict(zip(protocol.MODES, map(int, parts[3:])))
        expect = self.contender.expect
        if expect and self.implementation != expect:
            self.stop()
            raise RuntimeError(f"server runs {self.implementation}, not {expect}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_status(self) -> str:
        if self.proc is None:
            return "not started"
        code = self.proc.poll()
        if code is None:
            return "running"
        tail = self.log_tail()
        return f"server exited with code {code}" + (f": {tail}" if tail else "")

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def stop(self) -> None:
        _terminate(self.proc)


class LoadClient:
    """The load generator process, driven by JSON lines."""

    def __init__(self, cpu: int | None, lifetime: int, logdir: str) -> None:
        self.cpu = cpu
        self.lifetime = lifetime
        self.log_path = os.path.join(logdir, "loadgen.log")
        self.proc: subprocess.Popen | None = None
        self.loop = ""

    def start(self) -> None:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "aioc.bench.loadgen", str(self.lifetime)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                preexec_fn=child_setup(self.cpu),
            )
        finally:
            log.close()
        self.loop = self.request({"op": "ping"}, START_TIMEOUT).get("loop", "?")

    def request(self, command: dict, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start_fresh()
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
            line = _readline(self.proc.stdout, timeout)
        except (OSError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"load generator failed: {exc}") from None
        if not line:
            self.stop()
            raise RuntimeError(f"load generator exited: {_tail(self.log_path)}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"load generator: {answer['error']}")
        return answer

    def start_fresh(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op": "exit"}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                pass
        _terminate(self.proc)
        self.proc = None


def _readline(stream: Any, timeout: float) -> str:
    """One line from a child's pipe, waiting at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no answer within {timeout:.0f} s")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1)  # byte by byte: nothing past the line is consumed
        if not chunk:
            return buf.decode(errors="replace")
        buf += chunk
        if chunk == b"\n":
            return buf.decode(errors="replace")


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _terminate(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=3)


def result_record(round_: int, workload: Workload, contender: Contender, status: str, **fields: Any) -> dict:
    record = {"round": round_, "workload": workload.id, "contender": contender.name, "status": status}
    record.update(fields)
    return record


def derive_net(record: dict) -> dict:
    """Per-request CPU and busy fractions from a network run's raw counts."""
    completed = record.get("completed") or 0
    duration = record.get("duration_s") or 0.0
    for key, out in (("server_user_s", "user_us_per_op"), ("server_sys_s", "sys_us_per_op"),
                     ("server_cpu_s", "cpu_us_per_op")):
        value = record.get(key)
        record[out] = value / completed * 1e6 if value is not None and completed else None
    for key, out in (("server_cpu_s", "server_busy"), ("client_cpu_s", "client_busy")):
        value = record.get(key)
        record[out] = value / duration if value is not None and duration > 0 else None
    waits = [record.get(k) for k in ("server_wait_s", "client_wait_s") if record.get(k) is not None]
    record["wait"] = max(waits) / duration if waits and duration > 0 else None
    return record


def derive_sched(record: dict) -> dict:
    ops = record.get("ops") or 0
    user, system = record.get("user_s"), record.get("sys_s")
    record["user_us_per_op"] = user / ops * 1e6 if user is not None and ops else None
    record["sys_us_per_op"] = system / ops * 1e6 if system is not None and ops else None
    record["cpu_us_per_op"] = (user + system) / ops * 1e6 if user is not None and system is not None and ops else None
    wait, elapsed = record.get("wait_s"), record.get("elapsed_s")
    record["wait"] = wait / elapsed if wait is not None and elapsed else None
    return record


class Runner:
    """Runs the plan; ``results`` collects one record per (round, workload, contender)."""

    def __init__(self, config: Config, workloads: list[Workload], contenders: list[Contender],
                 progress: Progress | None = None) -> None:
        self.config = config
        self.workloads = workloads
        self.contenders = contenders
        self.progress = progress
        self.results: list[dict] = []
        self.notes: list[str] = []
        self.servers: dict[str, ServerProcess] = {}
        self.client: LoadClient | None = None
        self.spinners: list[subprocess.Popen] = []
        self.tmp = tempfile.TemporaryDirectory(prefix="aioc-bench-")
        #: C contender name -> (executable, None) or (None, why it could not be built).
        self.c_servers: dict[str, tuple[str | None, str | None]] = {}
        #: (certificate, key) of the TLS servers, made at run time.
        self.tls_files: tuple[str, str] | None = None
        if config.pin:
            self.server_cpu, self.client_cpu = plan_affinity()
        else:
            self.server_cpu = self.client_cpu = None
        self.net = [w for w in workloads if w.kind == "net"]
        self.sched = [w for w in workloads if w.kind == "sched"]

    # -- the plan ---------------------------------------------------------------

    def net_contenders(self, workload: Workload | None = None) -> list[Contender]:
        """The available servers; with ``workload``, those of its suite."""
        return [c for c in self.contenders if c.server and c.available
                and (workload is None or workload.suite in c.suites)]

    def takes_part(self, c: Contender) -> bool:
        """Whether a selected workload is one ``c`` runs."""
        return bool(c.server and any(w.suite in c.suites for w in self.net)) or bool(c.scheduler and self.sched)

    def sched_contenders(self) -> list[Contender]:
        return [c for c in self.contenders if c.scheduler and c.available]

    def step_estimate(self, workload: Workload, contender: Contender | None = None) -> float:
        cfg = self.config
        if workload.kind == "net":
            wrk_extra = 1.0 if cfg.client == "wrk" else 0.0  # wrk counts whole seconds
            hold = workload.idle / 4000  # opening the idle connections and closing them
            return cfg.warmup + max(cfg.window, wrk_extra) + 0.1 + wrk_extra + hold
        # Seconds per run at full size, roughly, by loop.
        loop = contender.scheduler[0] if contender and contender.scheduler else "asyncio"
        pure = contender is not None and contender.name.startswith("aioc-pure")
        base = {"aioc": 2.0 if pure else 0.6, "asyncio": 3.8, "uvloop": 3.0}.get(loop, 3.0)
        scale = cfg.sched_sizes.get("spawn", {}).get("count", 200_000) / 200_000
        return base * scale + 0.15

    def plan(self) -> tuple[int, float]:
        """``(steps, estimated seconds)`` of the measurements to come."""
        steps, seconds = 0, 0.0
        for w in self.net:
            for c in self.net_contenders(w):
                if self.fd_problem(w, c) is None:
                    steps += 1
                    seconds += self.step_estimate(w, c)
        for w in self.sched:
            for c in self.sched_contenders():
                steps += 1
                seconds += self.step_estimate(w, c)
        return steps * self.config.rounds, seconds * self.config.rounds

    def fd_problem(self, workload: Workload, contender: Contender) -> str | None:
        """Why this contender cannot run this workload here, or None."""
        if workload.suite == "tls" and self.config.client == "wrk":
            return "--client wrk drives plaintext only; the TLS workload needs the aioc client"
        need = workload.idle + self.config.connections + FD_MARGIN
        if contender.fd_limit is not None and need > contender.fd_limit:
            return (f"select() watches only fds below {contender.fd_limit}; "
                    f"{workload.idle:,} idle + {self.config.connections} active connections need more")
        soft, hard = nofile_limits()
        if hard != resource.RLIM_INFINITY and need > hard:
            return f"RLIMIT_NOFILE hard limit is {hard}; {workload.idle:,} idle connections need about {need}"
        return None

    # -- setup and teardown ---------------------------------------------------------

    def note(self, text: str) -> None:
        self.notes.append(text)
        if self.progress:
            self.progress.note(text)

    def setup(self) -> None:
        from .contenders import check_availability

        for c in self.contenders:
            if c.c_source and any(w.suite in c.suites for w in self.net):
                self.c_servers[c.name] = cserver.build(self.tmp.name, source=c.c_source)
        tls_reason = None
        if any(w.suite == "tls" for w in self.net) and any("tls" in c.suites for c in self.contenders):
            self.tls_files, tls_reason = tlscert.make_certificate(self.tmp.name)
        check_availability(self.contenders, self.c_servers, tls_reason)
        for c in self.contenders:
            if not c.available and self.takes_part(c):
                self.note(f"skipped {c.name}: {c.reason}")
        steps, seconds = self.plan()
        lifetime = int(seconds * 4 + 600)
        if self.config.keep_awake and self.server_cpu is not None:
            for cpu in (self.server_cpu, self.client_cpu):
                self.spinners.append(subprocess.Popen(
                    [sys.executable, "-m", "aioc.bench.keepawake", str(cpu), str(lifetime)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=child_setup(None),
                ))
        if self.net:
            # Started together, so that their imports overlap.
            starting = []
            for c in self.net_contenders():
                if not self.takes_part(c):
                    continue
                argv = server_argv(c, self.c_servers, lifetime, self.tls_files)
                server = ServerProcess(c, argv, self.server_cpu, self.tmp.name)
                try:
                    server.launch()
                except OSError as exc:
                    c.available, c.reason = False, f"server failed to start: {exc}"
                    self.note(f"skipped {c.name}: {c.reason}")
                    continue
                starting.append(server)
            self.client = LoadClient(self.client_cpu, lifetime, self.tmp.name)
            self.client.start()
            for server in starting:
                c = server.contender
                try:
                    server.wait_ready()
                except (RuntimeError, TimeoutError, OSError) as exc:
                    server.stop()
                    c.available, c.reason = False, f"server failed to start: {exc}"
                    self.note(f"skipped {c.name}: {c.reason}")
                    continue
                self.servers[c.name] = server

    def warm_up(self) -> None:
        """One short run per server and reply mode before the first round.

        A fresh process pays first-time costs in its first runs (asyncio's 256 KiB
        receive buffer is mmap()ed and unmapped per read until glibc raises its
        mmap threshold, for one); every server is run through them before any
        measurement counts.
        """
        if self.client is None:
            return
        window = 0.03 if self.config.quick else 0.1
        for name, server in self.servers.items():
            served = [w for w in self.net if w.suite in server.contender.suites]
            modes = sorted({(w.mode, w.suite == "tls") for w in served}, key=lambda m: protocol.MODES.index(m[0]))
            for mode, tls in modes:
                try:
                    self.client.request(
                        {"op": "run", "port": server.ports[mode], "mode": mode,
                         "connections": self.config.connections, "warmup": 0, "window": window,
                         **self.tls_options(tls)},
                        timeout=window + 60,
                    )
                except RuntimeError as exc:
                    self.note(f"warm-up of {name} ({mode}) failed: {exc}")

    def tls_options(self, tls: bool) -> dict:
        """What the load generator needs to speak TLS to our servers (nothing for plaintext)."""
        if not tls:
            return {}
        assert self.tls_files is not None
        return {"tls_cafile": self.tls_files[0]}

    def close(self) -> None:
        if self.client is not None:
            self.client.stop()
        for server in self.servers.values():
            server.stop()
        for spinner in self.spinners:
            _terminate(spinner)
        self.spinners.clear()
        self.tmp.cleanup()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the rounds -------------------------------------------------------------------

    def run(self) -> list[dict]:
        cfg = self.config
        # Facts that do not change between rounds are recorded once.
        for c in self.contenders:
            for w in self.workloads:
                if (w.kind == "net" and not (c.server and w.suite in c.suites)) or (
                        w.kind == "sched" and not c.scheduler):
                    continue
                if not c.available:
                    self.results.append(result_record(0, w, c, "skipped", reason=c.reason))
                elif w.kind == "net" and (problem := self.fd_problem(w, c)):
                    self.results.append(result_record(0, w, c, "n/a", reason=problem))
        if self.net:
            if self.progress:
                self.progress.note("warming up every server")
            self.warm_up()
        for round_ in range(1, cfg.rounds + 1):
            for w in (w for w in self.net if not w.idle):
                for c in _rotate(self.net_contenders(w), round_ - 1):
                    self._measure_net(round_, w, c)
            idle = sorted((w for w in self.net if w.idle), key=lambda w: w.idle)
            if idle:
                for c in _rotate(self.net_contenders(idle[0]), round_ - 1):
                    self._idle_series(round_, idle, c)
            sched = _rotate(self.sched_contenders(), round_ - 1)
            for w in self.sched:
                for c in sched:
                    self._measure_sched(round_, w, c)
        return self.results

    def _label(self, round_: int, w: Workload, c: Contender) -> str:
        return f"round {round_}/{self.config.rounds}  {w.id:<9} {c.name:<17}"

    def _begin(self, round_: int, w: Workload, c: Contender) -> None:
        if self.progress:
            self.progress.begin(self._label(round_, w, c))

    def _end(self, round_: int, w: Workload, c: Contender, record: dict) -> dict:
        self.results.append(record)
        if self.progress:
            if record["status"] == "ok":
                text = f"{record['rate']:>12,.0f} {w.unit}"
                if record.get("errors"):
                    text += f"  ({record['errors']} errors)"
            else:
                text = f"{record['status']}: {record.get('reason', '')}"
            self.progress.end(f"{self._label(round_, w, c)} {text}", self.step_estimate(w, c))
        return record

    def _settle(self) -> None:
        pids = [s.pid for s in self.servers.values() if s.alive()]
        if pids:
            wait_quiet(pids, self.config.settle_timeout)

    def _server(self, c: Contender) -> ServerProcess:
        server = self.servers[c.name]
        if not server.alive():
            status = server.exit_status()
            self.note(f"{c.name}: {status}; restarting it")
            server.start()
        elif not server.ready:
            server.wait_ready()
        return server

    def _idle_series(self, round_: int, idle: list[Workload], c: Contender) -> None:
        held = 0
        assert self.client is not None
        try:
            for w in idle:
                if self.fd_problem(w, c):
                    continue
                self._begin(round_, w, c)
                try:
                    server = self._server(c)
                    answer = self.client.request(
                        {"op": "hold", "port": server.ports["ka64"], "count": w.idle - held, "mode": "ka64"},
                        timeout=60 + w.idle / 100,
                    )
                    held = answer["held"]
                    if answer["errors"] or held != w.idle:
                        raise RuntimeError(f"opened {held:,} of {w.idle:,} idle connections "
                                           f"({answer['errors']} failed)")
                except (RuntimeError, TimeoutError, OSError) as exc:
                    self._end(round_, w, c, result_record(round_, w, c, "error", reason=str(exc)))
                    return
                self._measure_net(round_, w, c, begun=True)
        finally:
            # No settling here: the next measurement waits until every server is quiet
            # (done closing these connections), while the next contender's idle
            # connections may already be opening.
            try:
                self.client.request({"op": "release"}, timeout=60)
            except RuntimeError as exc:
                self.note(f"releasing idle connections failed: {exc}")

    def _measure_net(self, round_: int, w: Workload, c: Contender, begun: bool = False) -> dict:
        cfg = self.config
        if self.fd_problem(w, c):
            return {}
        if not begun:
            self._begin(round_, w, c)
        assert self.client is not None
        try:
            server = self._server(c)
            self._settle()
            port = server.ports[w.mode]
            if cfg.client == "wrk":
                data = self._run_wrk(server, w)
            else:
                data = self.client.request(
                    {"op": "run", "port": port, "mode": w.mode, "connections": cfg.connections,
                     "warmup": cfg.warmup, "window": cfg.window, "server_pid": server.pid,
                     **self.tls_options(w.suite == "tls")},
                    timeout=cfg.warmup + cfg.window + 60,
                )
        except (RuntimeError, TimeoutError, OSError) as exc:
            return self._end(round_, w, c, result_record(round_, w, c, "error", reason=str(exc)))
        status, reason = "ok", None
        if not server.alive():
            status, reason = "error", server.exit_status()
        elif not data.get("completed"):
            kinds = ", ".join(f"{k} x{v}" for k, v in (data.get("error_kinds") or {}).items())
            status, reason = "error", f"no request completed ({kinds or 'no errors either'})"
        record = result_record(round_, w, c, status, reason=reason, server_impl=server.implementation,
                               client=cfg.client, **data)
        return self._end(round_, w, c, derive_net(record))

    def _run_wrk(self, server: ServerProcess, w: Workload) -> dict:
        cfg = self.config
        assert self.client is not None
        # wrk has no warm-up of its own and counts whole seconds: warm up with our client.
        if cfg.warmup > 0:
            self.client.request(
                {"op": "run", "port": server.ports[w.mode], "mode": w.mode, "connections": cfg.connections,
                 "warmup": 0, "window": cfg.warmup}, timeout=cfg.warmup + 60,
            )
        before = read_cpu_times(server.pid)
        wait_before = run_delay(server.pid)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        data = wrk.run(server.ports[w.mode], protocol.closes(w.mode), cfg.connections, cfg.window, self.client_cpu)
        wall = time.perf_counter() - start
        after = read_cpu_times(server.pid)
        wait_after = run_delay(server.pid)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        user, system, total = split_cpu(after - before)
        data.pop("wrk_output", None)
        data.update(
            server_user_s=user, server_sys_s=system, server_cpu_s=total,
            client_cpu_s=(children_after.ru_utime - children.ru_utime) + (children_after.ru_stime - children.ru_stime),
            client_loop="wrk", wall_s=wall,
            server_wait_s=wait_after - wait_before if wait_before is not None and wait_after is not None else None,
        )
        # Rates are wrk's; CPU is over wrk's whole life, so the per-request figures use its count.
        data.setdefault("duration_s", wall)
        return data

    def _measure_sched(self, round_: int, w: Workload, c: Contender) -> dict:
        self._begin(round_, w, c)
        assert c.scheduler is not None
        loop, backend = c.scheduler
        argv = [sys.executable, "-m", "aioc.bench.scheduler", loop, w.sched,
                "--sizes", json.dumps(self.config.sched_sizes.get(w.sched, {}))]
        if backend:
            argv += ["--backend", backend]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, env=c.environ(), timeout=300,
                                 preexec_fn=child_setup(self.server_cpu))
            if out.returncode != 0:
                lines = out.stderr.strip().splitlines()
                raise RuntimeError(f"exit {out.returncode}: {lines[-1] if lines else ''}")
            data = json.loads(out.stdout.strip().splitlines()[-1])
        except (RuntimeError, OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
            return self._end(round_, w, c, result_record(round_, w, c, "error", reason=str(exc)))
        status, reason = "ok", None
        if c.expect and c.family == "aioc" and data.get("loop") != c.expect:
            status, reason = "error", f"ran {data.get('loop')}, not {c.expect}"
        elif data.get("errors"):
            status, reason = "error", f"{data['errors']} of {data['expected']} operations did not complete"
        data.pop("workload", None)
        record = result_record(round_, w, c, status, reason=reason, **data)
        return self._end(round_, w, c, derive_sched(record))


def _rotate(items: list, by: int) -> list:
    if not items:
        return items
    by %= len(items)
    return items[by:] + items[:by]


def install_signal_handlers() -> None:
    """SIGTERM ends the run like Ctrl-C, so that every child is stopped."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
