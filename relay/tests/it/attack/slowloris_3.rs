//! Item 3: slowloris. Sockets that trickle a request head, or never send one, are closed by
//! `RELAY_HEADER_TIMEOUT`; at `RELAY_MAX_SOCKETS` the oldest of them makes way for a new
//! socket; and through it all `/healthz` answers.
//!
//! Failed on the main of issue 10: nothing closed a socket that never completed its head.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::support::*;

/// The attack: sockets that send a request head one byte at a time, one byte a second.
const TRICKLING: usize = 5000;

/// Opens a socket that trickles a never-ending head; reports on `closed` once the relay has
/// closed it (its read side ends).
async fn trickle(
    addr: SocketAddr,
    closed: mpsc::UnboundedSender<()>,
) -> tokio::task::JoinHandle<()> {
    let socket = within("a trickling socket to connect", TcpStream::connect(addr))
        .await
        .expect("connects");
    tokio::spawn(async move {
        let (mut read, mut write) = socket.into_split();
        let writer = async move {
            let _ = write
                .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
                .await;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if write.write_all(b"X").await.is_err() {
                    // Closed by the relay: the reader below notices too.
                    std::future::pending::<()>().await;
                }
            }
        };
        let reader = async move {
            let mut buf = [0u8; 256];
            // The relay may answer (408) before closing; either way the read side ends.
            while let Ok(n) = read.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            _ = writer => {}
            _ = reader => {}
        }
        let _ = closed.send(());
    })
}

async fn healthz_answers_within_a_second(relay: &Relay) {
    // A fresh client each time: a new socket has to be accepted, as a health checker's is.
    let started = Instant::now();
    let answer = reqwest::Client::new()
        .get(relay.url("/healthz"))
        .timeout(Duration::from_secs(1))
        .send()
        .await;
    let status = answer.map(|a| a.status());
    assert_eq!(
        status.ok(),
        Some(reqwest::StatusCode::OK),
        "/healthz under attack took {:?}",
        started.elapsed()
    );
}

// Two worker threads, as the relay has in production: the 5 000 trickling clients and the
// relay share them, and the health check must still get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_request_heads_are_cut_off_and_health_checks_still_answer() {
    // 5 000 sockets on each end, in this one process.
    let limit = rlimit::increase_nofile_limit(4 * TRICKLING as u64).expect("the fd limit");
    assert!(
        limit >= 2 * TRICKLING as u64 + 256,
        "this test needs {} file descriptors; the hard limit is {limit}",
        2 * TRICKLING + 256
    );
    let relay = Relay::start_with(|c| c.header_timeout = Duration::from_secs(4)).await;
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(TRICKLING);
    for _ in 0..TRICKLING {
        tasks.push(trickle(relay.addr, closed_tx.clone()).await);
    }
    // All are open at once (none can have been cut off yet: each was accepted after the
    // previous connected, and the head limit is seconds away for the newest).
    for _ in 0..5 {
        healthz_answers_within_a_second(&relay).await;
    }
    // Every one of them is closed by the relay, not by the test.
    within_long("every trickling socket to be closed by the relay", async {
        for _ in 0..TRICKLING {
            closed.recv().await.expect("a closed socket");
        }
    })
    .await;
    healthz_answers_within_a_second(&relay).await;
    for task in tasks {
        task.abort();
    }
}

#[tokio::test]
async fn at_the_socket_limit_the_oldest_silent_sockets_make_room() {
    const MAX: usize = 64;
    let relay = Relay::start_with(|c| c.max_sockets = MAX).await;
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let mut silent = Vec::new();
    // Twice as many sockets as the relay may hold, none of which ever says anything. They
    // are accepted in the order they connect.
    for index in 0..2 * MAX {
        let socket = TcpStream::connect(relay.addr).await.expect("connects");
        let tx = closed_tx.clone();
        silent.push(tokio::spawn(async move {
            let mut socket = socket;
            let mut buf = [0u8; 16];
            let _ = socket.read(&mut buf).await;
            let _ = tx.send(index);
        }));
    }
    // The first half made way for the second, oldest first.
    let mut evicted = Vec::new();
    within("the oldest silent sockets to be closed", async {
        while evicted.len() < MAX {
            evicted.push(closed.recv().await.expect("closed"));
        }
    })
    .await;
    evicted.sort_unstable();
    assert_eq!(evicted, (0..MAX).collect::<Vec<_>>(), "the oldest made way");
    // A health check still gets through, and the next oldest makes way for it.
    healthz_answers_within_a_second(&relay).await;
    assert_eq!(
        within("one more eviction", closed.recv()).await,
        Some(MAX),
        "the oldest remaining silent socket"
    );
    let refused = relay
        .metric("relay_rejected_total{reason=\"sockets_full\"}")
        .await
        .expect("counted");
    assert!(refused >= (MAX + 1) as f64, "{refused}");
    for task in silent {
        task.abort();
    }
}

