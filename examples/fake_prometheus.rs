//! A fast fake Prometheus for the daemon benchmarks (`bench/load.py`, `bench/reaction.py`).
//!
//! It answers `/api/v1/query_range` (and `/api/v1/query`) for the bench rule files' queries,
//! `bench_value{rollout="r00001",check="c3",side="canary"}`, `bench_errors{...}` and
//! `bench_total{...}`, with one series of one point per `step` between `start` and `end` (about 60
//! for the bench's 10-minute window at 10 s steps), values from a fixed hash, so canary and
//! baseline agree within 2% and every check passes. canaryd's combined queries (`label_replace(Q0,
//! "canaryd_query", "0", "", "") or label_replace(Q1, ...)`, one request per analysis) are answered
//! with one such series per part, tagged like Prometheus would. It counts the requests and records its own
//! handler time for each one, and groups the queries of one rollout that arrive within 5 s of the
//! first into one "burst" (one analysis: the daemon runs a rollout's analyses at least seconds
//! apart), keeping the burst's first arrival, last answer and the time the backend was busy with it
//! (the union of its queries' handler intervals).
//!
//! It must not be used for anything but measurement: it has no PromQL, it only pattern-matches the
//! bench's own queries.
//!
//! Other routes:
//! - `POST /control/critical/{rollout}`: from now on, that rollout's canary `bench_value` series
//!   are 100× the baseline (the critical absolute check `c0` fails); bursts holding such an answer
//!   are marked critical.
//! - `POST /webhook`: a webhook actuator endpoint; it timestamps and keeps each call's body.
//! - `GET /stats`: request and query counts and handler-time percentiles (JSON).
//! - `GET /bursts`: every burst so far as CSV.
//! - `GET /webhooks`: the webhook calls so far as JSON lines `{"at_us":..,"body":..}`.
//! - `GET /metrics`: `bench_*` gauges for `--expose N` rollouts × 10 checks, for a real
//!   Prometheus to scrape.
//!
//! Usage: `cargo run --release --example fake_prometheus -- [--listen 127.0.0.1:0] [--expose N]`.
//! The first line on stdout is `listening http://ADDR`. Times are Unix microseconds.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};

/// Queries of one rollout arriving within this long of the burst's first belong to it.
const BURST_SPAN_US: u64 = 5_000_000;

/// A clock giving Unix microseconds, monotonic within the process.
struct Clock {
    base_unix_us: u64,
    base: Instant,
}

impl Clock {
    fn new() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Clock {
            base_unix_us: unix,
            base: Instant::now(),
        }
    }

    fn now_us(&self) -> u64 {
        self.base_unix_us + self.base.elapsed().as_micros() as u64
    }
}

/// The queries of one analysis of one rollout, as the backend saw them.
#[derive(Debug, Default, Clone)]
struct Burst {
    first_arrival_us: u64,
    last_end_us: u64,
    intervals: Vec<(u64, u64)>,
    critical: bool,
}

