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
    ("node-peer", "ws"): "Node tutorial server (ws)",
}


def label(run):
    return LABELS[(run["server"], run["transport"])]


def fmt(value, digits=1):
    return "–" if value is None else f"{value:,.{digits}f}"


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
    page_kb = re.search(r"page first load: (\d+) bytes", page)
    page_bytes = int(page_kb.group(1)) if page_kb else None

    out = []
    w = out.append
    w("# Benchmarks\n")
    w("Our relay (four transports) against the tutorial's own server — Node.js, express + `ws`, "
      "forwarding every message to every client — measured **in one run, on one machine**. "
      "Regenerate everything here (tables and chart) with `./scripts/bench.sh`.\n")
    w("## Method\n")
    w(f"- Machine: {machine()}.")
    w("- Load: `relay-bench` (in `bench/`), on the same machine, over loopback. Senders publish over "
      "WebSocket at a fixed total rate; receivers listen on the transport under test; every message "
      "carries its sender, sequence number and send time, so each receiver checks loss, duplicates "
      "and order and measures one-way latency (send → receive) on one clock.")
    w("- Server CPU: user + system time of the server process (from `/proc/PID/stat`) over the "
      "measured window, divided by the messages delivered in it. The load tool competes with the "
      "server for the same two cores, so absolute figures are pessimistic; the ratios between "
      "servers, measured the same way in the same run, are what to read.")
    w("- Each measurement gets a fresh server process. Warm-up is excluded; receivers keep reading "
      "3 s after the last send to collect messages in flight.")
    w("- Short polling polls every 1 s, so its latency is the interval by design; it is in the "
      "fixed-load tables but not ramped (any p99 threshold below the interval fails at once).\n")
    w("Commands (what `scripts/bench.sh` runs, with fresh servers in between):\n")
    w("```sh")
    w("relay-bench fanout --url URL --pid PID --transport T --receivers 100 --rate 1000 --duration 8 --warmup 2")
    w("relay-bench fanout --url URL --pid PID --transport T --receivers 1000 --rate 100 --duration 8 --warmup 2")
    w("relay-bench fanout --peer --url PEER_URL --pid PEER_PID --receivers 100 --rate 1000 ...")
    w("relay-bench ramp --url URL --pid PID --transport T --receivers 100 --rate 200 --factor 1.5 --max-p99-ms 100 --duration 4")
    w("relay-bench idle --url URL --pid PID --transport T --connections 10000 --settle 3")
    w("```\n")

    peer_cpu = {}
    for load in sorted({(r["receivers"], r["rate"]) for r in fanouts}, key=lambda x: -x[1]):
        rows = [r for r in fanouts if (r["receivers"], r["rate"]) == load]
        peer = next((r for r in rows if r["server"] == "node-peer"), None)
        peer_cpu[load] = peer and peer["cpu_us_per_delivery"]
        w(f"## {load[0]} receivers × {load[1]:.0f} msg/s ({load[0] * load[1]:,.0f} deliveries/s offered)\n")
        w("| server / transport | delivered/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | lost | dup | reordered | server CPU µs/delivery | CPU vs Node |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            lat = r["latency_ms"]
            ratio = (r["cpu_us_per_delivery"] / peer_cpu[load]) if peer_cpu[load] and r["cpu_us_per_delivery"] else None
            w(f"| {label(r)} | {fmt(r['delivered_per_s'], 0)} | {fmt(lat['p50'], 2)} | {fmt(lat['p90'], 2)} | "
              f"{fmt(lat['p99'], 2)} | {fmt(lat['p999'], 2)} | {fmt(lat['max'], 2)} | {r['lost']:,} | "
              f"{r['duplicated']} | {r['out_of_order']} | {fmt(r['cpu_us_per_delivery'], 2)} | "
              f"{'–' if ratio is None else f'{ratio:.2f}×'} |")
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
        w(f"First load of the release build, gzipped (HTML + JS + wasm + CSS): **{page_bytes / 1000:.0f} KB** "
          f"({page_bytes:,} bytes), from `./scripts/build-page.sh`.\n")

    w("## Targets\n")
    hi = (100, 1000.0)
    by = lambda server, transport, load=hi: next((r for r in fanouts if r["server"] == server and r["transport"] == transport and (r["receivers"], r["rate"]) == load), None)
    ramp_of = lambda server, transport: next((r for r in ramps if r["steps"][0]["server"] == server and r["steps"][0]["transport"] == transport), None)
    idle_of = lambda server, transport: next((r for r in idles if r["server"] == server and r["transport"] == transport), None)
    rows = []
    ws, sse, lp, peer = by("relay", "ws"), by("relay", "sse"), by("relay", "longpoll"), by("node-peer", "ws")
    def cpu(r):
        return r and r["cpu_us_per_delivery"]
    if cpu(ws) and cpu(peer):
        rows.append(("WebSocket CPU per delivered message ≤ 1/3 of Node's", f"{cpu(ws) / cpu(peer):.2f}× ({cpu(ws):.2f} vs {cpu(peer):.2f} µs)", cpu(ws) <= cpu(peer) / 3))
    rw, rp = ramp_of("relay", "ws"), ramp_of("node-peer", "ws")
    if rw and rp and rp["sustained_delivered_per_s"]:
        ratio = rw["sustained_delivered_per_s"] / rp["sustained_delivered_per_s"]
        rows.append(("WebSocket highest sustained rate ≥ 3× Node's", f"{ratio:.2f}× ({rw['sustained_delivered_per_s']:,.0f} vs {rp['sustained_delivered_per_s']:,.0f}/s)", ratio >= 3))
    if ws and peer:
        rows.append(("WebSocket p99 at 100 × 1000 msg/s no worse than Node's", f"{ws['latency_ms']['p99']:.2f} vs {peer['latency_ms']['p99']:.2f} ms", ws["latency_ms"]["p99"] <= peer["latency_ms"]["p99"]))
    if cpu(sse) and cpu(peer):
        rows.append(("SSE CPU per delivered message ≤ 1/2 of Node's", f"{cpu(sse) / cpu(peer):.2f}×", cpu(sse) <= cpu(peer) / 2))
    if cpu(lp) and cpu(ws):
        rows.append(("Long polling within 2× our WebSocket's CPU per message", f"{cpu(lp) / cpu(ws):.2f}×", cpu(lp) <= 2 * cpu(ws)))
    for transport in ("ws", "sse"):
        r = idle_of("relay", transport)
        if r:
            kib = r["bytes_per_connection"] / 1024
            rows.append((f"≤ 8 KiB RSS per idle {transport.upper()} connection at {r['connections']:,}", f"{kib:.1f} KiB", kib <= 8))
    if page_bytes:
        rows.append(("Page ≤ 90 KB gzipped", f"{page_bytes / 1000:.0f} KB", page_bytes <= 90_000))
    w("| target | measured | met |")
    w("|---|---|---|")
    for name, measured, met in rows:
        w(f"| {name} | {measured} | {'yes' if met else '**no**'} |")
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
