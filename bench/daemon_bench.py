#!/usr/bin/env python3
"""Daemon performance benchmarks for canaryd (standard library only).

Subcommands (each bounded in time, binding only 127.0.0.1, cleaning up its processes):

  load ROLLOUTS SECONDS [--backend fake|prometheus] [--scrape SECONDS]
      One `canaryd serve` with ROLLOUTS rule files x 10 checks, `every = "10s"`, against the fake
      backend (examples/fake_prometheus.rs) or a real /usr/bin/prometheus fed by promtool
      backfill plus scraping the fake's /metrics. Measures, over SECONDS after READY=1: canaryd
      CPU (user+sys from /proc/PID/stat), peak RSS (VmHWM), queries/s, SQLite rows written/s,
      analysis spacing (late/missed schedules), analysis latency beyond the backend. /metrics is
      scraped every 15 s meanwhile (--scrape), as a Prometheus watching canaryd would.
  reaction [ROLLOUTS] [--background N]
      ROLLOUTS rollouts (every 2s, webhook actuator pointed at the fake) turned critical one at a
      time; time from the backend's last answer of the analysis holding the critical data to the
      webhook call setting the weight to 0. --background adds N passing rollouts (every 10s).
  startup [RULES] [RUNS]
      exec -> READY=1 (received on a NOTIFY_SOCKET datagram socket made here), RULES rule files,
      RUNS runs with a fresh state dir (cold) and RUNS with the state kept (warm).

Binaries: $CANARYD (default target/release/canaryd) and $FAKE_PROMETHEUS (default
target/release/examples/fake_prometheus). Results are printed as JSON on stdout (last line).
"""

import argparse
import csv
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANARYD = os.environ.get("CANARYD", os.path.join(ROOT, "target/release/canaryd"))
FAKE = os.environ.get(
    "FAKE_PROMETHEUS", os.path.join(ROOT, "target/release/examples/fake_prometheus")
)
PROMETHEUS = os.environ.get("PROMETHEUS", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("PROMTOOL", "/usr/bin/promtool")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# The tables rows are inserted into, with the column holding when.
TIMESTAMPS = {"analyses": "at", "audit": "at", "intents": "created_at", "outbox": "created_at"}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, data=None, timeout=30):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode()


def cpu_seconds(pid):
    """user+sys seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def threads_cpu(pid):
    """CPU seconds by thread name."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def io_bytes(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                k, v = line.split(":")
                out[k] = int(v)
    except OSError:
        pass
    return out


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, round((len(s) - 1) * p))]


class Procs:
    """Processes started here, stopped on exit (SIGTERM, then SIGKILL after a grace period)."""

    def __init__(self):
        self.procs = []

    def start(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, grace=10):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)


