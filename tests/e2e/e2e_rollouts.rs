//! End to end: the simulated service (baseline and canary, traffic split by each daemon's
//! assignment endpoint over HTTP) scraped every second by a real Prometheus, and one embedded
//! daemon per scenario judging it with plans compressed to seconds.
//!
//! The scenarios run concurrently (one Prometheus, one metrics endpoint, each scenario its own
//! service label, daemon, state and port) and each is bounded to 240 s (`full`: 190 s); the test prints each
//! scenario's wall time. `CANARYD_E2E_ONLY=healthy,spike` runs a subset.
//! - healthy: the canary reaches 100% and the rollout succeeds.
//! - slower: latency +50% from the 25% stage: rolled back by the p90 check, never past 25%.
//! - spike: 100% errors on the canary: rolled back by the first analyses that can see it.
//! - leak: the canary's memory grows 2 MB/s: the trend check fails and pauses the rollout.
//! - silent: the canary exports nothing: the rollout never advances and pauses after 4
//!   inconclusive analyses.
//! - stop: the emergency-stop file takes the canary to 0% (the time it took is reported; the
//!   within-a-second promise is proven on controlled time in `daemon_faults`), and the service
//!   stops sending it requests.
//! - full: 10% then a 100% stage longer than the checks' windows, so the baseline (sent no
//!   traffic) soon reports nothing: the relative p90 check is not applicable there, and the
//!   stage succeeds on the checks that can judge it (issue 16, point 5; it used to pause on
//!   the inconclusive streak).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::prometheus_support::Prometheus;
use crate::sim_support::{Daemon, rule, temp_dir, wait_for};
use canaryd::rollout::Phase;
use canaryd::sim::{self, Behaviour, Profile, Simulator, Split, Version};
use tokio_util::sync::CancellationToken;

/// A pass must be shown (issue 18) on the stage's own points (issue 19): the p90 check decides
/// from the 20th second of each stage, so the three stages with a baseline take a minute or more
/// (`healthy` about 100 s on an idle 2-core host, 120.1 s while the demo's test ran beside it:
/// the bound is twice that, a bound on events, not a timing).
const SCENARIO_LIMIT: Duration = Duration::from_secs(240);
/// The `full` scenario's bound: its 100% stage alone lasts 25 s (about 72 s in all).
const FULL_STAGE_LIMIT: Duration = Duration::from_secs(190);
const RATE: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Healthy,
    Slower,
    Spike,
    Leak,
    Silent,
    Stop,
    Full,
}

const ALL: [(&str, Kind); 7] = [
    ("healthy", Kind::Healthy),
    ("slower", Kind::Slower),
    ("spike", Kind::Spike),
    ("leak", Kind::Leak),
    ("silent", Kind::Silent),
    ("stop", Kind::Stop),
    ("full", Kind::Full),
];

fn selected() -> Vec<(&'static str, Kind)> {
    match std::env::var("CANARYD_E2E_ONLY") {
        Ok(only) if !only.trim().is_empty() => {
            let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
            ALL.into_iter()
                .filter(|(n, _)| wanted.contains(n))
                .collect()
        }
        _ => ALL.to_vec(),
    }
}

fn actions(d: &Daemon, name: &str) -> Vec<String> {
    d.audit(name).into_iter().map(|a| a.action).collect()
}

/// How many analyses of rollout `name` are recorded.
fn analyses(d: &Daemon, name: &str) -> usize {
    d.store
        .analyses_page(name, None, 1000)
        .map_or(0, |page| page.items.len())
}

fn weight(d: &Daemon, name: &str) -> Option<(Phase, u8)> {
    d.state(name).map(|s| (s.phase, s.weight))
}

