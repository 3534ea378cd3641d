#!/usr/bin/env python3
"""Render bench/daemon_results.jsonl (from bench/daemon_suite.sh) as the Markdown tables of
BENCHMARKS.md "## Daemon performance". Usage: python3 bench/daemon_report.py [FILE]"""

import json
import sys


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "bench/daemon_results.jsonl"
    rows = [json.loads(l) for l in open(path) if l.strip()]
    loads = [r for r in rows if r.get("bench") == "load"]
    print("| rollouts × 10 checks | backend | window | canaryd CPU (s, share of 1 core) | CPU ms / analysis "
          "| peak RSS (VmHWM) | queries/s (HTTP requests/s) | analyses/s (expected) | SQLite rows/s | gap between analyses p50 / p99 / max "
          "| late (>11 s) / missed slots | outcomes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in loads:
        s = r["schedule"]
        g = s["gap_s"]
        fmt = lambda v: "–" if v is None else f"{v:.2f}"
        print(f"| {r['rollouts']:,} | {r['backend']} | {r['window_s']:.0f} s | {r['cpu_s']} ({r['cpu_share_of_one_core']:.0%}) "
              f"| {r['cpu_ms_per_analysis']} | {r['peak_rss_mb']} MB | {r['queries_per_s']} ({r.get('requests_per_s', '–')}) "
              f"| {r['analyses_per_s']} ({r['rollouts'] / 10:g}) | {r['sqlite_rows_written_per_s']} "
              f"| {fmt(g['p50'])} / {fmt(g['p99'])} / {fmt(g['max'])} s | {s['late_over_11s']} / {s['missed_slots']} "
              f"| {', '.join(f'{k} {v}' for k, v in r['outcomes'].items())} |")
    print()
    print("| rollouts | backend handler time µs (mean / p50 / p99) | daemon's query histogram: mean, p50 / p99 bucket "
          "| analysis wall ms p50 / p99 | backend busy ms p50 / p99 | beyond backend ms p50 / p99 | last answer → judged ms p50 / p99 "
          "| fake backend CPU s | DB growth | threads CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in loads:
        h = r["daemon_query_histogram"]
        if "latency" in r:
            lat = r["latency"]
            b = r["backend_service_us"]
            two = lambda k: f"{lat[k]['p50']:.2f} / {lat[k]['p99']:.2f}" if lat[k]["p50"] is not None else "–"
            svc = f"{b['mean']} / {b['p50']} / {b['p99']}"
            cols = f"{two('analysis_wall_ms')} | {two('backend_busy_ms')} | {two('beyond_backend_ms')} | {two('last_answer_to_judged_ms')}"
            fake = r["fake_backend_cpu_s"]
        else:
            svc = f"Prometheus mean {r.get('prometheus_mean_service_ms')} ms"
            cols = "– | – | – | –"
            fake = f"Prometheus {r.get('prometheus_cpu_s')}"
        print(f"| {r['rollouts']:,} ({r['backend']}) | {svc} | {h['mean_ms']} ms, ≤{h['p50_bucket_le_s']} s / ≤{h['p99_bucket_le_s']} s "
              f"| {cols} | {fake} | {r['db_growth_bytes_per_s'] / 1e6:.2f} MB/s | {r['threads_cpu_s_total']} |")
    print()
    for r in rows:
        if r.get("bench") == "startup":
            print(f"Start-up, {r['rules']:,} rule files, {r['runs']} runs each: cold (fresh state dir) median "
                  f"{r['cold']['median_ms']} ms, min {r['cold']['min_ms']}, max {r['cold']['max_ms']}; warm (state kept) "
                  f"median {r['warm']['median_ms']} ms, min {r['warm']['min_ms']}, max {r['warm']['max_ms']}; "
                  f"VmHWM just after ready {r['cold']['peak_rss_mb_median']} / {r['warm']['peak_rss_mb_median']} MB.")
        if r.get("bench") == "reaction":
            v = r["verdict_to_actuator_ms"]
            print(f"Reaction, {r['rollouts']} rollouts turned critical, {r['background']} background rollouts: "
                  f"n = {v['n']}, min {v['min']:.1f} ms, median {v['p50']:.1f} ms, max {v['max']:.1f} ms "
                  f"(all: {v['all']}).")


if __name__ == "__main__":
    main()