def start_fake(procs, expose=0):
    p = procs.start(
        [FAKE, "--listen", "127.0.0.1:0", "--expose", str(expose)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = p.stdout.readline().strip()
    if not line.startswith("listening "):
        raise SystemExit(f"fake_prometheus did not start: {line!r}")
    return p, line.split(" ", 1)[1]


CHECKS = """
[[checks]]
name = "c0"
kind = "absolute"
threshold = 1.0
aggregate = "max"
critical = true
action = "rollback"
query = 'bench_value{{rollout="{name}",check="c0",side="{{{{side}}}}"}}'
window = "10m"
min_samples = 10
"""
RELATIVE = """
[[checks]]
name = "c{i}"
kind = "relative"
tolerance = 0.10
query = 'bench_value{{rollout="{name}",check="c{i}",side="{{{{side}}}}"}}'
window = "10m"
min_samples = 10
"""
ERRORS = """
[[checks]]
name = "c{i}"
kind = "error-rate"
tolerance = 0.01
errors_query = 'bench_errors{{rollout="{name}",check="c{i}",side="{{{{side}}}}"}}'
total_query = 'bench_total{{rollout="{name}",check="c{i}",side="{{{{side}}}}"}}'
window = "10m"
"""


def rule_text(name, every, actuator):
    text = f"""[rollout]
name = "{name}"
team = "bench"
source = "prometheus"
actuator = "{actuator}"
rollback_to = "zero"

[analysis]
every = "{every}"
warmup = "0s"
max_inconclusive = 3

[[stages]]
name = "10%"
weight = 10
min_duration = "24h"
required_passes = 1

[[stages]]
name = "100%"
weight = 100

[sides]
baseline = "base"
canary = "canary"
"""
    # 10 checks: 1 critical absolute, 7 relative, 2 error-rate: 24 queries per analysis.
    text += CHECKS.format(name=name)
    for i in range(1, 8):
        text += RELATIVE.format(name=name, i=i)
    for i in (8, 9):
        text += ERRORS.format(name=name, i=i)
    return text


def write_world(dirname, backend_url, webhook_url, rollouts):
    """Config and rule files; rollouts = [(name, every, actuator)]."""
    for d in ("rules", "state"):
        os.makedirs(os.path.join(dirname, d), exist_ok=True)
    port = free_port()
    config = f"""state_dir = "{dirname}/state"
rules_dir = "{dirname}/rules"
emergency_stop_file = "{dirname}/stop"

[server]
listen = "127.0.0.1:{port}"

[log]
format = "text"
level = "info"

[scheduler]
max_concurrent_queries = 8
backend_error_limit = 3

[sources.prometheus]
kind = "prometheus"
url = "{backend_url}"
timeout = "10s"

[actuators.builtin]
kind = "builtin"

[actuators.webhook]
kind = "webhook"
url = "{webhook_url}"
timeout = "2s"
"""
    path = os.path.join(dirname, "canaryd.toml")
    with open(path, "w") as f:
        f.write(config)
    for name, every, actuator in rollouts:
        with open(os.path.join(dirname, "rules", f"{name}.toml"), "w") as f:
            f.write(rule_text(name, every, actuator))
    return path, f"http://127.0.0.1:{port}"


def start_canaryd(procs, config, dirname, timeout=120):
    """Start canaryd with a NOTIFY_SOCKET; returns (proc, seconds from exec to READY=1)."""
    sock_path = os.path.join(dirname, f"notify-{time.monotonic_ns()}.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.2)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path)
    env.pop("RUST_LOG", None)
    logf = open(os.path.join(dirname, "canaryd.log"), "ab")
    t0 = time.perf_counter()
    p = procs.start([CANARYD, "serve", "--config", config], env=env, stdout=logf, stderr=logf)
    deadline = t0 + timeout
    try:
        while True:
            try:
                msg = sock.recv(4096).decode(errors="replace")
            except socket.timeout:
                msg = ""
            if any(line == "READY=1" for line in msg.splitlines()):
                return p, time.perf_counter() - t0
            if p.poll() is not None:
                raise SystemExit(f"canaryd exited with {p.returncode}; see {dirname}/canaryd.log")
            if time.perf_counter() > deadline:
                raise SystemExit(f"canaryd not ready after {timeout}s")
    finally:
        sock.close()
        os.unlink(sock_path)


def rows_between(db, t_from_ms, t_to_ms):
    """Rows each table gained between two times, by their own timestamps. The database is the
    daemon's alone while it runs (SQLite's unix-excl VFS), so this reads it after it stopped."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t} WHERE {col} BETWEEN ? AND ?",
                                (t_from_ms, t_to_ms)).fetchone()[0]
                for t, col in TIMESTAMPS.items()}
    finally:
        conn.close()


def analyses_rows(db):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT rollout, at, outcome FROM analyses ORDER BY rollout, id").fetchall()
    finally:
        conn.close()


def db_bytes(state):
    return sum(
        os.path.getsize(os.path.join(state, f))
        for f in os.listdir(state)
        if f.startswith("canaryd.db")
    )


def histogram(metrics_text, name):
    """(buckets [(le, cumulative)], sum, count) of a histogram summed over its label sets."""
    buckets, total, count = {}, 0.0, 0
    for line in metrics_text.splitlines():
        if line.startswith(name + "_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] = buckets.get(le, 0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count"):
            count += int(float(line.rsplit(" ", 1)[1]))
    order = sorted(buckets.items(), key=lambda kv: float("inf") if kv[0] == "+Inf" else float(kv[0]))
    return order, total, count


def hist_quantile(buckets, q):
    """Upper bound of the bucket holding quantile q (the histogram's resolution)."""
    if not buckets:
        return None
    total = buckets[-1][1]
    for le, c in buckets:
        if c >= q * total:
            return le
    return "+Inf"


def spacing_report(rows, t_from_ms, t_to_ms, every_s):
    by = {}
    for rollout, at, _ in rows:
        by.setdefault(rollout, []).append(at)
    gaps, late, missed = [], 0, 0
    in_window = 0
    for ats in by.values():
        ats.sort()
        for a, b in zip(ats, ats[1:]):
            if b < t_from_ms or b > t_to_ms:
                continue
            g = (b - a) / 1000
            gaps.append(g)
            if g > every_s * 1.1:
                late += 1
            if g >= every_s * 1.5:
                missed += round(g / every_s) - 1
        in_window += sum(1 for a in ats if t_from_ms <= a <= t_to_ms)
    return {
        "analyses_in_window": in_window,
        "gap_s": {
            "min": min(gaps) if gaps else None,
            "p50": pct(gaps, 0.5),
            "p99": pct(gaps, 0.99),
            "max": max(gaps) if gaps else None,
            "mean": statistics.fmean(gaps) if gaps else None,
        },
        "late_over_11s": late,
        "missed_slots": missed,
        "gaps": len(gaps),
    }


def latency_report(rows, bursts, t_from_ms, t_to_ms):
    """Join each analysis row (its `at`, ms) with the burst of backend queries just before it."""
    by = {}
    for b in bursts:
        by.setdefault(b["rollout"], []).append(b)
    for v in by.values():
        v.sort(key=lambda b: b["first"])
    wall, beyond, after_last, busy = [], [], [], []
    for rollout, at, _ in rows:
        if not (t_from_ms <= at <= t_to_ms):
            continue
        at_us = at * 1000
        cands = [b for b in by.get(rollout, []) if b["first"] <= at_us + 1000]
        if not cands:
            continue
        b = cands[-1]
        w = (at_us - b["first"]) / 1000
        if w < -1 or w > 10_000:
            continue
        wall.append(w)
        busy.append(b["busy"] / 1000)
        beyond.append(max(0.0, w - b["busy"] / 1000))
        after_last.append((at_us - b["last"]) / 1000)

    def summary(v):
        return {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "max": max(v) if v else None, "n": len(v)}

    return {
        "analysis_wall_ms": summary(wall),
        "backend_busy_ms": summary(busy),
        "beyond_backend_ms": summary(beyond),
        "last_answer_to_judged_ms": summary(after_last),
    }


def parse_bursts(text):
    out = []
    for r in csv.DictReader(io.StringIO(text)):
        out.append(
            {
                "rollout": r["rollout"],
                "first": int(r["first_arrival_us"]),
                "last": int(r["last_end_us"]),
                "busy": int(r["busy_us"]),
                "queries": int(r["queries"]),
                "critical": r["critical"] == "1",
            }
        )
    return out


def start_prometheus(procs, dirname, fake_url, rollouts):
    """A real Prometheus on 127.0.0.1 with 15 min of backfilled data, scraping the fake."""
    data = os.path.join(dirname, "prom-data")
    os.makedirs(data)
    now = int(time.time())
    host = fake_url.split("//", 1)[1]
    om = os.path.join(dirname, "backfill.om")
    with open(om, "w") as f:
        for metric in ("bench_value", "bench_errors", "bench_total"):
            f.write(f"# TYPE {metric} gauge\n")
            for r in range(rollouts):
                for c in range(10):
                    for side in ("base", "canary"):
                        for t in range(now - 900, now - 5, 10):
                            if metric == "bench_value":
                                v = 0.1 * (1 + c) * (1 + 0.02 * (((t * 7919 + r * 31 + c * 7 + len(side)) % 200) / 100 - 1))
                            elif metric == "bench_errors":
                                v = 5 + ((t // 10 + r + c + len(side)) % 5) - 2
                            else:
                                v = 1000
                            f.write(f'{metric}{{instance="{host}",job="bench",rollout="r{r:05d}",check="c{c}",side="{side}"}} {v} {t}\n')
        f.write("# EOF\n")
    subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", om, data],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    host = fake_url.split("//", 1)[1]
    cfg = os.path.join(dirname, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write(f"""global:
  scrape_interval: 5s
scrape_configs:
  - job_name: bench
    static_configs:
      - targets: ["{host}"]
""")
    logf = open(os.path.join(dirname, "prometheus.log"), "ab")
    p = procs.start([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                     f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d"],
                    stdout=logf, stderr=logf)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            http(url + "/-/ready", timeout=1)
            return p, url
        except Exception:
            time.sleep(0.1)
    raise SystemExit("prometheus did not become ready")


def prom_scalar(url, name):
    """Sum of Prometheus's own metric `name` for the query_range handler, from its /metrics."""
    total = 0.0
    for line in http(url + "/metrics").splitlines():
        if line.startswith(name + "{") and 'handler="/api/v1/query_range"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def cmd_load(a):
    procs = Procs()
    dirname = tempfile.mkdtemp(prefix="canaryd-load-")
    out = {"bench": "load", "rollouts": a.rollouts, "seconds": a.seconds, "backend": a.backend,
           "checks": 10, "queries_per_analysis": 24, "every_s": 10}
    try:
        fake, fake_url = start_fake(procs, expose=a.rollouts if a.backend == "prometheus" else 0)
        backend = fake_url
        prom = None
        if a.backend == "prometheus":
            prom, backend = start_prometheus(procs, dirname, fake_url, a.rollouts)
            time.sleep(6)  # one scrape of fresh data
        names = [(f"r{i:05d}", "10s", "builtin") for i in range(a.rollouts)]
        config, api = write_world(dirname, backend, fake_url + "/webhook", names)
        daemon, ready_s = start_canaryd(procs, config, dirname)
        out["ready_s"] = ready_s
        out["rss_mb_at_ready"] = round(status_kb(daemon.pid, "VmRSS") / 1024, 1)
        db = os.path.join(dirname, "state", "canaryd.db")
        # Let the first analyses start before the window opens (rollouts start, first commit).
        time.sleep(min(15, a.seconds / 4))
        t_from = time.time()
        c0, f0, io0 = cpu_seconds(daemon.pid), cpu_seconds(fake.pid), io_bytes(daemon.pid)
        p_cpu0 = cpu_seconds(prom.pid) if prom else None
        size0 = db_bytes(os.path.join(dirname, "state"))
        stats0 = json.loads(http(fake_url + "/stats")) if not prom else None
        q0 = stats0["queries"] if stats0 else prom_scalar(backend, "prometheus_http_requests_total")
        r0 = stats0["requests"] if stats0 else q0
        rss = []
        scrapes = []  # (seconds, bytes) of each /metrics scrape, as Prometheus would make them
        next_scrape = t_from if a.scrape > 0 else float("inf")
        end = t_from + a.seconds
        while time.time() < end:
            if time.time() >= next_scrape:
                t = time.perf_counter()
                body = http(api + "/metrics", timeout=60)
                scrapes.append((time.perf_counter() - t, len(body)))
                del body
                next_scrape += a.scrape
            time.sleep(min(2, max(0, end - time.time()), max(0, next_scrape - time.time())))
            rss.append(status_kb(daemon.pid, "VmRSS"))
            if daemon.poll() is not None:
                raise SystemExit("canaryd died during the run")
        t_to = time.time()
        # The backend's counters are read first: reading the database takes seconds at 10,000.
        stats1 = json.loads(http(fake_url + "/stats")) if not prom else None
        c1, f1, io1 = cpu_seconds(daemon.pid), cpu_seconds(fake.pid), io_bytes(daemon.pid)
        size1 = db_bytes(os.path.join(dirname, "state"))
        window = t_to - t_from
        out["window_s"] = round(window, 2)
        out["metrics_scrapes"] = {
            "every_s": a.scrape, "n": len(scrapes),
            "max_ms": round(max(s for s, _ in scrapes) * 1000, 1) if scrapes else None,
            "bytes": scrapes[-1][1] if scrapes else None,
        }
        out["cpu_s"] = round(c1 - c0, 2)
        out["cpu_share_of_one_core"] = round((c1 - c0) / window, 3)
        out["fake_backend_cpu_s"] = round(f1 - f0, 2)
        out["peak_rss_mb"] = round(status_kb(daemon.pid, "VmHWM") / 1024, 1)
        out["rss_mb_end"] = round(status_kb(daemon.pid, "VmRSS") / 1024, 1)
        # VmRSS every 30 s of the window, to tell a start-up peak from growth.
        out["rss_mb_every_30s"] = [round(kb / 1024, 1) for kb in rss[14::15]]
        out["threads_cpu_s_total"] = {k: round(v, 2) for k, v in threads_cpu(daemon.pid).items()}
        out["write_bytes_per_s"] = round((io1.get("write_bytes", 0) - io0.get("write_bytes", 0)) / window)
        out["db_growth_bytes_per_s"] = round((size1 - size0) / window)
        metrics_text = http(api + "/metrics")
        buckets, hsum, hcount = histogram(metrics_text, "canaryd_backend_query_duration_seconds")
        out["daemon_query_histogram"] = {
            "count": hcount, "mean_ms": round(hsum / hcount * 1000, 3) if hcount else None,
            "p50_bucket_le_s": hist_quantile(buckets, 0.5), "p99_bucket_le_s": hist_quantile(buckets, 0.99),
        }
        procs.stop(daemon)  # the database can be read once the daemon has let go of it
        t_from_ms, t_to_ms = int(t_from * 1000), int(t_to * 1000)
        inserted = rows_between(db, t_from_ms, t_to_ms)
        out["rows_inserted_per_s"] = {t: round(v / window, 2) for t, v in inserted.items() if v}
        rows = analyses_rows(db)
        out["schedule"] = spacing_report(rows, t_from_ms, t_to_ms, 10)
        out["schedule"]["expected_analyses"] = round(a.rollouts * window / 10)
        n_an = out["schedule"]["analyses_in_window"]
        out["analyses_per_s"] = round(n_an / window, 2)
        out["sqlite_rows_written_per_s"] = round(
            (sum(inserted.values()) + n_an) / window, 1)  # + one rollouts-row update per analysis
        out["cpu_ms_per_analysis"] = round((c1 - c0) / n_an * 1000, 3) if n_an else None
        outcomes = {}
        for _, at, o in rows:
            if t_from_ms <= at <= t_to_ms:
                outcomes[o] = outcomes.get(o, 0) + 1
        out["outcomes"] = outcomes
        if prom is None:
            stats = stats1
            out["queries_per_s"] = round((stats["queries"] - q0) / window, 1)
            out["requests_per_s"] = round((stats["requests"] - r0) / window, 1)
            out["backend_service_us"] = stats["service_us"]
            bursts = parse_bursts(http(fake_url + "/bursts", timeout=120))
            out["latency"] = latency_report(rows, bursts, t_from_ms, t_to_ms)
        else:
            q1 = prom_scalar(backend, "prometheus_http_requests_total")
            out["requests_per_s"] = round((q1 - r0) / window, 1)
            out["queries_per_s"] = round(n_an * 24 / window, 1)  # 24 queries per analysis
            s = prom_scalar(backend, "prometheus_http_request_duration_seconds_sum")
            n = prom_scalar(backend, "prometheus_http_request_duration_seconds_count")
            out["prometheus_mean_service_ms"] = round(s / n * 1000, 3) if n else None
            out["prometheus_cpu_s"] = round(cpu_seconds(prom.pid) - p_cpu0, 2)
        with open(os.path.join(dirname, "canaryd.log"), "rb") as f:
            text = f.read().decode(errors="replace")
        out["log_lines"] = {k: text.count(k) for k in ("Analysis judged", "WARN", "ERROR")}
        procs.stop(daemon)
    finally:
        procs.stop_all()
        if a.keep:
            log("kept", dirname)
        else:
            shutil.rmtree(dirname, ignore_errors=True)
    print(json.dumps(out))


def cmd_reaction(a):
    procs = Procs()
    dirname = tempfile.mkdtemp(prefix="canaryd-reaction-")
    out = {"bench": "reaction", "rollouts": a.rollouts, "background": a.background}
    try:
        fake, fake_url = start_fake(procs)
        names = [(f"r{i:05d}", "2s", "webhook") for i in range(a.rollouts)]
        names += [(f"r{i:05d}", "10s", "builtin") for i in range(a.rollouts, a.rollouts + a.background)]
        config, _ = write_world(dirname, fake_url, fake_url + "/webhook", names)
        daemon, _ = start_canaryd(procs, config, dirname)
        time.sleep(6)
        for i in range(a.rollouts):
            http(f"{fake_url}/control/critical/r{i:05d}", data=b"")
            time.sleep(0.77)
        deadline = time.time() + 30
        hooks = []
        while time.time() < deadline:
            hooks = [json.loads(l) for l in http(fake_url + "/webhooks").splitlines() if l]
            if sum(1 for h in hooks if h["body"].get("weight") == 0) >= a.rollouts:
                break
            time.sleep(0.5)
        bursts = parse_bursts(http(fake_url + "/bursts"))
        lat = []
        for i in range(a.rollouts):
            name = f"r{i:05d}"
            crit = sorted(b["last"] for b in bursts if b["rollout"] == name and b["critical"])
            zero = sorted(h["at_us"] for h in hooks
                          if h["body"].get("rollout") == name and h["body"].get("weight") == 0)
            if crit and zero:
                lat.append((zero[0] - crit[0]) / 1000)
        out["verdict_to_actuator_ms"] = {"n": len(lat), "min": min(lat) if lat else None,
                                         "p50": pct(lat, 0.5), "max": max(lat) if lat else None,
                                         "all": [round(x, 2) for x in lat]}
        procs.stop(daemon)
    finally:
        procs.stop_all()
        shutil.rmtree(dirname, ignore_errors=True)
    print(json.dumps(out))


def cmd_startup(a):
    procs = Procs()
    dirname = tempfile.mkdtemp(prefix="canaryd-startup-")
    out = {"bench": "startup", "rules": a.rules, "runs": a.runs}
    try:
        names = [(f"r{i:05d}", "10s", "builtin") for i in range(a.rules)]
        config, _ = write_world(dirname, "http://127.0.0.1:9", "http://127.0.0.1:9/webhook", names)
        state = os.path.join(dirname, "state")
        for mode in ("cold", "warm"):
            times, hwm = [], []
            for _ in range(a.runs):
                if mode == "cold":
                    shutil.rmtree(state, ignore_errors=True)
                    os.makedirs(state)
                daemon, ready = start_canaryd(procs, config, dirname)
                times.append(ready * 1000)
                time.sleep(0.3)
                hwm.append(status_kb(daemon.pid, "VmHWM") / 1024)
                procs.stop(daemon)
            out[mode] = {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
                         "max_ms": round(max(times), 1), "peak_rss_mb_median": round(statistics.median(hwm), 1)}
    finally:
        procs.stop_all()
        shutil.rmtree(dirname, ignore_errors=True)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("load")
    p.add_argument("rollouts", type=int)
    p.add_argument("seconds", type=int)
    p.add_argument("--backend", choices=["fake", "prometheus"], default="fake")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--scrape", type=float, default=15,
                   help="scrape /metrics every this many seconds during the window, as a "
                        "Prometheus would (0: never); peak RSS includes the scrapes")
    p = sub.add_parser("reaction")
    p.add_argument("rollouts", type=int, nargs="?", default=10)
    p.add_argument("--background", type=int, default=0)
    p = sub.add_parser("startup")
    p.add_argument("rules", type=int, nargs="?", default=1000)
    p.add_argument("runs", type=int, nargs="?", default=15)
    a = ap.parse_args()
    for binary in (CANARYD, FAKE):
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"{binary} missing: cargo build --release --bin canaryd --example fake_prometheus")
    {"load": cmd_load, "reaction": cmd_reaction, "startup": cmd_startup}[a.cmd](a)


if __name__ == "__main__":
    main()
