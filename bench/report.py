"""The benchmark's figures judged against docs/design.md §6, as Markdown, a chart and a summary.

`judge` turns the raw results of bench/run.py into one line per target: the value,
the target, the ratio, met or not, and whether the value was measured or projected
(a 33-million-record figure without FULL=1 is projected from the sizes measured,
and says so).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Final

import profiling

MIB = 1 << 20
FULL_RECORDS = 33_000_000


def _fit(points: list[tuple[float, float]], x: float) -> float:
    """Least-squares line through `points`, evaluated at x (one point: proportional)."""
    if len(points) == 1:
        (x0, y0), = points
        return y0 * x / x0
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    slope = sum((p[0] - mx) * (p[1] - my) for p in points) / var if var else 0.0
    return my + slope * (x - mx)


def judge(results: dict[str, Any]) -> list[dict[str, Any]]:
    targets = results["targets"]
    verdicts: list[dict[str, Any]] = []

    def add(what: str, value: float, target: float, unit: str, higher_is_better: bool,
            how: str, note: str = "") -> None:
        ratio = value / target if target else math.nan
        met = value >= target if higher_is_better else value <= target
        verdicts.append({"what": what, "value": round(value, 3), "target": target,
                         "unit": unit, "ratio": round(ratio, 3), "met": met, "how": how,
                         "note": note})

    for entry in results["throughput"]:
        rps = entry["median_rps"]
        limit = (f"; the bare lookup, the limit: {entry['limit_ratio']:.3f}"
                 if "limit_ratio" in entry else "")
        if "canned" in rps:
            limit += f"; a real answer without lookup: {rps['canned'] / rps['ceiling']:.3f}"
        add(f"/v1/check req/s vs ceiling, {entry['workers']} worker(s)", entry["ratio"],
            targets["check_ratio"], "x ceiling", True, "measured",
            f"{rps['service']:,} vs {rps['ceiling']:,} req/s{limit}")
    bulk = results["bulk"]
    add("bulk records/s over HTTP, 1 worker", bulk["http_records_per_s"], targets["bulk_rps"],
        "records/s", True, "measured")
    add("bulk HTTP vs in-process rate", bulk["ratio"], targets["bulk_ratio"], "x in-process",
        True, "measured",
        f"{bulk['http_records_per_s']:,} vs {bulk['in_process_records_per_s']:,} records/s")

    builds = [b for b in results["build"] if b.get("records")]
    full = [b for b in builds if b["records"] == FULL_RECORDS]
    if full:
        b = full[0]
        add("build 33M records, wall time", b["wall_s"], targets["build_seconds_33m"], "s",
            False, "measured", f"{b['records_per_s']:,} records/s")
        add("build 33M records, peak memory (PSS of the tree)",
            b["pss_tree_peak_mib"] / 1024, targets["build_peak_gib"], "GiB", False, "measured")
    else:
        largest = max(builds, key=lambda b: b["records"])
        add("build 33M records, wall time", FULL_RECORDS / largest["records_per_s"],
            targets["build_seconds_33m"], "s", False,
            f"projected from {largest['records']:,}",
            f"{largest['records_per_s']:,} records/s; {largest['records_per_cpu_s']:,} "
            "per CPU-second")
        add("build peak memory (PSS of the tree)", largest["pss_tree_peak_mib"] / 1024,
            targets["build_peak_gib"], "GiB", False, f"at {largest['records']:,}",
            "flat in the input size: see the build table")

    starts = results["startup"]
    for workers in ("1w", "2w"):
        points = [(s["records"], s[workers]["ready_s_median"]) for s in starts]
        at_full = [y for x, y in points if x == FULL_RECORDS]
        if at_full:
            add(f"ready on 33M, {workers[0]} worker(s)", at_full[0],
                targets["ready_seconds_33m"], "s", False, "measured")
        elif len(points) > 1:
            add(f"ready on 33M, {workers[0]} worker(s)", _fit(points, FULL_RECORDS),
                targets["ready_seconds_33m"], "s", False, "projected (line through "
                + ", ".join(f"{x / 1e6:g}M" for x, _ in points) + ")")
        else:
            # One size only (a quick run on a fresh clone): start-up is mostly a fixed
            # cost at 1M, so no honest projection exists. Shown, not judged.
            add(f"ready on 33M, {workers[0]} worker(s)", points[0][1],
                targets["ready_seconds_33m"], "s", False,
                "not judged: measured at 1M only; `make bench FULL=1` measures 33M, and "
                "later quick runs reuse its index")
            verdicts[-1]["met"] = None
    for entry in results["throughput"]:
        lat = entry["latency_at_80pct"]["service"]
        add(f"p99 at 80% of peak, {entry['workers']} worker(s)", lat["p99_ms"],
            targets["p99_ms"], "ms", False, "measured",
            f"p50 {lat['p50_ms']} ms at {lat['achieved_rps']:,.0f} req/s, open loop; ceiling "
            f"at that rate p99 {entry['latency_at_80pct']['ceiling']['p99_ms']} ms"
            + _own_80(entry["latency_at_80pct"]))
    largest_start = max(starts, key=lambda s: s["records"])
    worst = max(m["rss_mib"] for m in largest_start["2w"]["memory_after_load"])
    add(f"worker RSS minus Bloom filters, {largest_start['records'] / 1e6:g}M, 2 workers",
        worst - largest_start["bloom_mib"], targets["worker_rss_mib_plus_bloom"], "MiB",
        False, "measured",
        f"RSS {worst:.0f} MiB, Bloom {largest_start['bloom_mib']:.0f} MiB, PSS "
        + "/".join(f"{m['pss_mib']:.0f}" for m in largest_start["2w"]["memory_after_load"]))
    return verdicts


def _fmt(value: float, unit: str) -> str:
    if unit in ("records/s",):
        return f"{value:,.0f}"
    if unit.startswith("x "):
        return f"{value:.3f}"
    return f"{value:,.2f}"


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        "# Benchmark results (docs/design.md §6)", "",
        f"Run `{env['mode']}` on {env['date']}, commit {env['commit']}: {env['cpus']} CPUs "
        f"({env['cpu']}), {env['memory_gib']} GiB; Python {env['python']}, aiohttp "
        f"{env['aiohttp']}, numpy {env['numpy']}, {env['wrk']}. 1-minute load average "
        f"{env['load_at_start']} at the start, {env['load_at_end']} at the end (the machine "
        f"is shared: ratios are of medians measured side by side). {env['wall_seconds']} s.",
        "", "Reproduce: `make bench` (`QUICK=1` for a one-minute run, `FULL=1` for 33M).", "",
        "## Against the targets", "",
        "| target | measured | target | ratio | met | how |", "|---|---:|---:|---:|:-:|---|",
    ]
    for v in results["verdicts"]:
        note = f" ({v['note']})" if v["note"] else ""
        lines.append(
            f"| {v['what']} | {_fmt(v['value'], v['unit'])} {v['unit']} | "
            f"{'≥' if v['what'].startswith(('bulk', '/v1')) else '≤'} "
            f"{_fmt(v['target'], v['unit'])} | {v['ratio']:.2f} | "
            f"{_MET_MD[v['met']]} | {v['how']}{note} |"
        )
    work = results["workload"]
    lines += [
        "", "## Throughput: ceiling vs `POST /v1/check` (wrk, closed loop)", "",
        f"{work['single_check_bodies']:,} member bodies of the 1M synthetic breach in turn "
        f"({work['found_fraction']:.0%} found, {work['strong_fraction']:.0%} by the strong "
        "key); `--anon-rate 0`; wrk -t1, 32 connections per worker. `service` is the "
        "default log level (INFO: one JSON access-log line per request, to a file); "
        "`service-warning` the same without the access log. `limit` is the ceiling's bare "
        "handler doing only what no lookup can skip (decode, normalise, fingerprint, look "
        "up, encode the verdict; bench/ceiling.py `--variant lookup`): the best ratio any "
        "`/v1/check` on this lookup code reaches in this process model. The service's "
        "distance to it is the cost of its features (authentication, rate limit, request "
        "id, security headers, metrics, log). `canned` (one worker) is the ceiling "
        "answering a real verdict of the service's size (`--variant canned`): what the "
        "answer's size costs alone. With one worker, every server runs on one core and "
        "wrk (and the open-loop generator) on the other.", "",
        "| workers | server | req/s (median) | runs | p99 closed loop (ms) | ratio to ceiling |",
        "|---:|---|---:|---|---:|---:|",
    ]
    for entry in results["throughput"]:
        ceiling = entry["median_rps"]["ceiling"]
        for name, runs in entry["runs"].items():
            rps = entry["median_rps"][name]
            p99 = sorted(r.get("p99_ms", 0) for r in runs)[len(runs) // 2]
            lines.append(
                f"| {entry['workers']} | {name} | {rps:,} | "
                + ", ".join(f"{r['rps']:,.0f}" for r in runs)
                + f" | {p99} | {rps / ceiling:.2f} |"
            )
    lines += [
        "", "## Latency at 80% of peak (open loop, bench/openloop.py)", "",
        "The offered rate is 80% of the service's median wrk peak; the ceiling at the same "
        "rate is one control (what the machine, aiohttp and the generator add alone, "
        "lightly loaded); the ceiling at 80% of *its own* peak, over as many windows, is "
        "the other (what 80% load does to the p99 of the most trivial server on this "
        "machine: where it misses 10 ms too, the machine decides the target, not the "
        "service; where it achieves less than it is offered, the generator and the "
        "servers together need more than the machine's cores). Latency runs from each "
        "request's scheduled time, queueing included; "
        "each window follows 2 s of warm-up at the same rate. A server's figure is its "
        "median window (p99 of each window in the last column).", "",
        "| workers | server | offered req/s | achieved | p50 ms | p99 ms | p99.9 ms | max ms "
        "| generator lateness p99 ms | p99 of each window |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for entry in results["throughput"]:
        for name, lat in entry["latency_at_80pct"].items():
            lines.append(
                f"| {entry['workers']} | {_LATENCY_NAMES.get(name, name)} | "
                f"{lat['offered_rps']:,.0f} | "
                f"{lat['achieved_rps']:,.0f} | {lat['p50_ms']} | {lat['p99_ms']} | "
                f"{lat['p999_ms']} | {lat['max_ms']} | {lat['late_ms_p99']} | "
                + ", ".join(str(w["p99_ms"]) for w in lat.get("windows", [lat])) + " |"
            )
    bulk = results["bulk"]
    lines += [
        "", "## Bulk (NDJSON, one worker)", "",
        f"{bulk['records']:,} lines (the member file in turn; about half found), chunks of "
        f"{bulk['chunk_lines']} lines. Over HTTP: `curl --data-binary` to "
        "`/v1/check/batch`, answer streamed to a file. In process: the same records "
        "through the route's own path (`canonical_keys` with one request memo, "
        "`Checker.check_keys` per chunk; the JSON already decoded), then with JSON "
        "decode and encode too.", "",
        "| path | records/s |", "|---|---:|",
        f"| over HTTP (median of {len(bulk['http_runs'])}: "
        + ", ".join(f"{r['records_per_s']:,}" for r in bulk["http_runs"])
        + f") | {bulk['http_records_per_s']:,} |",
        f"| in process: normalise + fingerprint + lookup | {bulk['in_process_records_per_s']:,} |",
        f"| in process, with JSON decode and encode | "
        f"{bulk['in_process_with_json_records_per_s']:,} |",
        "", "## Build (`exposure-index build`, default workers)", "",
        "| records | wall s | records/s | CPU s | records/CPU-s | peak RSS tree MiB | "
        "peak PSS tree MiB | largest process MiB | load before→after | when |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for b in results["build"]:
        when = f"cached, {b.get('measured', '?')}" if b.get("cached") else "this run"
        lines.append(
            f"| {b['records']:,} | {b['wall_s']} | {b['records_per_s']:,} | {b['cpu_s']} | "
            f"{b['records_per_cpu_s']:,} | {b['rss_tree_peak_mib']:,.0f} | "
            f"{b['pss_tree_peak_mib']:,.0f} | {b['maxrss_one_mib']:,.0f} | "
            f"{b['load_before']}→{b['load_after']} | {when} |"
        )
    lines += [
        "", "## Start-up and memory per worker", "",
        "Ready: from exec to every worker having loaded and verified its index and "
        "`/readyz` answering 200. Memory per worker after 1-2 s of /v1/check load; RSS "
        "counts the shared, memory-mapped index pages in each worker, PSS splits them.",
        "", "| records | index MiB | Bloom MiB | workers | ready s (median; runs) | "
        "RSS per worker MiB | PSS per worker MiB |", "|---:|---:|---:|---:|---|---|---|",
    ]
    for s in results["startup"]:
        for workers in ("1w", "2w"):
            w = s[workers]
            lines.append(
                f"| {s['records']:,} | {s['index_mib']} | {s['bloom_mib']} | {workers[0]} | "
                f"{w['ready_s_median']} ({', '.join(str(r) for r in w['ready_s'])}) | "
                + " / ".join(f"{m['rss_mib']:.0f}" for m in w["memory_after_load"]) + " | "
                + " / ".join(f"{m['pss_mib']:.0f}" for m in w["memory_after_load"]) + " |"
            )
    if "profiles" in results:
        lines += ["", "## Where the time goes (py-spy, one worker, INFO)", ""]
        lines += _per_request_costs(results["profiles"])
        for name, title in (("check", "`POST /v1/check` under wrk"),
                            ("check_limit", "the limit (`bench/ceiling.py --variant lookup`) "
                             "under wrk"),
                            ("bulk", "`POST /v1/check/batch`, one NDJSON stream")):
            if name in results["profiles"]:
                lines.append(profiling.render(title, results["profiles"][name]))
    if "private" in results:
        lines += _private_section(results["private"])
    return "\n".join(lines) + "\n"


_LATENCY_NAMES: Final = {"service": "service", "ceiling": "ceiling, same rate",
                         "ceiling_own_80": "ceiling, 80% of its own peak"}


def _own_80(latency: dict[str, Any]) -> str:
    """The machine's control for the p99 target, when the run has it."""
    own = latency.get("ceiling_own_80")
    if own is None:
        return ""
    if own["achieved_rps"] < 0.95 * own["offered_rps"]:
        # The generator shares the cores with the servers: with as many workers as
        # cores, the load can't be offered, let alone answered in time.
        return (f"; ceiling at 80% of its own peak: not reached, {own['achieved_rps']:,.0f} "
                f"of {own['offered_rps']:,.0f} req/s offered, p99 {own['p99_ms']} ms")
    return (f"; ceiling at 80% of its own peak ({own['achieved_rps']:,.0f} req/s) p99 "
            f"{own['p99_ms']} ms")


