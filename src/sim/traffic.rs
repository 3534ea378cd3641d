//! The traffic generator: N synthetic requests a second with random user keys, each served by
//! the version canaryd's actuator assigns, the way real applications split traffic.
//!
//! It owns how a request finds its version ([`Split`]: the daemon's assignment endpoint over HTTP,
//! or the builtin actuator's [`WeightTable`] in-process) and the pacing loop ([`drive`]), which also
//! ticks the simulator's gauges once a second. An assignment that fails is served by the baseline
//! (as an application must do when canaryd is unreachable) and counted. It judges nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Rng, Simulator, Version};
use crate::actuator::WeightTable;
use crate::actuator::builtin::Assignment;

/// How often requests are sent (in batches) and how long an assignment request may take.
const BATCH_EVERY: Duration = Duration::from_millis(100);
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(1);
/// Distinct user keys the generator draws from.
const USERS: u64 = 100_000;

/// How a request learns which version serves it.
#[derive(Debug, Clone)]
pub enum Split {
    /// `GET {base}/v1/rollouts/{rollout}/assignment?key=K` on a running daemon.
    Http {
        client: reqwest::Client,
        base: String,
        rollout: String,
    },
    /// The builtin actuator's table, in the same process (`canaryd demo`).
    Table { table: WeightTable, rollout: String },
}

impl Split {
    /// An HTTP split against the daemon at `base` (`http://127.0.0.1:PORT`).
    pub fn http(base: impl Into<String>, rollout: impl Into<String>) -> Split {
        let client = reqwest::Client::builder()
            .timeout(ASSIGNMENT_TIMEOUT)
            .build()
            .unwrap_or_default();
        Split::Http {
            client,
            base: base.into().trim_end_matches('/').to_string(),
            rollout: rollout.into(),
        }
    }

    /// The version for `key` and the canary weight it was drawn at; `None` when the actuator
    /// could not say (the caller serves the baseline).
    async fn version(&self, key: &str) -> Option<(Version, u8)> {
        match self {
            Split::Table { table, rollout } => table.assign(rollout, key),
            Split::Http {
                client,
                base,
                rollout,
            } => {
                let url = format!("{base}/v1/rollouts/{rollout}/assignment");
                let resp = client.get(url).query(&[("key", key)]).send().await.ok()?;
                if !resp.status().is_success() {
                    return None;
                }
                resp.json::<Assignment>()
                    .await
                    .ok()
                    .map(|a| (a.variant, a.weight))
            }
        }
    }
}

/// Sends `per_second` requests a second to `sim`, split by `split`, until `shutdown`; ticks the
/// simulator every second. Keys are drawn from `seed`.
pub async fn drive(
    sim: Arc<Simulator>,
    split: Split,
    per_second: u32,
    seed: u64,
    shutdown: CancellationToken,
) {
    let split = Arc::new(split);
    let mut rng = Rng::new(seed);
    let mut batches = tokio::time::interval(BATCH_EVERY);
    batches.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_batch = f64::from(per_second) * BATCH_EVERY.as_secs_f64();
    let mut owed = 0.0;
    let mut last_tick = tokio::time::Instant::now();
    sim.tick(Utc::now());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = batches.tick() => {}
        }
        if last_tick.elapsed() >= super::SNAPSHOT_EVERY {
            last_tick = tokio::time::Instant::now();
            sim.tick(Utc::now());
        }
        owed += per_batch;
        let n = owed.floor() as u64;
        owed -= n as f64;
        let mut batch = JoinSet::new();
        for _ in 0..n {
            let key = format!("user-{}", rng.next_u64() % USERS);
            let split = Arc::clone(&split);
            let sim = Arc::clone(&sim);
            batch.spawn(async move {
                let version = match split.version(&key).await {
                    Some((v, weight)) => {
                        sim.observe_weight(weight);
                        v
                    }
                    None => {
                        sim.count_fallback();
                        Version::Baseline
                    }
                };
                sim.handle(version);
            });
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = async { while batch.join_next().await.is_some() {} } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuator::{Actuator, WeightChange};
    use crate::rollout::Targeting;

    #[tokio::test]
    async fn the_table_split_sends_about_the_weight_to_the_canary() {
        let table = WeightTable::new();
        table.register(
            "shop",
            Targeting {
                salt: "shop".into(),
                ..Targeting::default()
            },
        );
        let actuator = crate::actuator::builtin::BuiltinActuator::new("builtin", table.clone());
        actuator
            .set_weight(&WeightChange {
                rollout: "shop".into(),
                stage: "25%".into(),
                weight: 25,
                previous_weight: 0,
                reason: "test".into(),
                idempotency_key: "k".into(),
            })
            .await
            .unwrap();
        let sim = Arc::new(Simulator::new("shop", super::super::Profile::default(), 1));
        let stop = CancellationToken::new();
        let split = Split::Table {
            table,
            rollout: "shop".into(),
        };
        let task = tokio::spawn(drive(Arc::clone(&sim), split, 4000, 9, stop.clone()));
        tokio::time::sleep(Duration::from_millis(1050)).await;
        stop.cancel();
        task.await.unwrap();
        let b = sim.counters(Version::Baseline).requests() as f64;
        let c = sim.counters(Version::Canary).requests() as f64;
        assert!(b + c >= 3000.0, "{b} + {c} requests in a second");
        let share = c / (b + c);
        assert!((0.2..0.3).contains(&share), "canary share {share}");
        assert_eq!(sim.fallbacks(), 0);
    }

    #[tokio::test]
    async fn an_unreachable_daemon_sends_everything_to_the_baseline() {
        let sim = Arc::new(Simulator::new("shop", super::super::Profile::default(), 1));
        let stop = CancellationToken::new();
        let split = Split::http("http://127.0.0.1:9", "shop");
        let task = tokio::spawn(drive(Arc::clone(&sim), split, 100, 9, stop.clone()));
        tokio::time::sleep(Duration::from_millis(550)).await;
        stop.cancel();
        task.await.unwrap();
        assert_eq!(sim.counters(Version::Canary).requests(), 0);
        let served = sim.counters(Version::Baseline).requests();
        assert!(served > 0);
        assert_eq!(sim.fallbacks(), served);
    }
}
