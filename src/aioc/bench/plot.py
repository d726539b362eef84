"""``--plot FILE.png``: bars per contender per workload, and throughput against idle connections."""

from __future__ import annotations

import math

COLORS = {
    "aioc-compiled": "#08306b",
    "aioc-pure-epoll": "#2171b5",
    "aioc-pure-select": "#9ecae1",
    "asyncio-protocol": "#d94801",
    "asyncio-streams": "#fdae6b",
    "asyncio": "#d94801",
    "uvloop-protocol": "#238b45",
    "uvloop-streams": "#a1d99b",
    "uvloop": "#238b45",
    "c-epoll": "#525252",
    "c-io_uring": "#969696",
    "aioc-streams": "#4292c6",
    "aioc-tls": "#6baed6",
    "asyncio-tls": "#fd8d3c",
    "uvloop-tls": "#74c476",
    "curio": "#6a51a3",
    "trio": "#ce1256",
}


def _fmt(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.2g}"


def _bars(ax, entry: dict, names: list[str], metric: str, title: str, xlabel: str, spread: bool) -> None:
    cells = entry["cells"]
    names = [n for n in names if n in cells]
    ys = list(range(len(names)))[::-1]
    values = []
    for name in names:
        cell = cells[name]
        values.append(cell.get(metric) if cell.get("status") == "ok" else None)
    ends = []
    for name, value in zip(names, values):
        if value is not None:
            hi = cells[name].get("rate_max") if spread else None
            ends.append(max(value, hi or 0.0))
    top = max(ends, default=1.0) or 1.0
    for y, name, value in zip(ys, names, values):
        cell = cells[name]
        if value is None:
            status = cell.get("status", "")
            if status == "ok":
                status = "no data"
            ax.text(top * 0.01, y, status, va="center", ha="left", fontsize=8, color="#888888", style="italic")
            continue
        err, end = None, value
        if spread and cell.get("rate_min") is not None:
            err = [[value - cell["rate_min"]], [cell["rate_max"] - value]]
            end = max(value, cell["rate_max"])
        color = COLORS.get(name, "#777777")
        if metric == "cpu_us_per_op":
            # Stacked: user time solid, system time hatched, in their measured proportion.
            user, system = cell.get("user_us_per_op") or 0.0, cell.get("sys_us_per_op") or 0.0
            user_part = value * user / (user + system) if user + system > 0 else value
            ax.barh(y, user_part, color=color, height=0.7)
            ax.barh(y, value - user_part, left=user_part, color=color, alpha=0.45, hatch="////",
                    edgecolor="white", linewidth=0, height=0.7)
        else:
            ax.barh(y, value, color=color, xerr=err, height=0.7,
                    error_kw={"ecolor": "#555555", "elinewidth": 0.8, "capsize": 2})
        label = _fmt(value) + ("*" if cell.get("client_bound") else "")
        ax.text(end + top * 0.02, y, label, va="center", ha="left", fontsize=7.5)
    ax.set_yticks(ys)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlim(0, top * 1.2)
    ax.set_title(title, fontsize=9.5, loc="left")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=7.5)
    ax.xaxis.set_major_formatter(_formatter())
    ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: _fmt(v) if v else "0")


def _idle_lines(ax, series: dict, names: list[str]) -> None:
    levels = sorted({level for points in series.values() for level, _ in points})
    positions = {level: i for i, level in enumerate(levels)}
    for name in names:
        points = [(positions[level], rate) for level, rate in series.get(name, []) if rate is not None]
        if not points:
            continue
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", markersize=4, linewidth=1.6, color=COLORS.get(name, "#777777"), label=name,
                linestyle="--" if name.endswith("streams") or name.endswith("select") else "-")
    ax.set_xticks(range(len(levels)))
    ax.set_xticklabels([f"{level:,}" for level in levels], fontsize=8)
    ax.set_xlim(-0.15, len(levels) - 1 + 1.5)  # room on the right for the legend
    ax.set_xlabel("idle connections held open (plus 50 active)", fontsize=8)
    ax.set_ylabel("req/s (keep-alive, 64 B)", fontsize=8)
    ax.set_ylim(bottom=0)
    ax.tick_params(axis="y", labelsize=7.5)
    ax.yaxis.set_major_formatter(_formatter())
    ax.set_title("throughput vs idle connections", fontsize=9.5, loc="left")
    ax.grid(color="#e0e0e0", linewidth=0.6)
    ax.legend(fontsize=7, frameon=False, loc="center right", handlelength=2.2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def panels(doc: dict) -> list[tuple]:
    """The panels to draw, in order: ``(kind, workload id or None, title)``."""
    summary = doc["summary"]
    # The streams and TLS workloads are about the server's CPU per request (their targets), not throughput.
    layered = {w["id"] for w in doc.get("workloads", []) if w.get("suite", "plain") != "plain"}
    out = []
    for wid, entry in summary.items():
        if entry["kind"] == "net" and not entry["idle"]:
            if wid in layered:
                out.append(("cpu", wid, f"server CPU per request, {wid} workload (keep-alive 64 B)"))
            else:
                out.append(("bars", wid, f"{entry['label']} ({entry['unit']})"))
    if doc.get("idle_series"):
        out.append(("idle", None, "throughput vs idle connections"))
    cpu_wid = "ka64" if "ka64" in summary else next((w for w, e in summary.items() if e["kind"] == "net"), None)
    if cpu_wid:
        out.append(("cpu", cpu_wid, f"server CPU per request, {summary[cpu_wid]['label']}"))
    for wid, entry in summary.items():
        if entry["kind"] == "sched":
            out.append(("bars", wid, f"{entry['label'].split(':')[0]} ({entry['unit']})"))
    return out


def plot(doc: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c["name"] for c in doc["contenders"]]
    todo = panels(doc)
    ncols = 3 if len(todo) >= 3 else max(1, len(todo))
    nrows = math.ceil(len(todo) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, 3.5 * nrows + 0.9), squeeze=False)
    for ax in axes.flat[len(todo):]:
        ax.set_visible(False)
    for ax, (kind, wid, title) in zip(axes.flat, todo):
        if kind == "idle":
            _idle_lines(ax, doc["idle_series"], names)
        elif kind == "cpu":
            _bars(ax, doc["summary"][wid], names, "cpu_us_per_op", title,
                  "us of server CPU per request: user solid, system hatched (lower is better)", spread=False)
        else:
            entry = doc["summary"][wid]
            _bars(ax, entry, names, "rate", title, f"{entry['unit']} (median, bars: min-max)", spread=True)
    machine, config = doc["machine"], doc["config"]
    fig.suptitle(
        f"aioc benchmark, {machine['date'][:10]}: {machine['cpu_model']} x{machine['cpu_count']}, "
        f"Python {machine['python']}, aioc {machine['aioc_implementation']}, uvloop {machine.get('uvloop_version') or '-'}; "
        f"{config['rounds']} round(s), {config['window']:g} s windows, {config['connections']} connections, "
        f"client {config.get('client_loop') or config['client']}",
        fontsize=10, x=0.01, ha="left",
    )
    footer = "* client-bound: the load generator, not the server, was saturated"
    busy = (doc.get("noise") or {}).get("median_wait")
    if busy is not None and busy > 0.10:
        footer += (f"    WARNING: a busy machine - in the median run the server or client waited {busy * 100:.0f}% "
                   "of the window for its CPU; throughput is unreliable, CPU per request less so")
    fig.text(0.01, 0.005, footer, fontsize=7.5, color="#555555")
    fig.tight_layout(rect=(0, 0.015, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
