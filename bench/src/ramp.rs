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
    /// The ramp stopped because the load tool itself could not send at the asked rate (it
    /// shares the machine): the server's limit is higher than this report shows.
    pub generator_limited: bool,
    pub steps: Vec<fanout::Report>,
}

pub async fn run(
    server: &Server,
    mut load: Load,
    factor: f64,
    max_steps: usize,
    max_p99_ms: f64,
    pids: &[u32],
) -> anyhow::Result<Report> {
    let mut steps = Vec::new();
    let (mut best_delivered, mut best_rate) = (0.0, 0.0);
    let mut generator_limited = false;
    for _ in 0..max_steps {
        let step = fanout::run(server, &load, pids).await?;
        eprintln!("  ramp step: {}", fanout::summary(&step));
        // The server held if it delivered everything that was sent, in time.
        let held = step.lost == 0 && step.duplicated == 0 && step.latency_ms.p99 <= max_p99_ms;
        // Whether the load tool kept up (sent what was asked, read without saturating).
        generator_limited = step
            .flags
            .iter()
            .any(|f| matches!(*f, "sender_lagged" | "tool_saturated"));
        if held {
            best_delivered = step.delivered_per_s;
            best_rate = step.sent as f64 / load.duration.as_secs_f64();
        }
        steps.push(step);
        if !held || generator_limited {
            break;
        }
        load.rate *= factor;
    }
    Ok(Report {
        mode: "ramp",
        server: server.name,
        max_p99_ms,
        sustained_delivered_per_s: best_delivered,
        sustained_rate: best_rate,
        generator_limited,
        steps,
    })
}

pub fn summary(r: &Report) -> String {
    let limit = if r.generator_limited {
        " (the load tool could not send faster: the server's limit is higher)"
    } else {
        ""
    };
    format!(
        "{}: sustained {:.0} deliveries/s (send rate {:.0}/s) with p99 ≤ {} ms and no loss{limit}",
        r.server, r.sustained_delivered_per_s, r.sustained_rate, r.max_p99_ms
    )
}
