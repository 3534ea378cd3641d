//! A simulated service for `canaryd demo` and the end-to-end tests: a baseline and a canary
//! version handling synthetic requests, split by canaryd's own actuator, and exposing Prometheus
//! metrics by version.
//!
//! This module owns the service model ([`Simulator`]: per-version counters, a latency histogram,
//! a memory gauge and a queue-depth gauge, each version with a [`Behaviour`] that can change while
//! it runs), its Prometheus text exposition and the HTTP endpoint serving it ([`serve`]), the
//! traffic generator that asks the actuator which version serves each request ([`traffic`]), and
//! an in-memory [`MetricSource`](crate::source::MetricSource) answering from the simulator's own
//! per-second snapshots ([`source`]). It decides nothing about rollouts and must never be used
//! by `canaryd serve`: it is a stand-in for a real application.

pub mod source;
pub mod traffic;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub use crate::assign::Variant as Version;
pub use source::{SimQueryError, sim_source};
pub use traffic::{Split, drive};

/// The upper bounds of the latency histogram's buckets, in seconds (`+Inf` is implied).
pub const BUCKETS: [f64; 17] = [
    0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0, 2.5,
];
/// How often the traffic generator snapshots the counters: four times a second, so that the
/// demo's half-second steps each see their own requests (its stages are judged on 20 points or
/// more of their own, issue 19).
pub const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// Snapshots kept for the in-memory source: 15 minutes at four per second.
const HISTORY: usize = 3600;

/// How one version behaves. The baseline is normally [`Behaviour::Healthy`]; the canary's
/// behaviour is chosen per run and may change while it runs ([`Simulator::set_behaviour`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// Like the profile says.
    Healthy,
    /// Every request takes `factor` times as long (1.5: p99 +50%).
    Slower { factor: f64 },
    /// The profile's error rate times `multiplier`.
    Erroring { multiplier: f64 },
    /// A fixed share of requests fail (0.5: half of them), whatever the profile says.
    Spike { error_rate: f64 },
    /// Resident memory grows by this many bytes every second.
    Leaking { bytes_per_second: f64 },
    /// Serves requests but exports no metrics at all (a broken exporter).
    Silent,
}

impl Behaviour {
    /// Parses `healthy`, `slower`, `slower:2`, `erroring`, `erroring:10`, `spike`, `spike:0.5`,
    /// `leaking`, `leaking:5e6` or `silent` (the number after `:` overrides the default).
    pub fn parse(text: &str) -> Result<Behaviour, String> {
        let (name, arg) = match text.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (text.trim(), None),
        };
        let number = |default: f64| -> Result<f64, String> {
            match arg {
                None => Ok(default),
                Some(a) => a
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("`{a}` in `{text}` is not a non-negative number")),
            }
        };
        Ok(match name {
            "healthy" => Behaviour::Healthy,
            "slower" => Behaviour::Slower {
                factor: number(1.5)?,
            },
            "erroring" => Behaviour::Erroring {
                multiplier: number(10.0)?,
            },
            "spike" => Behaviour::Spike {
                error_rate: number(0.5)?.min(1.0),
            },
            "leaking" => Behaviour::Leaking {
                bytes_per_second: number(4_000_000.0)?,
            },
            "silent" => Behaviour::Silent,
            other => {
                return Err(format!(
                    "unknown behaviour `{other}`: use healthy, slower, erroring, spike, leaking \
                     or silent"
                ));
            }
        })
    }
}

/// What both versions share before any behaviour applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Median request latency, seconds.
    pub median_latency: f64,
    /// Spread of the log-normal latency (0.3: p99 ≈ 2× the median).
    pub latency_sigma: f64,
    /// Share of requests answered with a 500.
    pub error_rate: f64,
    /// Resident memory at start, bytes.
    pub memory_bytes: f64,
    /// Mean queue depth.
    pub queue_depth: f64,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            median_latency: 0.040,
            latency_sigma: 0.3,
            error_rate: 0.002,
            memory_bytes: 256.0 * 1024.0 * 1024.0,
            queue_depth: 5.0,
        }
    }
}