def _per_request_costs(profiles: dict[str, Any]) -> list[str]:
    """µs per request by area, ceiling vs limit vs service: each profile's shares times
    the time per request wrk measured while it was taken."""
    names = [("check_ceiling", "ceiling"), ("check_limit", "limit"), ("check", "service")]
    if not all(name in profiles and profiles[name].get("rps") for name, _ in names):
        return []
    costs = {}
    for name, _ in names:
        per_request = 1e6 / profiles[name]["rps"]
        costs[name] = {area: pct * per_request / 100 for area, pct in profiles[name]["buckets"]}
    areas = sorted({a for c in costs.values() for a in c}, key=lambda a: -costs["check"].get(a, 0))
    lines = [
        "`POST /v1/check` under wrk, one worker on its own core, each server profiled while "
        "loaded: the share of samples in each area times the time per request measured "
        "meanwhile (under py-spy, so slower than unprofiled; the same for all three). The "
        "limit's extra time in aiohttp and the socket, next to the ceiling's, is what "
        "handling a real answer costs there (bigger bodies, colder caches).", "",
        "| µs per request | ceiling | limit | service |", "|---|---:|---:|---:|",
    ]
    for area in areas:
        lines.append(f"| {area} | " + " | ".join(
            f"{costs[name].get(area, 0):.1f}" for name, _ in names) + " |")
    lines.append("| **total** | " + " | ".join(
        f"**{1e6 / profiles[name]['rps']:.1f}**" for name, _ in names) + " |")
    return [*lines, ""]


