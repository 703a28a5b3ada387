//! Ramp: fan-out at rising rates until p99 passes a threshold (or anything is lost); the
//! highest rate that held is the sustained rate.

use serde::Serialize;

use crate::clients::Server;
use crate::fanout::{self, Load};

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub server: &'static str,
    pub max_p99_ms: f64,
    /// Highest delivered rate (messages per second, over all receivers) that held.
    pub sustained_delivered_per_s: f64,
    /// The send rate at which it held.
    pub sustained_rate: f64,
    pub steps: Vec<fanout::Report>,
}

pub async fn run(
    server: &Server,
    mut load: Load,
    factor: f64,
    max_steps: usize,
    max_p99_ms: f64,
    pid: Option<u32>,
) -> anyhow::Result<Report> {
    let mut steps = Vec::new();
    let (mut best_delivered, mut best_rate) = (0.0, 0.0);
    for _ in 0..max_steps {
        let step = fanout::run(server, &load, pid).await?;
        eprintln!("  ramp step: {}", fanout::summary(&step));
        let expected = load.rate * load.receivers as f64;
        let held = step.lost == 0
            && step.duplicated == 0
            && step.latency_ms.p99 <= max_p99_ms
            && step.delivered_per_s >= 0.95 * expected;
        if held {
            best_delivered = step.delivered_per_s;
            best_rate = load.rate;
        }
        steps.push(step);
        if !held {
            break;
        }
        load.rate *= factor;
    }
    Ok(Report {
        mode: "ramp",
        server: if server.peer { "node-peer" } else { "relay" },
        max_p99_ms,
        sustained_delivered_per_s: best_delivered,
        sustained_rate: best_rate,
        steps,
    })
}

pub fn summary(r: &Report) -> String {
    format!(
        "{}: sustained {:.0} deliveries/s (send rate {:.0}/s) with p99 ≤ {} ms and no loss",
        r.server, r.sustained_delivered_per_s, r.sustained_rate, r.max_p99_ms
    )
}
