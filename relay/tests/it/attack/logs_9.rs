//! Item 9: refusals do not flood the log. Each is logged at debug only, with a periodic
//! summary by reason at info; a log nobody reads never blocks a request; and
//! `RELAY_LOG_FORMAT=json` writes one JSON object per line.
//!
//! Failed on the main of issue 10: every 503 was logged at ERROR (plus a WARN), and a relay
//! whose stderr was not read stopped answering once the pipe was full.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;

use reqwest::StatusCode;

use crate::support::process::Process;
use crate::support::*;

/// Refused requests of several kinds: unknown endpoints, bad rooms, foreign hosts.
async fn refuse(addr: SocketAddr, count: usize) {
    let client = http();
    for i in 0..count {
        let request = match i % 3 {
            0 => client.get(format!("http://{addr}/api/nowhere")),
            1 => client.get(format!("http://{addr}/api/rooms/bad%20room/messages")),
            _ => client
                .get(format!("http://{addr}/healthz"))
                .header("host", "attacker.example"),
        };
        let status = request.send().await.expect("an answer").status();
        assert!(status.is_client_error(), "{status}");
    }
}

#[tokio::test]
async fn refusals_are_summarized_not_logged_one_by_one() {
    const REFUSED: u64 = 300;
    let (mut process, addr) = Process::spawn(&[], &[("RELAY_LOG_SUMMARY", "1s")]).await;
    refuse(addr, REFUSED as usize).await;
    // The summaries add up to every refusal; no other line (at any level) is about them.
    let mut summarized = 0;
    let mut reasons = String::new();
    let mut lines = Vec::new();
    within_long("the summaries to count every refusal", async {
        while summarized < REFUSED {
            let line = process.logged("").await;
            if line.contains("requests refused") {
                let total: u64 = line
                    .split("total=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .expect("a total");
                summarized += total;
                reasons.push_str(&line);
            } else {
                lines.push(line);
            }
        }
    })
    .await;
    assert_eq!(summarized, REFUSED);
    for reason in ["not_found=", "invalid_room=", "invalid_host="] {
        assert!(reasons.contains(reason), "{reason} in {reasons}");
    }
    assert!(
        lines
            .iter()
            .all(|line| !line.contains("refused") && !line.contains("failed")),
        "refusals logged one by one: {lines:?}"
    );
}

#[tokio::test]
async fn a_log_nobody_reads_never_blocks_a_request() {
    // Every request logs at debug; the test reads the log only until the relay listens, then
    // leaves the pipe to fill (64 KiB) and keeps making requests.
    let mut child = Process::command(&[], &[("RUST_LOG", "debug")])
        .spawn()
        .expect("relay binary starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).expect("the log") > 0,
            "log ended"
        );
        if let Some(rest) = line.split("listening addr=").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .expect("an address")
                .parse()
                .expect("a socket address");
        }
    };
    within_long("3000 requests while nobody reads the log", async {
        refuse(addr, 3000).await;
    })
    .await;
    let answer = http()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(answer.status(), StatusCode::OK);
    let _ = child.kill();
    let _ = child.wait();
    drop(stderr);
}

#[tokio::test]
async fn the_json_format_writes_one_object_per_line() {
    let mut process = Process::spawn_raw(&[], &[("RELAY_LOG_FORMAT", "json")]);
    let line = process.logged("listening").await;
    let object: serde_json::Value = serde_json::from_str(&line).expect("a JSON object");
    assert_eq!(object["level"], "INFO", "{line}");
    assert_eq!(object["fields"]["message"], "listening", "{line}");
    let addr: SocketAddr = object["fields"]["addr"]
        .as_str()
        .expect("the address")
        .parse()
        .expect("a socket address");
    assert_eq!(Client::new(addr).poll("r", "").await.messages.len(), 0);
}
