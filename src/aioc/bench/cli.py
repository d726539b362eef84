"""``python -m aioc.bench``: the command line."""

from __future__ import annotations

import argparse
import os
import sys
import time

from . import contenders as contenders_mod
from . import workloads as workloads_mod
from . import wrk
from .scheduler import scaled

DESCRIPTION = """\
Benchmark aioc's event loop against asyncio, uvloop, curio and trio (when installed)
and two C servers, on epoll and on io_uring.

Network workloads (conn/s; keep-alive with 64 B, 1 KiB, 16 KiB bodies; keep-alive
with idle connections held open; keep-alive through each loop's streams API; keep-alive
over TLS) run each server in its own process on one CPU and the load generator on
another; scheduler workloads (task switches, spawns, timers, a queue, a lock) run
in-process.  Contenders are interleaved round by round; the table shows medians and
the min-max spread, and the server's CPU time per request.
"""

EPILOG = """\
workloads: conn, ka64, ka1k, ka16k, idle<N> (from --idle), streams, tls, switch,
  spawn, timers, queue, lock;
  groups: net, keepalive, idle, scheduler.
contenders: {contenders};
  a prefix selects a family (aioc, asyncio, uvloop, c).
  The streams workload runs the streams servers and aioc's raw-event one; the tls
  workload only the TLS servers; the summary checks their targets.
examples:
  python -m aioc.bench --quick
  python -m aioc.bench --json bench.json --plot bench.png
  python -m aioc.bench --only keepalive --contenders aioc,c
  python -m aioc.bench --client wrk --only conn,ka64
  python -m aioc.bench --only streams,tls --rounds 5 --window 2
"""


#: What --rounds, --window, --warmup and --sched-scale default to.  Chosen so that the default
#: run, 3 interleaved rounds of every workload and contender, stays around 4 minutes on two CPUs:
#: half-second windows suffice because the server's CPU time comes from its process CPU clock
#: (ns), not from 10 ms ticks (only the user/system split is in ticks); every server is warmed
#: up once before the first round, so each run needs only a short warm-up of its own; and the
#: scheduler workloads run at a fifth of their full sizes (--sched-scale 1 for all of them).
SCHED_SCALE = 0.2
DEFAULT = {"rounds": 3, "window": 0.5, "warmup": 0.05, "sched_scale": SCHED_SCALE}
QUICK = {"rounds": 1, "window": 0.2, "warmup": 0.05, "sched_scale": 0.05}
QUICK_IDLE_LEVELS = (0, 1000)


