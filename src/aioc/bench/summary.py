"""From raw per-round records to medians, spreads and ratios, and the JSON document."""

from __future__ import annotations

import json
from typing import Any

from .stats import median, ratio, spread

SCHEMA = "aioc-bench/1"

#: Contenders tried in order as the aioc reference of the ratios (the TLS workload has only aioc-tls).
BASELINES = ("aioc-compiled", "aioc-pure-epoll", "aioc-tls")
#: The C limit of the network workloads.
C_LIMIT = "c-epoll"

#: Metrics summarized by their median over the rounds.
MEDIAN_KEYS = (
    "rate", "p50_ms", "p90_ms", "p99_ms", "user_us_per_op", "sys_us_per_op", "cpu_us_per_op",
    "server_busy", "client_busy", "wait", "late_p50_ms", "late_p99_ms", "late_max_ms", "elapsed_s",
)


def summarize_cell(records: list[dict]) -> dict:
    """One contender on one workload: medians over its ok rounds, spreads, error totals.

    With no ok round, the cell carries the status and reason of the records.
    """
    ok = [r for r in records if r.get("status") == "ok"]
    cell: dict[str, Any] = {"rounds": len(ok)}
    if not ok:
        first = records[0] if records else {"status": "missing"}
        cell.update(status=first.get("status", "missing"), reason=first.get("reason"))
        return cell
    cell["status"] = "ok"
    failed = [r for r in records if r.get("status") == "error"]
    if failed:
        cell["failed_rounds"] = len(failed)
        cell["reason"] = failed[0].get("reason")
    for key in MEDIAN_KEYS:
        values = [r.get(key) for r in ok]
        if any(v is not None for v in values):
            cell[key] = median(values)
    cell["rate_min"], cell["rate_max"] = spread([r.get("rate") for r in ok])
    cell["errors"] = sum(r.get("errors") or 0 for r in records)
    cell["completed"] = sum(r.get("completed") or r.get("ops") or 0 for r in ok)
    client_bound = [r.get("client_busy") for r in ok if r.get("client_busy") is not None]
    if client_bound:
        cell["client_bound"] = median(client_bound) >= 0.9 and (cell.get("server_busy") or 0) < 0.9
    return cell


def add_ratios(cells: dict[str, dict], kind: str) -> str | None:
    """Ratios of each ok cell to the aioc baseline and (network) to the C limit; returns the baseline."""
    baseline = next((b for b in BASELINES if cells.get(b, {}).get("status") == "ok"), None)
    base = cells[baseline] if baseline else {}
    c_cell = cells.get(C_LIMIT, {}) if kind == "net" else {}
    c_ok = c_cell.get("status") == "ok"
    for cell in cells.values():
        if cell.get("status") != "ok":
            continue
        cell["vs_baseline"] = ratio(cell.get("rate"), base.get("rate"))
        cell["cpu_vs_baseline"] = ratio(cell.get("cpu_us_per_op"), base.get("cpu_us_per_op"))
        if c_ok:
            cell["vs_c"] = ratio(cell.get("rate"), c_cell.get("rate"))
            cell["cpu_vs_c"] = ratio(cell.get("cpu_us_per_op"), c_cell.get("cpu_us_per_op"))
    return baseline


def summarize(results: list[dict], workloads: list[Any], contenders: list[Any]) -> dict:
    """``{workload id: {"baseline": name, "cells": {contender: cell}}}`` in report order."""
    summary: dict[str, dict] = {}
    for w in workloads:
        cells: dict[str, dict] = {}
        for c in contenders:
            records = [r for r in results if r["workload"] == w.id and r["contender"] == c.name]
            if records:
                cells[c.name] = summarize_cell(records)
        baseline = add_ratios(cells, w.kind)
        summary[w.id] = {"label": w.label, "kind": w.kind, "unit": w.unit, "idle": w.idle,
                         "baseline": baseline, "cells": cells}
    return summary