/// One scenario from the daemon's start to its verdict; `Ok` with what was measured.
/// The decoded text of every email received that is about rollout `name`.
fn emails_about(smtp: &crate::smtp_support::SmtpServer, name: &str) -> Vec<String> {
    smtp.messages()
        .iter()
        .map(|raw| {
            crate::smtp_support::leaf_parts(raw)
                .into_iter()
                .map(|p| p.body)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|text| text.contains(&format!("Rollout {name} ")))
        .collect()
}

async fn scenario(
    kind: Kind,
    name: &str,
    sim: Arc<Simulator>,
    d: &Daemon,
    smtp: &crate::smtp_support::SmtpServer,
) -> Result<String, String> {
    let progressing_at = |w: u8| {
        move || match weight(d, name) {
            Some((Phase::Progressing { .. }, got)) if got == w => Some(()),
            _ => None,
        }
    };
    match kind {
        Kind::Healthy => {
            wait_for("success", SCENARIO_LIMIT, || {
                matches!(weight(d, name), Some((Phase::Succeeded, 100))).then_some(())
            })
            .await
            .map_err(|e| format!("{e}; audit {:?}", actions(d, name)))?;
            let a = actions(d, name);
            let advanced = a.iter().filter(|x| *x == "stage-advanced").count();
            if advanced != 3 || !a.contains(&"succeeded".to_string()) {
                return Err(format!("expected 3 advances and a success: {a:?}"));
            }
            let served = sim.counters(Version::Canary).requests();
            Ok(format!("succeeded; the canary served {served} requests"))
        }
        Kind::Slower => {
            wait_for("the 25% stage", SCENARIO_LIMIT, progressing_at(25)).await?;
            sim.set_behaviour(Version::Canary, Behaviour::Slower { factor: 1.5 });
            let flipped = Instant::now();
            wait_for("the rollback", SCENARIO_LIMIT, || {
                matches!(weight(d, name), Some((Phase::RolledBack { .. }, 0))).then_some(())
            })
            .await
            .map_err(|e| format!("{e}; audit {:?}", actions(d, name)))?;
            let audit = d.audit(name);
            let back = audit.iter().find(|a| a.action == "rolled-back");
            if !back.is_some_and(|a| a.reason.contains("p90-vs-baseline")) {
                return Err(format!("not rolled back by the p90 check: {back:?}"));
            }
            if audit.iter().any(|a| a.new_weight == Some(50)) {
                return Err("the slower canary reached 50%".into());
            }
            // On-call gets an email carrying the evidence: the check, both sides, the p-value.
            let email = wait_for("the rollback email", Duration::from_secs(10), || {
                emails_about(smtp, name).into_iter().next()
            })
            .await?;
            for needle in [
                "rolled-back",
                "p90-vs-baseline",
                "fail",
                "tolerance 25%",
                "p-value",
                "canaryd start slower",
            ] {
                if !email.contains(needle) {
                    return Err(format!("the rollback email lacks `{needle}`:\n{email}"));
                }
            }
            Ok(format!(
                "rolled back {:.1} s after latency +50%",
                flipped.elapsed().as_secs_f64()
            ))
        }
        Kind::Spike => {
            wait_for("the 10% stage", SCENARIO_LIMIT, progressing_at(10)).await?;
            // Let a few healthy analyses pass first (counted, not timed).
            let before = analyses(d, name);
            wait_for("three healthy analyses", SCENARIO_LIMIT, || {
                (analyses(d, name) >= before + 3).then_some(())
            })
            .await?;
            sim.set_behaviour(Version::Canary, Behaviour::Spike { error_rate: 1.0 });
            wait_for("the rollback", SCENARIO_LIMIT, || {
                matches!(weight(d, name), Some((Phase::RolledBack { .. }, 0))).then_some(())
            })
            .await
            .map_err(|e| format!("{e}; audit {:?}", actions(d, name)))?;
            let seen = sim
                .change_seen_at(Version::Canary)
                .ok_or("Prometheus never scraped the spike")?;
            let audit = d.audit(name);
            let back = audit
                .iter()
                .find(|a| a.action == "rolled-back")
                .ok_or("no rolled-back entry")?;
            if !back.reason.contains("error-rate-critical") {
                return Err(format!("not rolled back by the error check: {back:?}"));
            }
            // Analyses that started once Prometheus had the spike, up to the rollback.
            let analyses = d.store.analyses_page(name, None, 1000).unwrap().items;
            let after: Vec<_> = analyses
                .iter()
                .filter(|a| a.at > seen && a.at <= back.at)
                .collect();
            // The first analysis after the scrape may have read Prometheus a moment before that
            // scrape was stored; the next one (one interval later) must roll back.
            if after.len() > 2 {
                return Err(format!(
                    "{} analyses after the spike was scraped before the rollback: {:?}",
                    after.len(),
                    after.iter().map(|a| &a.outcome).collect::<Vec<_>>()
                ));
            }
            Ok(format!(
                "rolled back {} ms after the first scrape with the spike, by analysis #{} after it",
                (back.at - seen).num_milliseconds(),
                after.len()
            ))
        }
        Kind::Leak => wait_for("the pause", SCENARIO_LIMIT, || match weight(d, name) {
            Some((Phase::Paused { reason, .. }, _)) => Some(reason),
            _ => None,
        })
        .await
        .map_err(|e| format!("{e}; audit {:?}", actions(d, name)))
        .and_then(|reason| {
            if reason.contains("memory-trend") {
                Ok(format!("paused: {reason}"))
            } else {
                Err(format!("paused for another reason: {reason}"))
            }
        }),
        Kind::Silent => {
            let reason = wait_for("the pause", SCENARIO_LIMIT, || match weight(d, name) {
                Some((Phase::Paused { reason, .. }, w)) => Some((reason, w)),
                _ => None,
            })
            .await
            .map_err(|e| format!("{e}; audit {:?}", actions(d, name)))?;
            let a = actions(d, name);
            if a.contains(&"stage-advanced".to_string()) || reason.1 != 10 {
                return Err(format!("a silent canary advanced: {a:?}"));
            }
            let analyses = d.store.analyses_page(name, None, 1000).unwrap().items;
            let inconclusive = analyses
                .iter()
                .filter(|a| a.outcome == "inconclusive")
                .count();
            if inconclusive < 4 || !reason.0.contains("inconclusive") {
                return Err(format!(
                    "expected a pause after 4 inconclusive analyses: {inconclusive}, {}",
                    reason.0
                ));
            }
            Ok(format!(
                "paused at 10% after {inconclusive} inconclusive analyses"
            ))
        }
        Kind::Full => {
            // A second short of the scenario's limit, so that a failure shows the audit trail.
            let within = FULL_STAGE_LIMIT - Duration::from_secs(1);
            wait_for("success", within, || {
                matches!(weight(d, name), Some((Phase::Succeeded, 100))).then_some(())
            })
            .await
            .map_err(|e| {
                let audit: Vec<_> = d
                    .audit(name)
                    .into_iter()
                    .map(|a| format!("{} {:?}: {}", a.action, a.new_weight, a.reason))
                    .collect();
                format!("{e}; audit {audit:#?}")
            })?;
            let audit = d.audit(name);
            let at_100 = audit
                .iter()
                .find(|a| a.new_weight == Some(100))
                .ok_or("no step to 100%")?
                .at;
            let done = audit
                .iter()
                .find(|a| a.action == "succeeded")
                .ok_or("no success")?
                .at;
            let stage = (done - at_100).num_milliseconds();
            if stage < 25_000 {
                return Err(format!("the 100% stage lasted only {stage} ms"));
            }
            // Analyses at 100% left the relative check out, saying why, and passed on the others.
            let analyses = d.store.analyses_page(name, None, 1000).unwrap().items;
            let at_full: Vec<_> = analyses.iter().filter(|a| a.at > at_100).collect();
            let p90 = |a: &canaryd::store::Analysis| {
                a.evidence["checks"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["name"] == "p90-vs-baseline"))
                    .map(|c| c["verdict"]["cause"].clone())
            };
            if at_full.is_empty()
                || !at_full
                    .iter()
                    .all(|a| p90(a) == Some("not-applicable".into()))
            {
                return Err(format!(
                    "the p90 check was not 'not applicable' at 100%: {:?}",
                    at_full.iter().map(|a| p90(a)).collect::<Vec<_>>()
                ));
            }
            if at_full.iter().any(|a| a.outcome != "pass") {
                return Err(format!(
                    "analyses at 100% did not all pass: {:?}",
                    at_full.iter().map(|a| &a.outcome).collect::<Vec<_>>()
                ));
            }
            // The status page says why the check was not judged.
            let page = reqwest::get(format!("{}/rollouts/{name}", d.base))
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if !page.contains("not applicable: the baseline has no traffic at 100%") {
                return Err(
                    "the status page does not say why p90-vs-baseline is not judged".into(),
                );
            }
            Ok(format!(
                "succeeded after {:.1} s at 100%, {} analyses there without the relative check",
                stage as f64 / 1000.0,
                at_full.len()
            ))
        }
        Kind::Stop => {
            wait_for("the 25% stage", SCENARIO_LIMIT, progressing_at(25)).await?;
            std::fs::write(d.dir.join("stop"), "e2e").map_err(|e| e.to_string())?;
            let touched = Instant::now();
            let client = reqwest::Client::new();
            let url = format!("{}/v1/rollouts/{name}/weight", d.base);
            // A bound on the event, not a timing: that the stop acts within a second of the
            // daemon's time is proven on controlled time (`daemon_faults`,
            // `the_stop_file_and_the_api_stop_every_rollout_at_zero_within_a_second`); here the
            // machine may be loaded, so the time it took is only reported.
            loop {
                let body: serde_json::Value = client
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                if body["weight"] == 0 {
                    break;
                }
                if touched.elapsed() > Duration::from_secs(10) {
                    return Err(format!("still {body} 10 s after the stop"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let stopped = touched.elapsed();
            if !matches!(weight(d, name), Some((Phase::EmergencyStopped { .. }, 0))) {
                return Err(format!("not emergency-stopped: {:?}", d.state(name)));
            }
            // In-flight requests finish (the baseline serves 50 more); then, over the next 200
            // requests the service sends (counted, not timed), the canary gets none.
            let served = || sim.counters(Version::Baseline).requests();
            let settled = served() + 50;
            wait_for("50 more requests", SCENARIO_LIMIT, || {
                (served() >= settled).then_some(())
            })
            .await?;
            let before = sim.counters(Version::Canary).requests();
            let enough = served() + 200;
            wait_for("200 more requests", SCENARIO_LIMIT, || {
                (served() >= enough).then_some(())
            })
            .await?;
            let after = sim.counters(Version::Canary).requests();
            if after != before {
                return Err(format!("the canary still got {} requests", after - before));
            }
            Ok(format!("0% {} ms after the stop file", stopped.as_millis()))
        }
    }
}

/// The shared rule with two stages, 10% and a 100% stage of 25 s: longer than the p90 check's
/// 20 s window and the error check's 3 s, so most of its analyses see no baseline. Forty
/// inconclusive analyses in a row pause it (the p90 check's evidence accruing does not count
/// towards them). Were the 100% stage's analyses inconclusive, it would never succeed.
fn full_stage_rule(name: &str) -> String {
    let rule = rule(name, name, 40);
    let middle = |weight: &str| {
        let at = rule.find(&format!("weight = {weight}\n")).unwrap();
        let from = rule[..at].rfind("[[stages]]").unwrap();
        let to = from + rule[from..].find("\n\n").unwrap() + 2;
        rule[from..to].to_string()
    };
    let (quarter, half) = (middle("25"), middle("50"));
    let last = "weight = 100\nmin_duration = \"1s\"";
    assert!(rule.contains(last), "the shared rule changed");
    rule.replace(&quarter, "")
        .replace(&half, "")
        .replace(last, "weight = 100\nmin_duration = \"25s\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenarios_against_a_real_prometheus() {
    let scenarios = selected();
    assert!(
        !scenarios.is_empty(),
        "CANARYD_E2E_ONLY selects no scenario"
    );
    let started = Instant::now();
    let stop = CancellationToken::new();
    let sims: Vec<Arc<Simulator>> = scenarios
        .iter()
        .enumerate()
        .map(|(i, (name, _))| Arc::new(Simulator::new(*name, Profile::default(), i as u64 + 1)))
        .collect();
    for (sim, (_, kind)) in sims.iter().zip(&scenarios) {
        match kind {
            Kind::Leak => sim.set_behaviour(
                Version::Canary,
                Behaviour::Leaking {
                    bytes_per_second: 2e6,
                },
            ),
            Kind::Silent => sim.set_behaviour(Version::Canary, Behaviour::Silent),
            _ => {}
        }
    }
    let target = sim::serve(sims.clone(), stop.clone()).await.unwrap();
    let prom = tokio::task::spawn_blocking(move || {
        // Every half second: the p90 check's `rate(...[1s])` at 1 s steps reads windows that do
        // not overlap (overlapping ones make neighbouring points look like one, and a stage's
        // evidence then needs many more of them, issue 19).
        let p = Prometheus::builder()
            .scrape("sim", target.to_string())
            .scrape_interval(Duration::from_millis(500))
            .start();
        assert!(
            p.wait_for_data("http_requests_total", Duration::from_secs(15)),
            "no scrape landed: {}",
            p.log_tail()
        );
        p
    })
    .await
    .unwrap();
    let smtp = Arc::new(
        tokio::task::spawn_blocking(|| crate::smtp_support::SmtpServer::start(Default::default()))
            .await
            .unwrap(),
    );
    let setup = started.elapsed();

    let mut tasks = Vec::new();
    for (i, (sim, (name, kind))) in sims.iter().zip(scenarios).enumerate() {
        let sim = Arc::clone(sim);
        let url = prom.url();
        let stop = stop.clone();
        let smtp = Arc::clone(&smtp);
        tasks.push(tokio::spawn(async move {
            let began = Instant::now();
            let dir = temp_dir(name);
            let rule = match kind {
                Kind::Full => full_stage_rule(name),
                _ => rule(name, name, 4 + 96 * u32::from(kind != Kind::Silent)),
            };
            let d = Daemon::start(&dir, &url, name, &rule, smtp.port).await;
            let traffic = tokio::spawn(sim::drive(
                Arc::clone(&sim),
                Split::http(d.base.clone(), name),
                RATE,
                100 + i as u64,
                stop.clone(),
            ));
            let limit = match kind {
                Kind::Full => FULL_STAGE_LIMIT,
                _ => SCENARIO_LIMIT,
            };
            let outcome =
                tokio::time::timeout(limit, scenario(kind, name, Arc::clone(&sim), &d, &smtp))
                    .await
                    .unwrap_or_else(|_| Err(format!("took more than {limit:?}")));
            traffic.abort();
            if sim.fallbacks() > 0 {
                eprintln!("{name}: {} assignment requests fell back", sim.fallbacks());
            }
            d.stop().await;
            (name, began.elapsed(), outcome)
        }));
    }
    let mut failures = Vec::new();
    eprintln!(
        "setup (Prometheus up, first scrape): {:.1} s",
        setup.as_secs_f64()
    );
    for task in tasks {
        let (name, took, outcome) = task.await.unwrap();
        match outcome {
            Ok(what) => eprintln!("{name:>8}: {:>5.1} s  ok: {what}", took.as_secs_f64()),
            Err(why) => {
                eprintln!("{name:>8}: {:>5.1} s  FAILED: {why}", took.as_secs_f64());
                failures.push(format!("{name}: {why}"));
            }
        }
    }
    stop.cancel();
    drop(prom);
    eprintln!("total: {:.1} s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