#[tokio::test]
async fn idle_keep_alive_sockets_make_room_and_one_peer_has_a_share() {
    const MAX: usize = 32;
    let relay = Relay::start_with(|c| {
        c.max_sockets = MAX;
        c.max_sockets_per_client = MAX;
    })
    .await;
    // One peer fills the relay with keep-alive connections that asked once and went quiet.
    let hoarder = std::net::IpAddr::from([127, 0, 0, 2]);
    let mut idle = Vec::new();
    for _ in 0..MAX {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind((hoarder, 0).into()).expect("bind");
        let mut stream = socket.connect(relay.addr).await.expect("connects");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("request");
        let mut answer = vec![0u8; 512];
        let n = within("an answer", stream.read(&mut answer))
            .await
            .expect("read");
        assert!(String::from_utf8_lossy(&answer[..n]).contains("200 OK"));
        idle.push(stream);
    }
    // Another client still gets an answer: an idle connection makes room.
    let other = std::net::IpAddr::from([127, 0, 0, 3]);
    let answer = http_from(other)
        .get(relay.url("/healthz"))
        .send()
        .await
        .expect("a health check");
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    drop(idle);
}

#[tokio::test]
async fn one_peer_cannot_open_more_than_its_share_of_sockets() {
    const SHARE: usize = 8;
    let relay = Relay::start_with(|c| c.max_sockets_per_client = SHARE).await;
    let hoarder = std::net::IpAddr::from([127, 0, 0, 2]);
    let addr = relay.addr;
    let connect = move || async move {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind((hoarder, 0).into()).expect("bind");
        socket.connect(addr).await.expect("connects")
    };
    let mut held = Vec::new();
    for _ in 0..SHARE {
        held.push(connect().await);
    }
    // All admitted (the gauge also counts the request that reads it), none refused...
    relay.wait_metric("relay_sockets", (SHARE + 1) as f64).await;
    let refused = "relay_rejected_total{reason=\"client_sockets_full\"}";
    assert_eq!(relay.metric(refused).await, Some(0.0));
    // ...and the next one from the same peer is closed at once.
    let mut over = connect().await;
    relay.wait_metric(refused, 1.0).await;
    let mut byte = [0u8; 1];
    let read = within("the refused socket to be closed", over.read(&mut byte)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Another peer is not affected.
    let answer = http_from(std::net::IpAddr::from([127, 0, 0, 3]))
        .get(relay.url("/healthz"))
        .send()
        .await
        .expect("a health check");
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    drop(held);
}

#[tokio::test]
async fn websockets_keep_their_socket_place_after_the_upgrade() {
    let relay = Relay::start().await;
    let mut sockets = Vec::new();
    for _ in 0..5 {
        let mut ws = Ws::connect(&relay.ws_url("r", "")).await;
        ws.welcome().await;
        sockets.push(ws);
    }
    // Five WebSockets, and the socket of the request that reads the gauge.
    relay.wait_metric("relay_sockets", 6.0).await;
    drop(sockets);
    relay.wait_metric("relay_sockets", 1.0).await;
}

#[tokio::test]
async fn a_trickled_request_body_is_cut_off_by_the_header_timeout() {
    let relay = Relay::start_with(|c| c.header_timeout = Duration::from_secs(1)).await;
    let mut socket = TcpStream::connect(relay.addr).await.expect("connects");
    socket
        .write_all(
            b"POST /api/rooms/r/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{\"from\":",
        )
        .await
        .expect("a head and the start of a body");
    // Nothing more: the relay answers 408 once the body is late, and keeps nothing.
    let mut answer = Vec::new();
    within(
        "the relay to give up on the body",
        socket.read_to_end(&mut answer),
    )
    .await
    .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_eq!(relay.poll("r", "").await.messages.len(), 0);
}