/// A small deterministic random generator (SplitMix64): the simulator needs noise, not security.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// One version's cumulative counters and gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct SideCounters {
    pub ok: u64,
    pub errors: u64,
    /// Cumulative counts per bucket of [`BUCKETS`], then `+Inf`.
    pub buckets: [u64; BUCKETS.len() + 1],
    pub latency_sum: f64,
    pub memory_bytes: f64,
    pub queue_depth: f64,
}

impl SideCounters {
    fn new(profile: &Profile) -> Self {
        SideCounters {
            ok: 0,
            errors: 0,
            buckets: [0; BUCKETS.len() + 1],
            latency_sum: 0.0,
            memory_bytes: profile.memory_bytes,
            queue_depth: profile.queue_depth,
        }
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.errors
    }
}

/// One version's state.
#[derive(Debug, Clone)]
struct Side {
    behaviour: Behaviour,
    counters: SideCounters,
    /// When the behaviour last changed, and when a scrape first showed it.
    changed_at: Option<DateTime<Utc>>,
    seen_at: Option<DateTime<Utc>>,
}

/// Both versions at one instant, as the in-memory source reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Unix seconds.
    pub t: f64,
    /// Baseline, canary; `None` for a silent version.
    pub sides: [Option<SideCounters>; 2],
}

struct Inner {
    sides: [Side; 2],
    history: VecDeque<Snapshot>,
    rng: Rng,
    last_tick: Option<DateTime<Utc>>,
    /// Assignment requests that failed and fell back to the baseline.
    fallbacks: u64,
    /// A change of the canary's behaviour waiting for the canary's weight to reach a level.
    pending: Option<(u8, Behaviour)>,
}

/// A simulated service with a baseline and a canary version. Cheap to share behind an `Arc`.
pub struct Simulator {
    service: String,
    profile: Profile,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

fn index(version: Version) -> usize {
    match version {
        Version::Baseline => 0,
        Version::Canary => 1,
    }
}

/// The `version` label of each side.
pub fn version_label(version: Version) -> &'static str {
    match version {
        Version::Baseline => "baseline",
        Version::Canary => "canary",
    }
}

