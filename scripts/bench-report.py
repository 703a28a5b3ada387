#!/usr/bin/env python3
"""Turns one benchmark run (docs/bench/results.jsonl) into docs/BENCHMARKS.md and its chart.

Usage: bench-report.py RESULTS.jsonl PAGE_SIZE.txt   (scripts/bench.sh calls it)
"""
import json
import os
import platform
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    ("relay", "ws"): "relay WebSocket",
    ("relay", "sse"): "relay SSE",
    ("relay", "longpoll"): "relay long polling",
    ("relay", "shortpoll"): "relay short polling (1 s)",
    ("relay", "stream"): "relay HTTP streaming",
    ("relay", "webtransport"): "relay WebTransport",
    ("node-peer", "ws"): "Node tutorial server (ws)",
    ("floor", "ws"): "floor (one write per socket)",
}
ORDER = list(LABELS)


def label(run):
    return LABELS[(run["server"], run["transport"])]


def fmt(value, digits=1):
    return "–" if value is None else f"{value:,.{digits}f}"


def median(values):
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def spread(values, digits=2):
    """`median (min–max)` of the values, or `–`."""
    m = median(values)
    if m is None:
        return "–"
    if len(values) == 1:
        return f"{m:,.{digits}f}"
    return f"{m:,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


class Cell:
    """The runs of one server/transport at one load: those that count, and those that do not."""

    def __init__(self, runs):
        self.runs = runs
        self.valid = [r for r in runs if not r.get("flags")]

    def values(self, key):
        return [key(r) for r in self.valid if key(r) is not None]

    def med(self, key):
        return median(self.values(key))

    def cpu(self):
        return self.med(lambda r: r["cpu_us_per_delivery"])


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Linux {platform.release()}; "
            f"{version(['rustc', '--version'])}; Node {version(['node', '--version'])}")