def _csv(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _checked(convert, noun: str, accept, rule: str):
    """An argparse type: ``convert`` the text (else "not {noun}"), then require ``accept`` (else ``rule``)."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if not accept(value):  # a NaN is accepted by no rule
            raise argparse.ArgumentTypeError(f"{rule}, got {value}")
        return value

    return parse


_positive_int = _checked(int, "an integer", lambda value: value >= 1, "must be at least 1")
_positive_float = _checked(float, "a number", lambda value: value > 0, "must be positive")
_nonnegative_float = _checked(float, "a number", lambda value: value >= 0, "must not be negative")


def _idle_levels(text: str) -> tuple[int, ...]:
    try:
        levels = sorted({int(item) for item in _csv(text)})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(level < 0 or level > 100_000 for level in levels):
        raise argparse.ArgumentTypeError("idle levels must be between 0 and 100000")
    return tuple(levels)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aioc.bench", description=DESCRIPTION,
        epilog=EPILOG.format(contenders=", ".join(contenders_mod.NAMES)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true",
                        help="smoke run of about 30 s: one round, short windows, small scheduler sizes")
    parser.add_argument("--json", metavar="FILE", help="write every raw and summarized number, with machine info")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the results with matplotlib")
    parser.add_argument("--client", choices=("aioc", "wrk"), default="aioc",
                        help="load generator for the network workloads (wrk: HTTP cross-check; default aioc)")
    parser.add_argument("--only", metavar="WORKLOAD[,..]", type=_csv, help="run only these workloads or groups")
    parser.add_argument("--contenders", metavar="NAME[,..]", type=_csv, help="run only these contenders")
    parser.add_argument("--rounds", type=_positive_int,
                        help=f"interleaved rounds (default {DEFAULT['rounds']}; --quick {QUICK['rounds']})")
    parser.add_argument("--window", type=_positive_float, metavar="SECONDS",
                        help=f"measurement window per run (default {DEFAULT['window']}; --quick {QUICK['window']})")
    parser.add_argument("--warmup", type=_nonnegative_float, metavar="SECONDS",
                        help=f"warm-up before each window (default {DEFAULT['warmup']}; --quick {QUICK['warmup']})")
    parser.add_argument("--connections", type=_positive_int, default=50, help="concurrent client connections (50)")
    parser.add_argument("--idle", type=_idle_levels, metavar="N[,..]",
                        help="idle-connection levels of the idle series (default 0,1000,10000; --quick 0,1000)")
    parser.add_argument("--sched-scale", type=_positive_float, metavar="FACTOR",
                        help="scheduler sizes as a fraction of the full ones (100 tasks x 20,000 switches, "
                             f"200,000 spawns, 100,000 timers, 1,000,000 queue items and lock pairs); default {SCHED_SCALE}, --quick {QUICK['sched_scale']}")
    parser.add_argument("--no-keep-awake", dest="keep_awake", action="store_false",
                        help="let idle CPUs halt (by default a lowest-priority spinner keeps them awake; "
                             "see aioc.bench.keepawake)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin processes to CPUs")
    parser.add_argument("--list", action="store_true", help="list workloads and contenders, then exit")
    parser.add_argument("--quiet", action="store_true", help="no progress display on stderr")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate; a bad option exits with status 2 and a message, as argparse does."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.idle is None:
        args.idle = QUICK_IDLE_LEVELS if args.quick else workloads_mod.DEFAULT_IDLE_LEVELS
    try:
        args.workloads = workloads_mod.select(args.only, args.idle)
    except ValueError as exc:
        parser.error(f"--only: {exc}")
    try:
        args.selected = contenders_mod.select(args.contenders)
    except ValueError as exc:
        parser.error(f"--contenders: {exc}")
    if not args.workloads:
        parser.error("--only selects no workload")
    if args.client == "wrk":
        if not wrk.available():
            parser.error("--client wrk: wrk is not on PATH; install it (apt-get install wrk) or use --client aioc")
        if not any(w.kind == "net" for w in args.workloads):
            parser.error("--client wrk drives only network workloads, and --only selects none")
    if args.plot:
        if not args.plot.lower().endswith(".png"):
            parser.error(f"--plot: expected a .png file name, got {args.plot!r}")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install 'aioc[bench]'")
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            directory = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(directory):
                parser.error(f"{option}: directory {directory} does not exist")
    defaults = QUICK if args.quick else DEFAULT
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def list_all() -> str:
    lines = ["workloads:"]
    for w in workloads_mod.build():
        lines.append(f"  {w.id:<10} {w.label}")
    for name, text in workloads_mod.GROUPS.items():
        lines.append(f"  {name:<10} (group) {text}")
    lines.append("contenders:")
    for c in contenders_mod.all_contenders():
        kinds = [f"network: {', '.join(c.suites)}"] if c.server else []
        kinds += ["scheduler"] if c.scheduler else []
        lines.append(f"  {c.name:<17} {c.label} [{'; '.join(kinds)}]")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        sys.stdout.write(list_all())
        return 0

    from .progress import Progress
    from .report import render
    from .runner import Config, Runner, install_signal_handlers
    from .summary import document, summarize, write_json
    from .system import machine_info, pin, raise_nofile_limit

    started = time.monotonic()
    machine = machine_info()  # before this process pins itself to one CPU
    raise_nofile_limit()
    sizes = scaled(args.sched_scale)
    config = Config(rounds=args.rounds, window=args.window, warmup=args.warmup, connections=args.connections,
                    client=args.client, keep_awake=args.keep_awake, quick=args.quick,
                    sched_sizes={k: dict(v) for k, v in sizes.items()}, pin=args.pin)
    install_signal_handlers()
    runner = Runner(config, args.workloads, args.selected)
    if args.pin and runner.client_cpu is not None:
        pin(runner.client_cpu)  # keep the orchestrator off the server's CPU
    try:
        runner.setup()
        steps, estimate = runner.plan()
        progress = Progress(estimate, steps, enabled=not args.quiet)
        runner.progress = progress
        about = f"{estimate:.0f} s" if estimate < 120 else f"{estimate / 60:.1f} min"
        progress.note(f"aioc.bench: {steps} measurements, about {about}")
        runner.run()
        progress.finish()
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted; stopping every child process\n")
        return 130
    except (RuntimeError, TimeoutError) as exc:  # the load generator itself could not run
        sys.stderr.write(f"aioc.bench: {exc}\n")
        return 1
    finally:
        runner.close()
    client_loop = (runner.client.loop or None) if runner.client else None
    server_cpu, client_cpu = (runner.server_cpu, runner.client_cpu)
    config_doc = {
        "quick": args.quick, "rounds": args.rounds, "window": args.window, "warmup": args.warmup,
        "connections": args.connections, "idle_levels": list(args.idle), "client": args.client,
        "client_loop": client_loop, "keep_awake": args.keep_awake,
        "only": args.only, "contenders": args.contenders, "sched_scale": args.sched_scale,
        "sched_sizes": config.sched_sizes,
        "pinning": {"server_cpu": server_cpu, "client_cpu": client_cpu},
        "argv": sys.argv[1:] if argv is None else list(argv),
    }
    summary = summarize(runner.results, args.workloads, args.selected)
    doc = document(machine=machine, config=config_doc, contenders=args.selected, workloads=args.workloads,
                   results=runner.results, summary=summary, notes=runner.notes,
                   elapsed=time.monotonic() - started)
    sys.stdout.write(render(doc, args.selected, client_loop if args.client == "aioc" else "wrk"))
    sys.stdout.flush()
    if args.json:
        write_json(args.json, doc)
        sys.stderr.write(f"wrote {args.json}\n")
    if args.plot:
        from .plot import plot

        plot(doc, args.plot)
        sys.stderr.write(f"wrote {args.plot}\n")
    failed = [r for r in runner.results if r["status"] == "error"]
    if failed:
        sys.stderr.write(f"{len(failed)} measurement(s) failed; see the table\n")
        return 1
    return 0
