//! The simulated service of the whole-rollout benchmark: a baseline and a canary whose metrics
//! are generated as simulated time advances, with the canary's traffic following the weight the
//! rollout sets, answered as a [`MetricSource`] the way Prometheus answers a range query over
//! stored series (the latest point at or before each instant, within the 5-minute lookback).
//!
//! Not `source::RecordedSource`: a recording is fixed before the replay, and here the request
//! counts (and when a mid-rollout degradation starts) depend on the weights the rollout sets,
//! which replay tells the world through `replay_observed` before anything later is read.
//! Every series draws from its own seeded generator in time order, so a trial is reproducible
//! whatever order the analysis asks its queries in.

use std::collections::HashMap;
use std::f64::consts::PI;
use std::sync::Mutex;
use std::time::Duration;

use canaryd::judge::Point;
use canaryd::rules::{Queries, RolloutRule, Side};
use canaryd::sim::Rng;
use canaryd::source::{MetricSource, QueryFuture, Series, SourceError};
use chrono::{DateTime, Utc};

/// Spacing of the latency and gauge series (a scrape-derived `rate(...)` every 30 s).
const GRID: f64 = 30.0;
/// Prometheus's lookback: an instant reads the latest point no older than this.
const LOOKBACK: f64 = 300.0;
/// Amplitude and period of the load wave both sides share.
const LOAD_AMPLITUDE: f64 = 0.3;
const LOAD_PERIOD_MIN: f64 = 20.0;
/// Marginal σ of the latency's AR(1) log-noise.
const LATENCY_SIGMA: f64 = 0.10;
/// Chance per 30 s point of a heavy-tail spike (5% per minute), a Pareto(1.5) factor.
const SPIKE_CHANCE: f64 = 0.025;
const SPIKE_ALPHA: f64 = 1.5;
/// Healthy p99 (seconds); the other quantiles are fixed fractions of it.
const P99: f64 = 0.200;
/// How long the series reach back before the run starts.
const HISTORY: f64 = 3600.0;

/// The noise of the data: the latency's lag-1 autocorrelation (at a one-minute step) and the
/// per-minute log-normal overdispersion of error rates.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub label: &'static str,
    pub rho: f64,
    pub error_sigma: f64,
}

/// A change of the canary: its error rate times `errors`, its latencies times `latency`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Degradation {
    pub errors: f64,
    pub latency: f64,
}

/// When a degradation starts: with the run, or when the rollout first reaches `weight`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Onset {
    Start,
    AtWeight(u8),
}

/// The service's levels and traffic for one plan.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// Requests per minute over both versions at the load wave's mean.
    pub rpm: f64,
    /// The share (%) of traffic mirrored to the canary while its weight is 0 (the shadow stage):
    /// the plan's first serving weight.
    pub shadow_share: f64,
    /// The healthy error rate.
    pub error_rate: f64,
}

/// Everything one trial's data depend on.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub service: Service,
    pub shape: Shape,
    pub degradation: Option<(Degradation, Onset)>,
    /// When the run starts (unix seconds).
    pub start: f64,
    /// The canary's data start with the run (deployed then) rather than an hour before it
    /// (deployed and mirrored traffic before the run started).
    pub fresh_canary: bool,
    pub seed: u64,
}

/// What one query reads.
#[derive(Debug, Clone, Copy)]
enum Feed {
    /// A latency quantile of a side: `fraction` of the p99.
    Latency {
        side: usize,
        fraction: f64,
    },
    Memory {
        gauge: usize,
    },
    Queue {
        gauge: usize,
    },
    /// Errors (or totals) of a count family.
    Counts {
        family: usize,
        errors: bool,
    },
}

/// One side's latency process on the 30 s grid: AR(1) log-noise and spikes, before the load
/// wave and any degradation.
struct Latency {
    rng: Rng,
    x: f64,
    points: Vec<(f64, f64)>,
}

struct Gauge {
    side: usize,
    rng: Rng,
    points: Vec<(f64, f64)>,
}

/// Errors and requests of one side per step (one `increase(...[step])` family).
struct Family {
    side: usize,
    step: f64,
    rng: Rng,
    points: Vec<(f64, f64, f64)>,
}