def _private_section(p: dict[str, Any]) -> list[str]:
    ops, size, bulk = p["per_core_ops_per_s"], p["bytes_per_check"], p["bulk_checks_per_s"]
    build = p["private_build"]
    return [
        "", f"## Private lookups (docs/design.md §7, `{p['command']}`)", "",
        f"Load average {p['load_before']:.2f} → {p['load_after']:.2f}.", "",
        "| what | figure |", "|---|---:|",
        f"| service `blind_evaluate`, one core | {ops['service_blind_evaluate']:,} "
        "evaluations/s |",
        f"| service work per item (evaluate + padded bucket + hex), one core | "
        f"{ops['service_item_total']:,} items/s |",
        f"| client blind + finalize, one core | {ops['client_blind_plus_finalize']:,} keys/s |",
        f"| bytes per check (strong + weak: 2 items) | request {size['request']:,} B, answer "
        f"{size['response']:,} B ({size['bucket_size']} entries of {size['output_bytes']} "
        "bytes per item) |",
        f"| bulk private checks, in process | {bulk['in_process']:,} checks/s |",
        f"| bulk private checks over HTTP, one worker | "
        f"{bulk['http_loopback_1_worker']:,} checks/s |",
        f"| private build | {build['records_per_s']:,} records/s with {build['workers']} "
        f"workers ({build['breach_hours_at_this_rate']} h for 33 M records) |",
        "", "The client's blinding and finalization bound the bulk rate: the server spends "
        f"~1/{ops['service_item_total']:,} s per item, the client "
        f"~2/{ops['client_blind_plus_finalize']:,} s.",
    ]


