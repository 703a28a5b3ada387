//! SIGTERM: the real binary stops within its deadline, and every client sees a clean end.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the relay binary on port 0 and reads the address it logs.
fn spawn_relay(deadline: &str) -> (Process, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["--addr", "127.0.0.1:0", "--shutdown-deadline", deadline])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("relay binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("addr=").nth(1) {
                let addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(PATIENCE)
        .expect("the relay logs its listening address")
        .parse()
        .expect("a socket address");
    (Process { child }, addr)
}

/// Waits (bounded) for the process to exit; returns its status.
async fn exited(process: &mut Process) -> std::process::ExitStatus {
    within("the process to exit", async {
        loop {
            if let Some(status) = process.child.try_wait().expect("wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn sigterm(process: &Process) {
    let status = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_ends_every_stream_cleanly_within_the_deadline() {
    let (mut process, addr) = spawn_relay("5s");
    let relay = Relay::attach(addr);
    let mut ws = Ws::connect(&relay.ws_url("bye", "")).await;
    ws.welcome().await;
    let mut sse = Sse::connect(&relay.url("/api/rooms/bye/events"), &[])
        .await
        .expect("SSE opens");
    sse.welcome().await;
    let long_poll =
        tokio::spawn(async move { Relay::attach(addr).poll("bye", "after=0&wait=25").await });
    // The long poll is parked once a message would wake it; prove it with one.
    relay.post("bye", "a", "before").await;
    assert_eq!(ws.message().await.text, "before");
    assert_eq!(sse.message().await.text, "before");
    let _ = within("the first long poll", long_poll)
        .await
        .expect("poll");
    let long_poll =
        tokio::spawn(async move { Relay::attach(addr).poll("bye", "after=1&wait=25").await });
    // Give the poll a moment to reach the relay; it is answered by shutdown either way.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    sigterm(&process);

    let frame = ws.closed().await.expect("a close frame");
    assert_eq!(
        u16::from(frame.code),
        1001,
        "WebSocket closed as going away"
    );
    assert_eq!(sse.next().await, None, "SSE stream ended cleanly");
    let answer = within("the long poll to be answered", long_poll)
        .await
        .expect("long poll answered with 200");
    assert!(answer.messages.is_empty());

    let status = exited(&mut process).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped within the deadline ({:?})",
        started.elapsed()
    );
}

#[tokio::test]
async fn sigterm_exits_by_the_deadline_even_if_a_client_hangs_on() {
    let (mut process, addr) = spawn_relay("1s");
    // A raw TCP connection that sends half a request and then nothing: it never finishes.
    let mut stuck = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut stuck, b"GET /api/rooms/x/messages HTTP/1.1\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    sigterm(&process);
    let status = exited(&mut process).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "exited by its 1 s deadline ({:?})",
        started.elapsed()
    );
    drop(stuck);
}