struct Inner {
    /// The weights the rollout set, in time order, from (start, 0).
    weights: Vec<(f64, u8)>,
    /// When the degradation started, once it has.
    onset: Option<f64>,
    latency: [Latency; 2],
    gauges: Vec<Gauge>,
    families: Vec<Family>,
}

/// The simulated service (see the module doc).
pub struct World {
    setup: Setup,
    /// Phase of the load wave (fraction of a period).
    phase: f64,
    feeds: HashMap<String, Feed>,
    inner: Mutex<Inner>,
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Baseline => 0,
        Side::Canary => 1,
    }
}

/// The fraction of the p99 a latency query's quantile sits at (the query names it as
/// `histogram_quantile(Q, ...)`).
fn quantile_fraction(query: &str) -> Option<f64> {
    let rest = query.split("histogram_quantile(").nth(1)?;
    let q: f64 = rest.split(',').next()?.trim().parse().ok()?;
    Some(match q {
        q if q >= 0.99 => 1.0,
        q if q >= 0.95 => 0.6,
        q if q >= 0.9 => 0.5,
        _ => 0.25,
    })
}

impl World {
    /// The world for `rule`'s queries: each check's query of each side is read from the
    /// series it measures (latency quantiles from one process per side, error counts from one
    /// family per totals query). Panics on a query it cannot place, naming it: the benchmark's
    /// plans must be fully simulated.
    pub fn new(rule: &RolloutRule, setup: Setup) -> World {
        let mut rng = Rng::new(setup.seed);
        let phase = rng.uniform();
        let mut seeds = move || rng.next_u64();
        let mut feeds = HashMap::new();
        let mut gauges = Vec::new();
        let mut families: Vec<Family> = Vec::new();
        let latency = [0, 1].map(|_| {
            let mut rng = Rng::new(seeds());
            let x = LATENCY_SIGMA * rng.normal();
            Latency {
                rng,
                x,
                points: Vec::new(),
            }
        });
        for check in &rule.checks {
            for side in [Side::Baseline, Side::Canary] {
                let s = side_index(side);
                match check.queries {
                    Queries::Values { .. } => {
                        let query = check.render_part(&rule.sides, side, 0);
                        if feeds.contains_key(&query) {
                            continue;
                        }
                        let feed = if let Some(fraction) = quantile_fraction(&query) {
                            Feed::Latency { side: s, fraction }
                        } else if query.contains("memory") || query.contains("queue") {
                            gauges.push(Gauge {
                                side: s,
                                rng: Rng::new(seeds()),
                                points: Vec::new(),
                            });
                            let gauge = gauges.len() - 1;
                            match query.contains("memory") {
                                true => Feed::Memory { gauge },
                                false => Feed::Queue { gauge },
                            }
                        } else {
                            panic!(
                                "check `{}`: no simulated series for `{query}`",
                                check.spec.name
                            )
                        };
                        feeds.insert(query, feed);
                    }
                    Queries::Counts { .. } => {
                        let total = check.render_part(&rule.sides, side, 1);
                        let errors = check.render_part(&rule.sides, side, 0);
                        let family = match feeds.get(&total) {
                            Some(Feed::Counts { family, .. }) => *family,
                            _ => {
                                families.push(Family {
                                    side: s,
                                    step: check.step.as_secs_f64(),
                                    rng: Rng::new(seeds()),
                                    points: Vec::new(),
                                });
                                families.len() - 1
                            }
                        };
                        feeds.insert(
                            total,
                            Feed::Counts {
                                family,
                                errors: false,
                            },
                        );
                        feeds.insert(
                            errors,
                            Feed::Counts {
                                family,
                                errors: true,
                            },
                        );
                    }
                }
            }
        }
        let onset = match setup.degradation {
            Some((_, Onset::Start)) => Some(setup.start),
            _ => None,
        };
        World {
            setup,
            phase,
            feeds,
            inner: Mutex::new(Inner {
                weights: vec![(setup.start, 0)],
                onset,
                latency,
                gauges,
                families,
            }),
        }
    }

    /// The rollout set the canary's weight to `weight` at `at` (from replay's observer).
    pub fn set_weight(&self, at: DateTime<Utc>, weight: u8) {
        let t = at.timestamp_millis() as f64 / 1e3;
        let mut inner = self.inner.lock().unwrap();
        inner.weights.push((t, weight));
        if let Some((_, Onset::AtWeight(w))) = self.setup.degradation
            && inner.onset.is_none()
            && weight >= w
        {
            inner.onset = Some(t);
        }
    }