_MET: Final = {True: "MET ", False: "MISS", None: "n/a "}
_MET_MD: Final = {True: "yes", False: "**no**", None: "n/a"}


def summary_text(results: dict[str, Any]) -> str:
    lines = [f"docs/design.md §6 targets ({results['environment']['mode']} run, load "
             f"{results['environment']['load_at_start']}→{results['environment']['load_at_end']}"
             f", {results['environment']['cpus']} CPUs):"]
    for v in results["verdicts"]:
        lines.append(
            f"  {_MET[v['met']]}  {v['what']:<52} "
            f"{_fmt(v['value'], v['unit']):>10} {v['unit']:<12} "
            f"target {_fmt(v['target'], v['unit'])}"
            f"  ratio {v['ratio']:.2f}  [{v['how']}]"
        )
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (ax_rps, ax_lat), (ax_build, ax_start) = axes
    entries = results["throughput"]
    # Every server measured at some worker count (`canned` runs with one worker only).
    names = list(dict.fromkeys(name for e in entries for name in e["median_rps"]))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        measured = [e for e in entries if name in e["median_rps"]]
        xs = [e["workers"] + (i - (len(names) - 1) / 2) * width for e in measured]
        ys = [e["median_rps"][name] for e in measured]
        bars = ax_rps.bar(xs, ys, width, label=name)
        if name != "ceiling":
            for bar, e in zip(bars, measured, strict=True):
                ax_rps.annotate(f"{e['median_rps'][name] / e['median_rps']['ceiling']:.0%}",
                                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=8)
    ax_rps.set(title="POST /v1/check vs ceiling (wrk, median)", xlabel="workers",
               ylabel="requests/s", xticks=[e["workers"] for e in entries])
    ax_rps.legend(fontsize=8)

    for i, quantile in enumerate(("p50_ms", "p99_ms")):
        xs = [e["workers"] + (i - 0.5) * 0.35 for e in entries]
        ys = [e["latency_at_80pct"]["service"][quantile] for e in entries]
        ax_lat.bar(xs, ys, 0.35, label=f"/v1/check {quantile[:3]}")
    ax_lat.axhline(results["targets"]["p99_ms"], color="red", linestyle="--",
                   label="p99 target")
    ax_lat.set(title="latency at 80% of peak (open loop)", xlabel="workers", ylabel="ms",
               xticks=[e["workers"] for e in entries])
    ax_lat.legend(fontsize=8)

    builds = sorted(results["build"], key=lambda b: b["records"])
    xs = [b["records"] for b in builds]
    ax_build.plot(xs, [b["records_per_s"] for b in builds], "o-", label="records/s")
    ax_build.axhline(FULL_RECORDS / results["targets"]["build_seconds_33m"], color="red",
                     linestyle="--", label="33M in 5 min")
    ax_build.set(title="build rate and peak memory", xlabel="records", ylabel="records/s",
                 xscale="log")
    twin = ax_build.twinx()
    twin.plot(xs, [b["pss_tree_peak_mib"] for b in builds], "s:", color="gray",
              label="peak PSS MiB")
    twin.set_ylabel("peak PSS of the build (MiB)")
    ax_build.legend(loc="lower left", fontsize=8)
    twin.legend(loc="lower right", fontsize=8)

    starts = sorted(results["startup"], key=lambda s: s["records"])
    xs = [s["records"] for s in starts]
    for workers in ("1w", "2w"):
        ax_start.plot(xs, [s[workers]["ready_s_median"] for s in starts], "o-",
                      label=f"ready s, {workers[0]} worker(s)")
    ax_start.axhline(results["targets"]["ready_seconds_33m"], color="red", linestyle="--",
                     label="ready target (33M)")
    ax_start.set(title="start-up and memory per worker", xlabel="records", ylabel="seconds",
                 xscale="log")
    twin = ax_start.twinx()
    twin.plot(xs, [max(m["rss_mib"] for m in s["2w"]["memory_after_load"]) for s in starts],
              "s:", color="gray", label="RSS per worker MiB")
    twin.plot(xs, [max(m["pss_mib"] for m in s["2w"]["memory_after_load"]) for s in starts],
              "^:", color="black", label="PSS per worker MiB")
    twin.set_ylabel("MiB (2 workers, after load)")
    ax_start.legend(loc="upper left", fontsize=8)
    twin.legend(loc="center right", fontsize=8)

    env = results["environment"]
    fig.suptitle(f"exposure lookup benchmark ({env['mode']}, {env['date']}, {env['cpus']} "
                 f"CPUs, load {env['load_at_start']}→{env['load_at_end']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
