"""The readable tables printed on stdout."""

from __future__ import annotations

from typing import Any

from .summary import METRIC_NAMES


#: Above this median run-queue wait the report warns that the machine was busy.
NOISY = 0.10


def _num(value: float | None, fmt: str = ",.0f", none: str = "-") -> str:
    return none if value is None else format(value, fmt)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _range(lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None:
        return "-"
    return f"{lo:,.0f}-{hi:,.0f}"


def _table(headers: list[str], rows: list[list[str]], align: str) -> list[str]:
    """Columns padded to width; ``align`` holds ``<`` or ``>`` per column.  Rows of one cell span."""
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) == len(headers):
            widths = [max(w, len(cell)) for w, cell in zip(widths, row)]

    def line(cells: list[str]) -> str:
        if len(cells) != len(headers):  # a name and a note spanning the other columns
            return f"{cells[0]:<{widths[0]}}  " + "  ".join(cells[1:])
        return "  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(cells, align, widths)).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in rows]
    return out


def header(machine: dict, config: dict, client_loop: str | None) -> list[str]:
    pin = config.get("pinning") or {}
    where = (f"server on CPU {pin['server_cpu']}, client on CPU {pin['client_cpu']}"
             if pin.get("server_cpu") is not None else "not pinned (one CPU)")
    client = "wrk (HTTP cross-check)" if config["client"] == "wrk" else f"aioc load generator ({client_loop})"
    lines = [
        f"aioc benchmark  {machine['date']}",
        f"  CPU {machine['cpu_model']} x{machine['cpu_count']}, Linux {machine['kernel']}, "
        f"Python {machine['python']}, aioc {machine['aioc_implementation']}, "
        + ", ".join(f"{name} {machine.get(name + '_version') or 'not installed'}"
                    for name in ("uvloop", "curio", "trio")),
        f"  {'quick run' if config['quick'] else 'full run'}: {config['rounds']} round(s) interleaved, "
        f"warm-up {config['warmup']:g} s, window {config['window']:g} s, {config['connections']} connections; "
        f"{where}; idle CPUs kept awake: {'yes' if config['keep_awake'] else 'no'}",
    ]
    if client_loop:
        lines.append(f"  client: {client}")
    return lines


def _title(entry: dict) -> str:
    unit = entry["unit"]
    if not entry.get("baseline"):
        return f"{entry['label']}  [{unit}; no aioc baseline in this run]"
    return f"{entry['label']}  [{unit}; x aioc = ratio to {entry['baseline']}]"


def _rows(entry: dict, contenders: list[Any], row) -> list[list[str]]:
    """A row per contender that ran: ``row(name, cell)`` for a measured one, else its status and reason."""
    rows = []
    for c in contenders:
        cell = entry["cells"].get(c.name)
        if cell is None:
            continue
        if cell["status"] != "ok":
            rows.append([c.name, f"{cell['status']}: {cell.get('reason') or ''}"])
        else:
            rows.append(row(c.name, cell))
    return rows


def net_table(entry: dict, contenders: list[Any]) -> list[str]:
    unit = entry["unit"]
    headers = ["contender", f"{unit} med", "min-max", "p50 ms", "p99 ms", "errors",
               "user us", "sys us", "cpu us", "srv%", "cli%", "wait%", "x aioc", "x C", "cpu xC"]
    align = "<>>>>>>>>>>>>>>"

    def row(name: str, cell: dict) -> list[str]:
        name += "*" if cell.get("client_bound") else ""
        return [
            name, _num(cell.get("rate")), _range(cell.get("rate_min"), cell.get("rate_max")),
            _num(cell.get("p50_ms"), ".2f"), _num(cell.get("p99_ms"), ".2f"), str(cell.get("errors", 0)),
            _num(cell.get("user_us_per_op"), ".1f"), _num(cell.get("sys_us_per_op"), ".1f"),
            _num(cell.get("cpu_us_per_op"), ".1f"), _pct(cell.get("server_busy")), _pct(cell.get("client_busy")),
            _pct(cell.get("wait")), _ratio(cell.get("vs_baseline")), _ratio(cell.get("vs_c")),
            _ratio(cell.get("cpu_vs_c")),
        ]

    return [_title(entry)] + _table(headers, _rows(entry, contenders, row), align)


def sched_table(entry: dict, contenders: list[Any]) -> list[str]:
    unit = entry["unit"]
    timers = any("late_p50_ms" in cell for cell in entry["cells"].values())
    headers = ["contender", f"{unit} med", "min-max", "cpu us/op", "wait%", "x aioc"]
    align = "<>>>>>"
    if timers:
        headers += ["late p50 ms", "late p99 ms"]
        align += ">>"

    def row(name: str, cell: dict) -> list[str]:
        cells = [name, _num(cell.get("rate")), _range(cell.get("rate_min"), cell.get("rate_max")),
                 _num(cell.get("cpu_us_per_op"), ".2f"), _pct(cell.get("wait")), _ratio(cell.get("vs_baseline"))]
        if timers:
            cells += [_num(cell.get("late_p50_ms"), ".1f"), _num(cell.get("late_p99_ms"), ".1f")]
        return cells

    return [_title(entry)] + _table(headers, _rows(entry, contenders, row), align)