    /// When the degradation started (unix seconds), if it has.
    pub fn onset(&self) -> Option<f64> {
        self.inner.lock().unwrap().onset
    }

    fn load(&self, t: f64) -> f64 {
        let minutes = (t - self.setup.start) / 60.0;
        1.0 + LOAD_AMPLITUDE * (2.0 * PI * (minutes / LOAD_PERIOD_MIN + self.phase)).sin()
    }

    /// The canary's factors (errors, latency) at `t`: its degradation once it has started.
    fn factors(&self, inner: &Inner, side: usize, t: f64) -> (f64, f64) {
        match (self.setup.degradation, inner.onset) {
            (Some((d, _)), Some(onset)) if side == 1 && t >= onset => (d.errors, d.latency),
            _ => (1.0, 1.0),
        }
    }

    /// Requests per minute a side serves at `t`, before the load wave.
    fn rpm(&self, inner: &Inner, side: usize, t: f64) -> f64 {
        let at = inner.weights.partition_point(|&(w, _)| w <= t);
        let weight = inner.weights[at.saturating_sub(1)].1 as f64;
        let share = match side {
            0 => 100.0 - weight,
            _ if weight == 0.0 => self.setup.service.shadow_share,
            _ => weight,
        };
        self.setup.service.rpm * share / 100.0
    }

    /// The first time a side has data: an hour before the run, or for a fresh canary the
    /// run's start.
    fn first(&self, side: usize) -> f64 {
        match side == 1 && self.setup.fresh_canary {
            true => self.setup.start,
            false => self.setup.start - HISTORY,
        }
    }

    /// Extend what `feed` reads through `until`.
    fn extend(&self, inner: &mut Inner, feed: Feed, until: f64) {
        match feed {
            Feed::Latency { side, .. } => {
                let rho = self.setup.shape.rho.sqrt();
                let innovation = LATENCY_SIGMA * (1.0 - rho * rho).sqrt();
                let next = next_time(
                    inner.latency[side].points.last().map(|p| p.0),
                    self.first(side),
                    GRID,
                );
                let mut t = next;
                while t <= until {
                    let process = &mut inner.latency[side];
                    if !process.points.is_empty() {
                        process.x = rho * process.x + innovation * process.rng.normal();
                    }
                    let spike = match process.rng.uniform() < SPIKE_CHANCE {
                        true => process.rng.uniform().powf(-1.0 / SPIKE_ALPHA),
                        false => 1.0,
                    };
                    let v = process.x.exp() * spike;
                    process.points.push((t, v));
                    t += GRID;
                }
            }
            Feed::Memory { gauge } | Feed::Queue { gauge } => {
                let first = self.first(inner.gauges[gauge].side);
                let g = &mut inner.gauges[gauge];
                let mut t = next_time(g.points.last().map(|p| p.0), first, GRID);
                while t <= until {
                    let z = g.rng.normal();
                    let v = match feed {
                        Feed::Memory { .. } => 1e9 * (1.0 + 0.01 * z),
                        _ => 5.0 + z,
                    };
                    g.points.push((t, v));
                    t += GRID;
                }
            }
            Feed::Counts { family, .. } => {
                let (side, step) = (inner.families[family].side, inner.families[family].step);
                let mut t = next_time(
                    inner.families[family].points.last().map(|p| p.0),
                    self.first(side),
                    step,
                );
                let sigma = self.setup.shape.error_sigma;
                while t <= until {
                    let rpm = self.rpm(inner, side, t);
                    let (errors_factor, _) = self.factors(inner, side, t);
                    let f = &mut inner.families[family];
                    let total = (rpm * self.load(t) * step / 60.0).round() as u64;
                    let dispersion = (sigma * f.rng.normal() - sigma * sigma / 2.0).exp();
                    let rate = self.setup.service.error_rate * errors_factor * dispersion;
                    let errors = binomial(&mut f.rng, total, rate);
                    f.points.push((t, errors as f64, total as f64));
                    t += step;
                }
            }
        }
    }

