//! Fill: the relay's worst case for retained messages. Every room up to `--rooms`, each
//! filled past its history budget with the texts that cost the most to keep (every character
//! JSON-escaped to two bytes), then the server's memory.

use anyhow::Context;
use futures_util::future::join_all;
use protocol::api::Endpoint;
use serde::Serialize;
use serde_json::json;

use crate::clients::Server;
use crate::process;

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub rooms: usize,
    pub messages_per_room: usize,
    pub text_bytes: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub bytes_per_room: f64,
}

pub async fn run(
    server: &Server,
    rooms: usize,
    per_room: usize,
    text_bytes: usize,
    pids: Vec<u32>,
) -> anyhow::Result<Report> {
    let http = reqwest::Client::new();
    let before = process::sample_all(&pids)?.context("no pid")?;
    let text = "\"".repeat(text_bytes);
    // Rooms in parallel batches, each room's messages in order.
    for batch in (0..rooms).collect::<Vec<_>>().chunks(50) {
        let posts = batch.iter().map(|&room| {
            let (http, text) = (http.clone(), text.clone());
            let url = format!(
                "{}{}",
                server.http,
                Endpoint::Messages.path(&format!("fill-{room}"))
            );
            async move {
                for _ in 0..per_room {
                    let answer = http
                        .post(&url)
                        .json(&json!({"from": "fill", "text": text}))
                        .send()
                        .await?;
                    anyhow::ensure!(
                        answer.status().is_success(),
                        "publish refused: {}",
                        answer.status()
                    );
                }
                Ok(())
            }
        });
        for result in join_all(posts).await {
            result?;
        }
    }
    let after = process::sample_all(&pids)?.context("no pid")?;
    Ok(Report {
        mode: "fill",
        rooms,
        messages_per_room: per_room,
        text_bytes,
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        bytes_per_room: (after.rss_kib.saturating_sub(before.rss_kib) * 1024) as f64
            / rooms.max(1) as f64,
    })
}

pub fn summary(report: &Report) -> String {
    format!(
        "relay: {} rooms × {} messages of {} escaped bytes: RSS {} → {} KiB, {:.0} bytes per room",
        report.rooms,
        report.messages_per_room,
        report.text_bytes,
        report.rss_before_kib,
        report.rss_after_kib,
        report.bytes_per_room
    )
}