impl Simulator {
    /// A service named `service` (its `service` label) with both versions healthy.
    pub fn new(service: impl Into<String>, profile: Profile, seed: u64) -> Simulator {
        let side = Side {
            behaviour: Behaviour::Healthy,
            counters: SideCounters::new(&profile),
            changed_at: None,
            seen_at: None,
        };
        Simulator {
            service: service.into(),
            inner: Mutex::new(Inner {
                sides: [side.clone(), side],
                history: VecDeque::new(),
                rng: Rng::new(seed),
                last_tick: None,
                fallbacks: 0,
                pending: None,
            }),
            profile,
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes how `version` behaves from now on.
    pub fn set_behaviour(&self, version: Version, behaviour: Behaviour) {
        let mut inner = self.lock();
        let side = &mut inner.sides[index(version)];
        side.behaviour = behaviour;
        side.changed_at = Some(Utc::now());
        side.seen_at = None;
    }

    /// Changes the canary's behaviour to `behaviour` as soon as a request is assigned while the
    /// canary's weight is at least `weight` (see [`Simulator::observe_weight`]): the change
    /// starts with the stage's first request, however late anyone looks.
    pub fn change_canary_at(&self, weight: u8, behaviour: Behaviour) {
        self.lock().pending = Some((weight, behaviour));
    }

    /// The traffic generator saw a request assigned at canary weight `weight`: applies a
    /// [`Simulator::change_canary_at`] change waiting for that weight.
    pub fn observe_weight(&self, weight: u8) {
        let mut inner = self.lock();
        if let Some((at, behaviour)) = inner.pending
            && weight >= at
        {
            inner.pending = None;
            drop(inner);
            self.set_behaviour(Version::Canary, behaviour);
        }
    }

    pub fn behaviour(&self, version: Version) -> Behaviour {
        self.lock().sides[index(version)].behaviour
    }

    /// When the metrics endpoint first served data after `version`'s last behaviour change
    /// (a scraper could see the change from then on).
    pub fn change_seen_at(&self, version: Version) -> Option<DateTime<Utc>> {
        self.lock().sides[index(version)].seen_at
    }

    /// A copy of one version's counters.
    pub fn counters(&self, version: Version) -> SideCounters {
        self.lock().sides[index(version)].counters.clone()
    }

    /// Assignment requests that failed and were served by the baseline.
    pub fn fallbacks(&self) -> u64 {
        self.lock().fallbacks
    }

    pub(crate) fn count_fallback(&self) {
        self.lock().fallbacks += 1;
    }

    /// Handles one request on `version`: draws its latency and outcome and counts them.
    pub fn handle(&self, version: Version) {
        let profile = &self.profile;
        let mut inner = self.lock();
        let behaviour = inner.sides[index(version)].behaviour;
        let mut latency =
            profile.median_latency * (profile.latency_sigma * inner.rng.normal()).exp();
        let mut error_rate = profile.error_rate;
        match behaviour {
            Behaviour::Slower { factor } => latency *= factor,
            Behaviour::Erroring { multiplier } => error_rate *= multiplier,
            Behaviour::Spike { error_rate: rate } => error_rate = rate,
            Behaviour::Healthy | Behaviour::Leaking { .. } | Behaviour::Silent => {}
        }
        let failed = inner.rng.uniform() < error_rate.min(1.0);
        let c = &mut inner.sides[index(version)].counters;
        if failed {
            c.errors += 1;
        } else {
            c.ok += 1;
        }
        c.latency_sum += latency;
        let first = BUCKETS
            .iter()
            .position(|le| latency <= *le)
            .unwrap_or(BUCKETS.len());
        for b in &mut c.buckets[first..] {
            *b += 1;
        }
    }

    /// Advances the gauges to `now` and records a snapshot for the in-memory source. The traffic
    /// generator calls it every [`SNAPSHOT_EVERY`].
    pub fn tick(&self, now: DateTime<Utc>) {
        let profile = &self.profile;
        let mut inner = self.lock();
        let dt = inner
            .last_tick
            .map_or(0.0, |last| (now - last).as_seconds_f64().max(0.0));
        inner.last_tick = Some(now);
        for i in 0..2 {
            let noise_mem = inner.rng.normal();
            let noise_queue = inner.rng.normal();
            let side = &mut inner.sides[i];
            let leak = match side.behaviour {
                Behaviour::Leaking { bytes_per_second } => bytes_per_second * dt,
                _ => 0.0,
            };
            let c = &mut side.counters;
            // Memory wanders a little around where it is (plus the leak); the queue around its mean.
            c.memory_bytes = (c.memory_bytes + leak + noise_mem * 64.0 * 1024.0).max(0.0);
            c.queue_depth = (profile.queue_depth + noise_queue).round().max(0.0);
        }
        let snapshot = Snapshot {
            t: now.timestamp_millis() as f64 / 1000.0,
            sides: [0, 1].map(|i| {
                let side = &inner.sides[i];
                (side.behaviour != Behaviour::Silent).then(|| side.counters.clone())
            }),
        };
        inner.history.push_back(snapshot);
        while inner.history.len() > HISTORY {
            inner.history.pop_front();
        }
    }

    /// The snapshots taken between `from` and `to` (unix seconds), oldest first, plus the one just
    /// before `from` if any.
    pub fn snapshots(&self, from: f64, to: f64) -> Vec<Snapshot> {
        let inner = self.lock();
        let first = inner.history.partition_point(|s| s.t < from);
        inner
            .history
            .iter()
            .skip(first.saturating_sub(1))
            .take_while(|s| s.t <= to)
            .cloned()
            .collect()
    }

    /// The Prometheus text exposition of both versions (nothing for a silent one).
    pub fn render(&self) -> String {
        let mut inner = self.lock();
        let now = Utc::now();
        let mut out = String::new();
        let service = &self.service;
        let sides: Vec<(Version, SideCounters)> = [Version::Baseline, Version::Canary]
            .into_iter()
            .filter_map(|v| {
                let side = &mut inner.sides[index(v)];
                if side.changed_at.is_some() && side.seen_at.is_none() {
                    side.seen_at = Some(now);
                }
                (side.behaviour != Behaviour::Silent).then(|| (v, side.counters.clone()))
            })
            .collect();
        drop(inner);
        let _ = writeln!(out, "# TYPE http_requests_total counter");
        for (v, c) in &sides {
            let v = version_label(*v);
            for (code, n) in [("200", c.ok), ("500", c.errors)] {
                let _ = writeln!(
                    out,
                    "http_requests_total{{service=\"{service}\",version=\"{v}\",code=\"{code}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# TYPE http_request_duration_seconds histogram");
        for (v, c) in &sides {
            let v = version_label(*v);
            for (le, n) in BUCKETS.iter().zip(&c.buckets) {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{service=\"{service}\",version=\"{v}\",le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{service=\"{service}\",version=\"{v}\",le=\"+Inf\"}} {}",
                c.requests()
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{service=\"{service}\",version=\"{v}\"}} {}",
                c.latency_sum
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{service=\"{service}\",version=\"{v}\"}} {}",
                c.requests()
            );
        }
        let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge");
        for (v, c) in &sides {
            let _ = writeln!(
                out,
                "process_resident_memory_bytes{{service=\"{service}\",version=\"{}\"}} {}",
                version_label(*v),
                c.memory_bytes.round()
            );
        }
        let _ = writeln!(out, "# TYPE queue_depth gauge");
        for (v, c) in &sides {
            let _ = writeln!(
                out,
                "queue_depth{{service=\"{service}\",version=\"{}\"}} {}",
                version_label(*v),
                c.queue_depth
            );
        }
        out
    }
}

/// Serves `GET /metrics` (every simulator's exposition, one after the other) on 127.0.0.1 with a
/// free port until `shutdown` is cancelled. Returns the bound address.
pub async fn serve(
    sims: Vec<Arc<Simulator>>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let sims = sims.clone();
            async move {
                let body: String = sims.iter().map(|s| s.render()).collect();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "The simulator's metrics endpoint failed.");
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn a_change_waiting_for_a_weight_starts_with_the_first_request_at_that_weight() {
        let sim = Simulator::new("svc", Profile::default(), 1);
        let failing = Behaviour::Erroring { multiplier: 30.0 };
        sim.change_canary_at(25, failing);
        sim.observe_weight(10);
        assert_eq!(sim.behaviour(Version::Canary), Behaviour::Healthy);
        sim.observe_weight(25);
        assert_eq!(sim.behaviour(Version::Canary), failing);
        assert_eq!(sim.behaviour(Version::Baseline), Behaviour::Healthy);
        // Applied once: a later change is not undone by more requests at that weight.
        sim.set_behaviour(Version::Canary, Behaviour::Healthy);
        sim.observe_weight(50);
        assert_eq!(sim.behaviour(Version::Canary), Behaviour::Healthy);
    }

    #[test]
    fn behaviours_parse_with_defaults_and_overrides() {
        assert_eq!(Behaviour::parse("healthy"), Ok(Behaviour::Healthy));
        assert_eq!(
            Behaviour::parse("slower"),
            Ok(Behaviour::Slower { factor: 1.5 })
        );
        assert_eq!(
            Behaviour::parse("erroring:4"),
            Ok(Behaviour::Erroring { multiplier: 4.0 })
        );
        assert_eq!(
            Behaviour::parse("spike:3"),
            Ok(Behaviour::Spike { error_rate: 1.0 })
        );
        let e = Behaviour::parse("sleepy").unwrap_err();
        assert!(e.contains("unknown behaviour `sleepy`"), "{e}");
        let e = Behaviour::parse("slower:fast").unwrap_err();
        assert!(e.contains("`fast`"), "{e}");
    }

    #[test]
    fn slower_canary_has_a_higher_latency_sum_and_histogram_is_cumulative() {
        let sim = Simulator::new("svc", Profile::default(), 7);
        sim.set_behaviour(Version::Canary, Behaviour::Slower { factor: 1.5 });
        for _ in 0..5000 {
            sim.handle(Version::Baseline);
            sim.handle(Version::Canary);
        }
        let b = sim.counters(Version::Baseline);
        let c = sim.counters(Version::Canary);
        let ratio = (c.latency_sum / c.requests() as f64) / (b.latency_sum / b.requests() as f64);
        assert!((ratio - 1.5).abs() < 0.05, "mean latency ratio {ratio}");
        assert!(b.buckets.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(b.buckets[BUCKETS.len()], 5000);
    }

    #[test]
    fn spikes_fail_requests_and_leaks_grow_memory() {
        let sim = Simulator::new("svc", Profile::default(), 1);
        sim.set_behaviour(Version::Canary, Behaviour::Spike { error_rate: 0.5 });
        for _ in 0..2000 {
            sim.handle(Version::Canary);
        }
        let errors = sim.counters(Version::Canary).errors;
        assert!((800..1200).contains(&errors), "{errors} errors of 2000");
        sim.set_behaviour(
            Version::Canary,
            Behaviour::Leaking {
                bytes_per_second: 1e6,
            },
        );
        sim.tick(at(100));
        let before = sim.counters(Version::Canary).memory_bytes;
        sim.tick(at(160));
        let grown = sim.counters(Version::Canary).memory_bytes - before;
        assert!((59e6..61e6).contains(&grown), "grew {grown} bytes in 60 s");
    }

    #[test]
    fn exposition_has_every_series_by_version_and_silent_exports_nothing() {
        let sim = Simulator::new("shop", Profile::default(), 3);
        sim.handle(Version::Baseline);
        let text = sim.render();
        for line in [
            "http_requests_total{service=\"shop\",version=\"baseline\",code=\"200\"}",
            "http_requests_total{service=\"shop\",version=\"canary\",code=\"500\"} 0",
            "http_request_duration_seconds_bucket{service=\"shop\",version=\"baseline\",le=\"+Inf\"} 1",
            "http_request_duration_seconds_count{service=\"shop\",version=\"canary\"} 0",
            "process_resident_memory_bytes{service=\"shop\",version=\"canary\"}",
            "queue_depth{service=\"shop\",version=\"baseline\"}",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(sim.change_seen_at(Version::Canary).is_none());
        sim.set_behaviour(Version::Canary, Behaviour::Silent);
        let text = sim.render();
        assert!(!text.contains("version=\"canary\""), "{text}");
        assert!(text.contains("version=\"baseline\""));
        assert!(sim.change_seen_at(Version::Canary).is_some());
    }

    #[test]
    fn snapshots_cover_the_range_and_one_before() {
        let sim = Simulator::new("svc", Profile::default(), 3);
        for t in 100..110 {
            sim.tick(at(t));
        }
        let got: Vec<f64> = sim.snapshots(103.0, 105.0).iter().map(|s| s.t).collect();
        assert_eq!(got, vec![102.0, 103.0, 104.0, 105.0]);
        sim.set_behaviour(Version::Canary, Behaviour::Silent);
        sim.tick(at(110));
        let last = sim.snapshots(110.0, 110.0).pop().unwrap();
        assert!(last.sides[0].is_some() && last.sides[1].is_none());
    }
}