impl Burst {
    /// Microseconds during which at least one of the burst's queries was being answered.
    fn busy_us(&self) -> u64 {
        let mut spans = self.intervals.clone();
        spans.sort_unstable();
        let mut total = 0;
        let mut current: Option<(u64, u64)> = None;
        for (a, b) in spans {
            current = match current {
                Some((s, e)) if a <= e => Some((s, e.max(b))),
                Some((s, e)) => {
                    total += e - s;
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((s, e)) = current {
            total += e - s;
        }
        total
    }

    fn csv_line(&self, rollout: &str) -> String {
        format!(
            "{rollout},{},{},{},{},{}\n",
            self.first_arrival_us,
            self.last_end_us,
            self.busy_us(),
            self.intervals.len(),
            u8::from(self.critical)
        )
    }
}

#[derive(Default)]
struct Record {
    /// HTTP requests answered.
    requests: u64,
    /// Queries answered: a combined request counts each of its parts.
    queries: u64,
    /// Handler time of every query, nanoseconds.
    service_ns: Vec<u32>,
    open: HashMap<String, Burst>,
    closed: Vec<(String, Burst)>,
    critical: HashSet<String>,
    webhooks: Vec<(u64, String)>,
}

struct App {
    clock: Clock,
    record: Mutex<Record>,
    expose: usize,
}

type Shared = Arc<App>;

fn lock(app: &App) -> std::sync::MutexGuard<'_, Record> {
    app.record
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The value of `key="..."` in a selector, if present.
fn label<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("{key}=\"");
    let at = query.find(&pattern)? + pattern.len();
    let rest = &query[at..];
    Some(&rest[..rest.find('"')?])
}

/// The fields of an `application/x-www-form-urlencoded` body.
fn form_fields(body: &str) -> Vec<(String, String)> {
    let decode = |text: &str| -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split('&')
        .filter(|field| !field.is_empty())
        .map(|field| {
            let (key, value) = field.split_once('=').unwrap_or((field, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// The parts of a query: the query itself, or the parts of canaryd's combined query
/// `label_replace(Q0, "canaryd_query", "0", "", "") or label_replace(Q1, ...) ...` with their tags.
fn parts_of(query: &str) -> Vec<(&str, Option<&str>)> {
    const TAG: &str = ", \"canaryd_query\", \"";
    if !query.starts_with("label_replace(") {
        return vec![(query, None)];
    }
    query
        .split(" or label_replace(")
        .filter_map(|part| {
            let part = part.trim_start_matches("label_replace(");
            let at = part.find(TAG)?;
            let rest = &part[at + TAG.len()..];
            Some((&part[..at], Some(&rest[..rest.find('"')?])))
        })
        .collect()
}

/// A deterministic number in [-1, 1) from the series and the point's time.
fn noise(rollout: &str, check: &str, side: &str, t: i64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rollout
        .bytes()
        .chain(check.bytes())
        .chain(side.bytes())
        .chain(t.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// The value of series (metric, rollout, check, side) at `t`.
fn value(metric: &str, rollout: &str, check: &str, side: &str, t: i64, critical: bool) -> f64 {
    let index: f64 = check
        .trim_start_matches('c')
        .parse::<u32>()
        .map_or(0.0, f64::from);
    match metric {
        "bench_errors" => 5.0 + (2.0 * noise(rollout, check, side, t)).round(),
        "bench_total" => 1000.0,
        _ => {
            let v = 0.1 * (1.0 + index) * (1.0 + 0.02 * noise(rollout, check, side, t));
            if critical && side == "canary" {
                v * 100.0
            } else {
                v
            }
        }
    }
}

fn seconds(params: &HashMap<String, String>, key: &str) -> Option<f64> {
    params.get(key)?.parse().ok()
}

async fn query_range(
    State(app): State<Shared>,
    Query(mut params): Query<HashMap<String, String>>,
    body: String,
) -> ([(&'static str, &'static str); 1], String) {
    // A POST carries its parameters as a form body.
    params.extend(form_fields(&body));
    let arrival = app.clock.now_us();
    let started = Instant::now();
    let query = params.get("query").map_or("", String::as_str);
    let parts = parts_of(query);
    let rollout = parts
        .first()
        .and_then(|(q, _)| label(q, "rollout"))
        .unwrap_or("");
    let critical = !rollout.is_empty() && lock(&app).critical.contains(rollout);
    let (start, end, step) = match (
        seconds(&params, "start"),
        seconds(&params, "end"),
        seconds(&params, "step"),
    ) {
        (Some(s), Some(e), Some(st)) if st > 0.0 && e >= s => (s, e, st),
        _ => match seconds(&params, "time") {
            Some(t) => (t, t, 1.0),
            None => {
                return (
                    [("content-type", "application/json")],
                    r#"{"status":"error","errorType":"bad_data","error":"bench fake: missing start/end/step"}"#
                        .to_string(),
                );
            }
        },
    };
    let mut body = String::with_capacity(2048 * parts.len());
    body.push_str(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
    let mut critical_answer = false;
    for (n, (part, tag)) in parts.iter().enumerate() {
        let check = label(part, "check").unwrap_or("");
        let side = label(part, "side").unwrap_or("");
        let metric = part.split('{').next().unwrap_or("").trim();
        critical_answer |= critical && side == "canary" && check == "c0" && metric == "bench_value";
        if n > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"metric":{{"__name__":"{metric}","rollout":"{rollout}","check":"{check}","side":"{side}""#
        );
        if let Some(tag) = tag {
            let _ = write!(body, r#","canaryd_query":"{tag}""#);
        }
        body.push_str(r#"},"values":["#);
        let mut t = start;
        let mut first = true;
        while t <= end + 1e-9 {
            let v = value(metric, rollout, check, side, t as i64, critical);
            if !first {
                body.push(',');
            }
            first = false;
            let _ = write!(body, "[{t:.3},\"{v}\"]");
            t += step;
        }
        body.push_str("]}");
    }
    body.push_str("]}}");
    let service = started.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32;
    let end_us = app.clock.now_us();
    let mut record = lock(&app);
    record.requests += 1;
    record.queries += parts.len() as u64;
    record.service_ns.push(service);
    if !rollout.is_empty() {
        let rollout = rollout.to_string();
        let stale = record
            .open
            .get(&rollout)
            .is_some_and(|b| arrival.saturating_sub(b.first_arrival_us) > BURST_SPAN_US);
        if stale && let Some(done) = record.open.remove(&rollout) {
            record.closed.push((rollout.clone(), done));
        }
        let burst = record.open.entry(rollout).or_insert_with(|| Burst {
            first_arrival_us: arrival,
            ..Burst::default()
        });
        burst.first_arrival_us = burst.first_arrival_us.min(arrival);
        burst.last_end_us = burst.last_end_us.max(end_us);
        burst.intervals.push((arrival, end_us));
        burst.critical |= critical_answer;
    }
    drop(record);
    ([("content-type", "application/json")], body)
}

async fn set_critical(State(app): State<Shared>, Path(rollout): Path<String>) -> String {
    let at = app.clock.now_us();
    lock(&app).critical.insert(rollout);
    format!("{at}\n")
}

async fn webhook(State(app): State<Shared>, body: String) -> &'static str {
    let at = app.clock.now_us();
    lock(&app).webhooks.push((at, body));
    "ok"
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

async fn stats(State(app): State<Shared>) -> String {
    let (requests, queries, mut service) = {
        let r = lock(&app);
        (r.requests, r.queries, r.service_ns.clone())
    };
    service.sort_unstable();
    let mean = if service.is_empty() {
        0.0
    } else {
        service.iter().map(|&s| f64::from(s)).sum::<f64>() / service.len() as f64 / 1000.0
    };
    format!(
        "{{\"now_us\":{},\"requests\":{requests},\"queries\":{queries},\"service_us\":{{\"mean\":{mean:.2},\"p50\":{:.2},\"p99\":{:.2},\"max\":{:.2}}}}}\n",
        app.clock.now_us(),
        percentile(&service, 0.5),
        percentile(&service, 0.99),
        percentile(&service, 1.0),
    )
}

async fn bursts(State(app): State<Shared>) -> String {
    let r = lock(&app);
    let mut out = String::from("rollout,first_arrival_us,last_end_us,busy_us,queries,critical\n");
    for (rollout, b) in &r.closed {
        out.push_str(&b.csv_line(rollout));
    }
    for (rollout, b) in &r.open {
        out.push_str(&b.csv_line(rollout));
    }
    out
}

async fn webhooks(State(app): State<Shared>) -> String {
    let r = lock(&app);
    let mut out = String::new();
    for (at, body) in &r.webhooks {
        let body = serde_json::from_str::<serde_json::Value>(body)
            .unwrap_or_else(|_| serde_json::Value::String(body.clone()));
        out.push_str(&serde_json::json!({ "at_us": at, "body": body }).to_string());
        out.push('\n');
    }
    out
}

async fn metrics(State(app): State<Shared>) -> String {
    let now = (app.clock.now_us() / 1_000_000) as i64;
    let critical = lock(&app).critical.clone();
    let mut out = String::from(
        "# TYPE bench_value gauge\n# TYPE bench_errors gauge\n# TYPE bench_total gauge\n",
    );
    for r in 0..app.expose {
        let rollout = format!("r{r:05}");
        let bad = critical.contains(&rollout);
        for c in 0..10 {
            let check = format!("c{c}");
            for side in ["base", "canary"] {
                for metric in ["bench_value", "bench_errors", "bench_total"] {
                    let v = value(metric, &rollout, &check, side, now, bad);
                    let _ = writeln!(
                        out,
                        "{metric}{{rollout=\"{rollout}\",check=\"{check}\",side=\"{side}\"}} {v}"
                    );
                }
            }
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let mut listen = "127.0.0.1:0".to_string();
    let mut expose = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--listen ADDR"))?
            }
            "--expose" => {
                expose = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--expose N"))?
                    .parse()?;
            }
            other => anyhow::bail!("unknown argument `{other}`; known: --listen ADDR, --expose N"),
        }
    }
    let app: Shared = Arc::new(App {
        clock: Clock::new(),
        record: Mutex::new(Record::default()),
        expose,
    });
    let router = Router::new()
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/query", get(query_range).post(query_range))
        .route("/control/critical/{rollout}", post(set_critical))
        .route("/webhook", post(webhook))
        .route("/stats", get(stats))
        .route("/bursts", get(bursts))
        .route("/webhooks", get(webhooks))
        .route("/metrics", get(metrics))
        .with_state(app);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        println!("listening http://{}", listener.local_addr()?);
        axum::serve(listener, router).await?;
        Ok(())
    })
}