    /// The value `feed` holds at the recorded point `i` (its time and value).
    fn point(&self, inner: &Inner, feed: Feed, i: usize) -> (f64, f64) {
        match feed {
            Feed::Latency { side, fraction } => {
                let (t, noise) = inner.latency[side].points[i];
                let (_, latency) = self.factors(inner, side, t);
                (t, P99 * fraction * self.load(t) * noise * latency)
            }
            Feed::Memory { gauge } | Feed::Queue { gauge } => inner.gauges[gauge].points[i],
            Feed::Counts { family, errors } => {
                let (t, e, n) = inner.families[family].points[i];
                (t, if errors { e } else { n })
            }
        }
    }

    fn times<'a>(&self, inner: &'a Inner, feed: Feed) -> Box<dyn Fn(usize) -> f64 + 'a> {
        match feed {
            Feed::Latency { side, .. } => Box::new(move |i| inner.latency[side].points[i].0),
            Feed::Memory { gauge } | Feed::Queue { gauge } => {
                Box::new(move |i| inner.gauges[gauge].points[i].0)
            }
            Feed::Counts { family, .. } => Box::new(move |i| inner.families[family].points[i].0),
        }
    }

    fn len(inner: &Inner, feed: Feed) -> usize {
        match feed {
            Feed::Latency { side, .. } => inner.latency[side].points.len(),
            Feed::Memory { gauge } | Feed::Queue { gauge } => inner.gauges[gauge].points.len(),
            Feed::Counts { family, .. } => inner.families[family].points.len(),
        }
    }

    /// `query` evaluated at `start`, `start + step`, ..., `end`, as Prometheus evaluates a
    /// stored series.
    fn range(&self, query: &str, start: f64, end: f64, step: f64) -> Vec<Series> {
        let Some(&feed) = self.feeds.get(query) else {
            return vec![];
        };
        let mut inner = self.inner.lock().unwrap();
        self.extend(&mut inner, feed, end);
        let len = World::len(&inner, feed);
        let time = self.times(&inner, feed);
        let mut points = Vec::new();
        let mut k = 0u64;
        loop {
            let at = start + k as f64 * step;
            if at > end + 1e-9 {
                break;
            }
            k += 1;
            // The latest point at or before `at`: binary search over the recorded times.
            let (mut lo, mut hi) = (0, len);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if time(mid) <= at {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let Some(i) = lo.checked_sub(1) else { continue };
            let (t, v) = self.point(&inner, feed, i);
            if t > at - LOOKBACK {
                points.push(Point { t: at, v });
            }
        }
        match points.is_empty() {
            true => vec![],
            false => vec![Series {
                labels: Default::default(),
                points,
            }],
        }
    }
}

/// The next grid time after a series' last point (`last`), or its first.
fn next_time(last: Option<f64>, first: f64, step: f64) -> f64 {
    last.map_or(first, |t| t + step)
}

/// Binomial(n, p) by inversion, or a normal approximation where `(1-p)^n` underflows.
fn binomial(rng: &mut Rng, n: u64, p: f64) -> u64 {
    if p <= 0.0 || n == 0 {
        return 0;
    }
    let p = p.min(1.0);
    let q = 1.0 - p;
    let mut pmf = q.powf(n as f64);
    if pmf <= 1e-200 {
        let mean = n as f64 * p;
        let x = (mean + (mean * q).sqrt() * rng.normal()).round();
        return x.clamp(0.0, n as f64) as u64;
    }
    let u = rng.uniform();
    let (mut cdf, mut k) = (pmf, 0u64);
    while u > cdf && k < n {
        pmf *= (n - k) as f64 / (k + 1) as f64 * p / q;
        k += 1;
        cdf += pmf;
    }
    k
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1e3
}

impl MetricSource for World {
    fn name(&self) -> &str {
        "simulated"
    }

    fn query_range<'a>(
        &'a self,
        query: &'a str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> QueryFuture<'a> {
        Box::pin(async move {
            Ok::<_, SourceError>(self.range(
                query,
                seconds(start),
                seconds(end),
                step.as_secs_f64(),
            ))
        })
    }

    fn query_instant<'a>(&'a self, query: &'a str, at: DateTime<Utc>) -> QueryFuture<'a> {
        Box::pin(async move { Ok(self.range(query, seconds(at), seconds(at), 1.0)) })
    }
}
