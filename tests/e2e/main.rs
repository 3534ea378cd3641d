//! End to end, as users run canaryd: `canaryd demo` as the real binary (`e2e_demo`), and the
//! simulated service scraped by a real Prometheus and judged by embedded daemons in every
//! scenario a release meets (`e2e_rollouts`).
//!
//! One binary for both (each test binary links the whole crate); run one part with
//! `cargo test --test e2e e2e_demo`.

#[path = "../support/prometheus.rs"]
mod prometheus_support;
#[path = "../support/sim.rs"]
mod sim_support;
#[path = "../support/smtp.rs"]
mod smtp_support;

mod e2e_demo;
mod e2e_rollouts;