#: The goals the streams and TLS workloads check, as ratios of server CPU per request measured
#: side by side in one run: (workload, metric, contender, reference, highest ratio that meets it).
TARGETS = (
    ("streams", "user_us_per_op", "aioc-streams", "uvloop-streams", 0.5),
    ("streams", "user_us_per_op", "aioc-streams", "aioc-compiled", 1.5),
    ("tls", "cpu_us_per_op", "aioc-tls", "uvloop-tls", 0.8),
)

METRIC_NAMES = {"user_us_per_op": "user CPU per request", "cpu_us_per_op": "total CPU per request"}


def targets(results: list[dict], summary: dict) -> list[dict]:
    """Each target of :data:`TARGETS` whose workload ran: its ratio, and whether the ratio meets it.

    The ratio is paired by round: each round measures both servers within
    seconds of each other, so a busy minute on a shared machine weighs on
    both; the median of the rounds' ratios is the target's figure, with
    their spread.  It is None when no round measured both (``reason`` then
    says why).
    """
    checked = []
    for wid, metric, name, reference, limit in TARGETS:
        cells = summary.get(wid, {}).get("cells")
        if cells is None:
            continue
        by_round: dict[tuple[int, str], Any] = {
            (r["round"], r["contender"]): r.get(metric)
            for r in results if r["workload"] == wid and r.get("status") == "ok"
        }
        rounds = sorted({rnd for rnd, _ in by_round})
        ratios = [ratio(by_round.get((rnd, name)), by_round.get((rnd, reference))) for rnd in rounds]
        value = median(ratios)
        low, high = spread(ratios)
        entry = {"workload": wid, "metric": metric, "contender": name, "reference": reference, "limit": limit,
                 "ratio": value, "ratio_min": low, "ratio_max": high,
                 "rounds": sum(r is not None for r in ratios), "met": None if value is None else value <= limit}
        if value is None:
            mine, theirs = cells.get(name, {}), cells.get(reference, {})
            missing = [(n, c) for n, c in ((name, mine), (reference, theirs)) if c.get("status") != "ok"]
            entry["reason"] = "; ".join(f"{n} {c.get('status', 'not run')}: {c.get('reason') or ''}".rstrip(": ")
                                        for n, c in missing) or "no CPU time measured"
        checked.append(entry)
    return checked


def idle_series(summary: dict, workloads: list[Any]) -> dict[str, list[tuple[int, float | None]]]:
    """Per contender, ``[(idle connections, median rate)]`` for the idle series (ka64 is its 0)."""
    points = sorted((w.idle, w.id) for w in workloads
                    if w.kind == "net" and w.mode == "ka64" and w.suite == "plain")
    series: dict[str, list[tuple[int, float | None]]] = {}
    if len(points) < 2:
        return series
    for idle, wid in points:
        for name, cell in summary.get(wid, {}).get("cells", {}).items():
            rate = cell.get("rate") if cell.get("status") == "ok" else None
            series.setdefault(name, []).append((idle, rate))
    return series


def noise(results: list[dict]) -> dict:
    """How busy the machine was: the median and worst ``wait`` over the ok runs."""
    waits = [r["wait"] for r in results if r.get("status") == "ok" and r.get("wait") is not None]
    if not waits:
        return {"median_wait": None, "max_wait": None, "runs": 0}
    return {"median_wait": median(waits), "max_wait": max(waits), "runs": len(waits)}


def document(*, machine: dict, config: dict, contenders: list[Any], workloads: list[Any],
             results: list[dict], summary: dict, notes: list[str], elapsed: float) -> dict:
    return {
        "schema": SCHEMA,
        "machine": machine,
        "config": config,
        "contenders": [
            {"name": c.name, "label": c.label, "family": c.family, "available": c.available, "reason": c.reason}
            for c in contenders
        ],
        "workloads": [
            {"id": w.id, "label": w.label, "kind": w.kind, "unit": w.unit, "mode": w.mode, "idle": w.idle,
             "suite": w.suite}
            for w in workloads
        ],
        "results": results,
        "summary": summary,
        "idle_series": idle_series(summary, workloads),
        "targets": targets(results, summary),
        "noise": noise(results),
        "notes": notes,
        "elapsed_s": elapsed,
    }


def write_json(path: str, doc: dict) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False, default=str)
        f.write("\n")