def idle_table(series: dict, contenders: list[Any]) -> list[str]:
    if not series:
        return []
    levels = sorted({level for points in series.values() for level, _ in points})
    headers = ["contender"] + [f"{level:,} idle" for level in levels] + ["last/first"]
    rows = []
    for c in contenders:
        points = dict(series.get(c.name, []))
        if not points:
            continue
        values = [points.get(level) for level in levels]
        first, last = values[0], values[-1]
        rows.append([c.name] + [_num(v) if v is not None else "n/a" for v in values]
                    + [_ratio(last / first) if first and last else "-"])
    return ["idle scaling: keep-alive 64 B req/s (medians) against idle connections held open"] + _table(
        headers, rows, "<" + ">" * (len(headers) - 1))


def targets_table(checked: list[dict]) -> list[str]:
    """The goals of the streams and TLS workloads, as ratios of server CPU per request."""
    if not checked:
        return []
    lines = ["targets: ratios of the SERVER's CPU per request, paired by round (median, min-max over rounds)"]
    for t in checked:
        what = f"  {t['workload']}: {t['contender']} / {t['reference']}, {METRIC_NAMES[t['metric']]}"
        if t["ratio"] is None:
            lines.append(f"{what}: not measured ({t['reason']})")
        else:
            verdict = "met" if t["met"] else "NOT met"
            lines.append(f"{what} = {t['ratio']:.2f} ({t['ratio_min']:.2f}-{t['ratio_max']:.2f}, "
                         f"{t['rounds']} rounds)  target <= {t['limit']:g}: {verdict}")
    return lines


FOOTNOTES = [
    "med = median over the rounds; min-max = their spread.  x aioc / x C = throughput over the aioc baseline's /",
    "the C server's; cpu xC = CPU per request over the C server's.  user/sys/cpu us = CPU time of the SERVER",
    "process per request (of the whole process per operation for the scheduler), in the measurement window",
    "only.  srv%/cli% = share of one CPU the server / load generator used in the window.  * = client-bound",
    "(load generator busy, server not): compare CPU per request rather than throughput.  wait% = share of the",
    "window the server or client sat runnable while another process had its CPU (high = a noisy machine;",
    "distrust that row).  aioc-pure-select has no scheduler rows: without I/O it is aioc-pure-epoll's loop.",
    "Idioms: curio runs with python -O (its scheduler's debug assert makes a burst of spawns quadratic), spawns",
    "with spawn(daemon=True) and awaits Lock.release(); trio spawns with nursery.start_soon, its queue is a",
    "memory channel, trio.open_memory_channel(100), and its lock and channel yield at every call (trio's",
    "checkpoints).  streams: each loop's server API (aioc.serve_tcp handing out aioc.Stream;",
    "asyncio.start_server's reader and writer) beside aioc-compiled's raw-event server.  tls: the same streams",
    "servers over TLS 1.3 with a P-256 certificate made for the run; the client is Python threads with blocking",
    "ssl sockets, so compare the servers' CPU per request.  c-io_uring: the C server on io_uring (multishot",
    "accept, multishot recv from a provided buffer ring, one io_uring_enter per loop pass).",
]


def render(doc: dict, contenders: list[Any], client_loop: str | None) -> str:
    lines = header(doc["machine"], doc["config"], client_loop)
    for text in doc.get("notes", []):
        lines.append(f"  note: {text}")
    busy = (doc.get("noise") or {}).get("median_wait")
    if busy is not None and busy > NOISY:
        lines.append(f"  WARNING: other processes held the CPUs: in the median run the server or client waited "
                     f"{busy * 100:.0f}% of the window")
        lines.append("  for its CPU.  Throughput and latency are unreliable here; CPU per request suffers less.")
    for wid, entry in doc["summary"].items():
        lines.append("")
        if entry["kind"] == "net":
            lines += net_table(entry, contenders)
        else:
            lines += sched_table(entry, contenders)
    idle = idle_table(doc.get("idle_series") or {}, contenders)
    if idle:
        lines += [""] + idle
    goals = targets_table(doc.get("targets") or [])
    if goals:
        lines += [""] + goals
    lines += [""] + FOOTNOTES
    lines.append(f"elapsed {doc['elapsed_s']:.0f} s")
    return "\n".join(lines) + "\n"