def main(results_path, page_size_path):
    runs = [json.loads(l) for l in open(results_path) if l.strip()]
    fanouts = [r for r in runs if r["mode"] == "fanout"]
    ramps = [r for r in runs if r["mode"] == "ramp"]
    idles = [r for r in runs if r["mode"] == "idle"]
    page = open(page_size_path).read()
    page_kb = re.search(r"page files: (\d+) bytes with Brotli", page)
    page_bytes = int(page_kb.group(1)) if page_kb else None

    out = []
    w = out.append
    w("# Benchmarks\n")
    w("Our relay (six transports) against the tutorial's own server — Node.js, express + `ws`, "
      "forwarding every message to every client — measured **in one run, on one machine**. "
      "Regenerate everything here (tables and chart) with `./scripts/bench.sh`.\n")
    w("## Method\n")
    w(f"- Machine: {machine()}.")
    w("- Load: `relay-bench` (in `bench/`), on the same machine, over loopback. One sender publishes "
      "over WebSocket at a fixed rate from a thread of its own; the receivers, on the transport under "
      "test, are spread over two other threads (one could not read 100 000 deliveries/s on this "
      "machine without saturating). Every message carries its sender, sequence number and send "
      "time, so each receiver checks loss, duplicates and order and measures one-way latency (send → "
      "receive) on one clock.")
    w("- The tool checks itself: it reports its own CPU per delivery, how late its sender ran and the "
      "share of a core its busiest receiving thread used. A run where the sender fell behind (sent < 98 % of "
      "the rate, or p99 tick lateness > 20 ms), a receiving thread was saturated (> 90 % of a core) "
      "or anything was lost, duplicated or reordered is flagged and **not averaged in**.")
    w("- Server CPU: user + system time of the server process (from `/proc/PID/stat`) over the "
      "measured window, divided by the messages delivered in it. The tool shares the machine's two "
      "cores, and a `write` that wakes a sleeping reader costs more than one that does not, so "
      "absolute figures move with the load's shape; ratios between servers measured the same way in "
      "the same run are what to read.")
    w("- **The floor** (`relay-bench floor`): one thread, edge-triggered epoll, just enough WebSocket "
      "to accept the tool's clients; each message is framed once and the same bytes are written to "
      "every socket with one non-blocking `write` (the rest, if any, when epoll says the socket is "
      "writable). Nothing else — no ids, history, limits, timers or logs — so its CPU per delivery is "
      "what a delivery physically costs on this machine and kernel.")
    w("- Each measurement gets a fresh server process; the repetitions are interleaved (one of every "
      "server and load, then the next). Warm-up is excluded; receivers keep reading 3 s after the last "
      "send to collect messages in flight.")
    w("- Short polling polls every 1 s, so its latency is the interval by design; it is in the "
      "fixed-load tables but not ramped (any p99 threshold below the interval fails at once).\n")
    w("Commands (what `scripts/bench.sh` runs, with fresh servers in between):\n")
    w("```sh")
    w("relay-bench floor --addr 127.0.0.1:0                                   # prints its address")
    w("relay-bench fanout --floor --url FLOOR_URL --pid FLOOR_PID --receivers R --rate M --duration 6 --warmup 2 --receiver-threads 2")
    w("relay-bench fanout --peer --url PEER_URL --pid PEER_PID --receivers R --rate M --duration 6 --warmup 2 --receiver-threads 2")
    w("relay-bench fanout --url URL --pid PID --transport T --receivers R --rate M --duration 6 --warmup 2 --receiver-threads 2")
    w("#   R × M = 100 × 1000, 1000 × 100, 1000 × 50; three repetitions, interleaved")
    w("relay-bench ramp --url URL --pid PID --transport T --receivers 100 --rate 200 --factor 1.5 --max-p99-ms 100 --duration 4 --receiver-threads 2")
    w("relay-bench idle --url URL --pid PID --transport T --connections 10000 --settle 3")
    w("```\n")

    loads = sorted({(r["receivers"], r["rate"]) for r in fanouts}, key=lambda x: (x[0], -x[1]))
    cells = {}
    for load in loads:
        for key in ORDER:
            runs = [r for r in fanouts if (r["receivers"], r["rate"]) == load and (r["server"], r["transport"]) == key]
            if runs:
                cells[(load, key)] = Cell(runs)
    w("Figures are **medians over the runs that count** (nothing lost, duplicated or reordered; the "
      "tool sent what was asked and its receiving thread was not saturated), with the range "
      "(min–max) in brackets; *runs* says how many counted of how many made, and why the others did "
      "not. *× floor* divides by the floor program's median at the same load, *× Node* by the Node "
      "server's; both were measured in the same run. *Tool CPU* is the load tool's own CPU per "
      "delivery (all its threads).\n")
    for load in loads:
        floor = cells.get((load, ("floor", "ws")))
        peer = cells.get((load, ("node-peer", "ws")))
        floor_cpu, peer_cpu = floor and floor.cpu(), peer and peer.cpu()
        w(f"## {load[0]} receivers × {load[1]:.0f} msg/s ({load[0] * load[1]:,.0f} deliveries/s offered)\n")
        w("| server / transport | runs | delivered/s | p50 ms | p99 ms | max ms | lost | server CPU µs/delivery | × floor | × Node | tool CPU µs/delivery |")
        w("|---|---|---|---|---|---|---|---|---|---|---|")
        for key in ORDER:
            cell = cells.get((load, key))
            if not cell:
                continue
            flags = sorted({f for r in cell.runs for f in r.get("flags", [])})
            runs = f"{len(cell.valid)}/{len(cell.runs)}" + (f" ({', '.join(flags)})" if flags else "")
            cpu = cell.cpu()
            # A cell with no counted run shows its raw figures, marked, so that a loss is visible.
            shown = cell if cell.valid else Cell([dict(r, flags=[]) for r in cell.runs])
            mark = "" if cell.valid else " ✗"
            cpu_all = shown.values(lambda r: r["cpu_us_per_delivery"])
            w(f"| {LABELS[key]} | {runs} | {fmt(shown.med(lambda r: r['delivered_per_s']), 0)}{mark} | "
              f"{fmt(shown.med(lambda r: r['latency_ms']['p50']), 2)} | {spread(shown.values(lambda r: r['latency_ms']['p99']), 1)}{mark} | "
              f"{fmt(shown.med(lambda r: r['latency_ms']['max']), 1)} | {sum(r['lost'] for r in cell.runs):,} | "
              f"{spread(cpu_all)}{mark} | "
              f"{'–' if not (cpu and floor_cpu) else f'{cpu / floor_cpu:.2f}×'} | "
              f"{'–' if not (cpu and peer_cpu) else f'{cpu / peer_cpu:.2f}×'} | "
              f"{fmt(shown.med(lambda r: r.get('tool_cpu_us_per_delivery')), 2)} |")
        w("")

    w("## Highest sustained rate (100 receivers, p99 ≤ 100 ms, nothing lost)\n")
    w("| server / transport | sustained deliveries/s | at send rate msg/s | steps | stopped by |")
    w("|---|---|---|---|---|")
    for r in ramps:
        first, last = r["steps"][0], r["steps"][-1]
        if r.get("generator_limited"):
            why = "the load tool (server not saturated)"
        elif last["lost"]:
            why = f"loss ({last['lost']:,} messages)"
        else:
            why = f"p99 {last['latency_ms']['p99']:.0f} ms"
        w(f"| {label(first)} | {fmt(r['sustained_delivered_per_s'], 0)} | {fmt(r['sustained_rate'], 0)} | {len(r['steps'])} | {why} |")
    w("")

    w("## Memory per idle connection\n")
    w("| server / transport | connections | RSS before KiB | RSS after KiB | bytes per connection |")
    w("|---|---|---|---|---|")
    for r in idles:
        name = LABELS[(r["server"], r["transport"])]
        w(f"| {name} | {r['connections']:,} | {r['rss_before_kib']:,} | {r['rss_after_kib']:,} | {fmt(r['bytes_per_connection'], 0)} |")
    w("")

    w("## p99 latency against load\n")
    w("![p99 latency against delivered rate, per transport](bench/p99.png)\n")
    plt.figure(figsize=(8, 4.5))
    for r in ramps:
        steps = r["steps"]
        plt.plot([s["delivered_per_s"] for s in steps], [max(s["latency_ms"]["p99"], 0.01) for s in steps],
                 marker="o", label=label(steps[0]))
    plt.axhline(100, color="grey", linestyle="--", linewidth=0.8)
    plt.xscale("log")
    plt.yscale("log")
    plt.xlabel("delivered messages per second (100 receivers)")
    plt.ylabel("p99 one-way latency (ms)")
    plt.title("p99 latency against load (ramp steps; dashed: 100 ms threshold)")
    plt.grid(True, which="both", alpha=0.3)
    plt.legend()
    plt.tight_layout()
    plt.savefig(os.path.join(os.path.dirname(results_path), "p99.png"), dpi=110)

    w("## The page\n")
    if page_bytes:
        w(f"The release build's files with Brotli (HTML + JS + wasm + CSS): **{page_bytes / 1000:.0f} KB** "
          f"({page_bytes:,} bytes), from `./scripts/build-page.sh`. What a browser transfers, headers "
          f"included, is measured in the browser: see *The page's first load* under *Analysis*.\n")

    w("## Targets\n")
    cpu_at = lambda load, server, transport: (cells.get((load, (server, transport))) or Cell([])).cpu()
    p99_at = lambda load, transport: (cells.get((load, ("relay", transport))) or Cell([])).med(lambda r: r["latency_ms"]["p99"])
    idle_of = lambda server, transport: next((r for r in idles if r["server"] == server and r["transport"] == transport), None)
    rows = []
    batch, single = (100, 1000.0), (1000, 100.0)
    node = cpu_at(batch, "node-peer", "ws")
    for transport, share in (("ws", 0.5), ("sse", 0.6)):
        ours = cpu_at(batch, "relay", transport)
        if ours and node:
            rows.append((f"100 × 1000: {transport.upper()} CPU per delivery ≤ {share}× Node's", f"{ours / node:.2f}× ({ours:.2f} vs {node:.2f} µs)", ours <= share * node))
    floor = cpu_at(single, "floor", "ws")
    for transport in ("ws", "sse"):
        ours = cpu_at(single, "relay", transport)
        if ours and floor:
            rows.append((f"1000 × 100: {transport.upper()} CPU per delivery ≤ 1.15× the floor", f"{ours / floor:.2f}× ({ours:.2f} vs {floor:.2f} µs)", ours <= 1.15 * floor))
    for load in (batch, single):
        lp, ws = cpu_at(load, "relay", "longpoll"), cpu_at(load, "relay", "ws")
        if lp and ws:
            rows.append((f"{load[0]} × {load[1]:.0f}: long polling ≤ 2× our WebSocket", f"{lp / ws:.2f}×", lp <= 2 * ws))
    for load in (batch, single):
        stream, sse = cpu_at(load, "relay", "stream"), cpu_at(load, "relay", "sse")
        if stream and sse:
            rows.append((f"{load[0]} × {load[1]:.0f}: HTTP streaming CPU per delivery ≤ 1.2× SSE's", f"{stream / sse:.2f}× ({stream:.2f} vs {sse:.2f} µs)", stream <= 1.2 * sse))
    reported = []
    for load in (batch, single):
        wt, ws = cpu_at(load, "relay", "webtransport"), cpu_at(load, "relay", "ws")
        if wt and ws:
            reported.append((f"{load[0]} × {load[1]:.0f}: WebTransport CPU per delivery against our WebSocket", f"{wt / ws:.2f}× ({wt:.2f} vs {ws:.2f} µs)"))
    for transport in ("stream", "webtransport"):
        r = idle_of("relay", transport)
        if r:
            reported.append((f"RSS per idle {transport} connection at {r['connections']:,}", f"{r['bytes_per_connection'] / 1024:.1f} KiB"))
    for transport in ("ws", "sse"):
        p99 = p99_at(single, transport)
        cell = cells.get((single, ("relay", transport)))
        lost = cell and sum(r["lost"] for r in cell.runs)
        if p99 is not None:
            rows.append((f"1000 × 100: {transport.upper()} p99 ≤ 10 ms, nothing lost", f"{p99:.1f} ms, {lost} lost", p99 <= 10 and not lost))
    for transport, kib_max in (("ws", 4), ("sse", 8), ("longpoll", 8)):
        r = idle_of("relay", transport)
        if r:
            kib = r["bytes_per_connection"] / 1024
            rows.append((f"≤ {kib_max} KiB RSS per idle {transport} connection at {r['connections']:,}", f"{kib:.1f} KiB", kib <= kib_max))
    if page_bytes:
        rows.append(("Page files ≤ 100 KB with Brotli", f"{page_bytes / 1000:.0f} KB", page_bytes <= 100_000))
    w("| target | measured | met |")
    w("|---|---|---|")
    for name, measured, met in rows:
        w(f"| {name} | {measured} | {'yes' if met else '**no**'} |")
    for name, measured in reported:
        w(f"| {name} | {measured} | reported (no target) |")
    w("")
    w("Where a target is missed, see *Analysis* below.\n")
    w("## Analysis\n")
    w("<!-- analysis -->\n")

    path = "docs/BENCHMARKS.md"
    analysis = ""
    if os.path.exists(path):
        old = open(path).read()
        if "<!-- analysis -->" in old:
            analysis = old.split("<!-- analysis -->", 1)[1]
    text = "\n".join(out).replace("<!-- analysis -->\n", "<!-- analysis -->" + (analysis or "\n(to be written after a run)\n"))
    open(path, "w").write(text)
    print(f"wrote {path} and {os.path.dirname(results_path)}/p99.png")


if __name__ == "__main__":
    main(*sys.argv[1:3])
