//! Faults on the network between a relay and Redis, made by a proxy in between
//! ([`FaultProxy`]): a stall, a partition, a slow link, and a link that loses one direction.
//!
//! Every test runs the same scene: relay A reaches Redis through the proxy, relay B directly;
//! readers of every transport on both; a publisher on each relay that sends throughout, each
//! text under its own idempotency key, repeated until it is acknowledged — as the page does.
//! Each test checks what the relay is documented to do during its fault (docs/SCALING.md,
//! "When Redis is down"), then heals the link and checks the end state: every text stored
//! exactly once, every acknowledged id holds its text, and every reader received the room's
//! whole history once, in order.

use std::collections::HashSet;

use futures_util::stream::SplitSink;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use protocol::api::{Endpoint, IDEMPOTENCY_KEY};
use protocol::{ErrorBody, ErrorCode, PublishResponse};
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;

use crate::support::cluster::*;
use crate::support::fault::{Fault, FaultProxy, Way};
use crate::support::redis::{RedisServer, relay_on_with, wait_ready};
use crate::support::*;

const ROOM: &str = "faults";

/// One answer a publisher was given.
#[derive(Clone, Debug)]
struct Answer {
    /// The test's phase when the send left and when its answer arrived (see
    /// [`Scene::phase`]): a send that straddles a change of phase belongs to neither.
    sent: usize,
    phase: usize,
    status: StatusCode,
    code: Option<ErrorCode>,
    took: Duration,
}

/// What a publisher sent and was told.
#[derive(Debug, Default)]
struct Published {
    /// Acknowledged texts with their ids, in sending order.
    acknowledged: Vec<(u64, String)>,
    answers: Vec<Answer>,
}

struct Publisher {
    stop: watch::Sender<bool>,
    task: JoinHandle<Published>,
    /// Texts acknowledged so far.
    acknowledged: Arc<AtomicUsize>,
    /// Answers other than an acknowledgement, so far.
    refused: Arc<AtomicUsize>,
}

/// Sends `{name}-{n}` for n = 0, 1, … to `relay`, each under the key `{name}.{n}`, repeating a
/// text until it is acknowledged (201, or 200 for a repeat), like the page's outbox.
fn publisher(relay: SocketAddr, name: &'static str, phase: Arc<AtomicUsize>) -> Publisher {
    let (stop, mut stopped) = watch::channel(false);
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn({
        let (acknowledged, refused) = (acknowledged.clone(), refused.clone());
        async move {
            let client = http();
            let url = Client::new(relay).url(&Endpoint::Messages.path(ROOM));
            let mut published = Published::default();
            for n in 0.. {
                if *stopped.borrow_and_update() {
                    return published;
                }
                let text = format!("{name}-{n}");
                loop {
                    let started = Instant::now();
                    let sent = phase.load(Ordering::Acquire);
                    let response = within(
                        "a publish answer",
                        client
                            .post(&url)
                            .header(IDEMPOTENCY_KEY, format!("{name}.{n}"))
                            .json(&json!({"from": name, "text": text}))
                            .send(),
                    )
                    .await
                    .expect("the relay answers");
                    let status = response.status();
                    let body = response.text().await.expect("a body");
                    let mut answer = Answer {
                        sent,
                        phase: phase.load(Ordering::Acquire),
                        status,
                        code: None,
                        took: started.elapsed(),
                    };
                    if status == StatusCode::CREATED || status == StatusCode::OK {
                        let id = serde_json::from_str::<PublishResponse>(&body)
                            .expect("a publish answer")
                            .id;
                        published.answers.push(answer);
                        published.acknowledged.push((id, text));
                        acknowledged.fetch_add(1, Ordering::AcqRel);
                        break;
                    }
                    let error: ErrorBody = serde_json::from_str(&body).expect("an error body");
                    answer.code = Some(error.code);
                    published.answers.push(answer);
                    refused.fetch_add(1, Ordering::AcqRel);
                    // The page's resend is debounced; a short pause keeps the loop gentle.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            unreachable!()
        }
    });
    Publisher {
        stop,
        task,
        acknowledged,
        refused,
    }
}

impl Publisher {
    /// Waits until `more` further texts have been acknowledged.
    async fn acknowledges(&self, more: usize) {
        let target = self.acknowledged.load(Ordering::Acquire) + more;
        eventually("texts to be acknowledged", || async {
            (self.acknowledged.load(Ordering::Acquire) >= target).then_some(())
        })
        .await;
    }

    /// Waits until `more` further sends have been refused (or left unknown).
    async fn refuses(&self, more: usize) {
        let target = self.refused.load(Ordering::Acquire) + more;
        eventually("sends to be refused", || async {
            (self.refused.load(Ordering::Acquire) >= target).then_some(())
        })
        .await;
    }

    async fn finish(self) -> Published {
        self.stop.send_replace(true);
        within_long("the publisher to finish its last text", self.task)
            .await
            .expect("publisher")
    }
}

/// Two relays on one Redis, A through the fault proxy; readers of every transport; a
/// publisher on each relay.
struct Scene {
    _redis: RedisServer,
    proxy: FaultProxy,
    a: Relay,
    b: Relay,
    /// Set by the test as it moves through its fault; publishers stamp answers with it.
    phase: Arc<AtomicUsize>,
    on_a: Publisher,
    on_b: Publisher,
    readers: Vec<(&'static str, JoinHandle<Received>)>,
    /// The WebSocket readers' sending halves, kept so that they answer the relays' pings.
    _sinks: Vec<SplitSink<Socket, tungstenite::Message>>,
}

impl Scene {
    async fn start(redis_timeout: Duration) -> Scene {
        let redis = RedisServer::start_persistent().await;
        let proxy = FaultProxy::start(redis.port).await;
        let proxied = proxy.url();
        // Pings every second, so that a WebSocket reader hears from its relay while the bus is
        // away and nothing arrives.
        let a = relay_on_with(&redis, |config| {
            config.redis_url = Some(proxied);
            config.redis_timeout = redis_timeout;
            config.ws_ping = Duration::from_secs(1);
        })
        .await;
        let b = relay_on_with(&redis, |config| {
            config.redis_timeout = redis_timeout;
            config.ws_ping = Duration::from_secs(1);
        })
        .await;
        let (sink_a, ws_a) = ws_reader(ws_url(a.addr, ROOM, "name=ws-a")).await;
        let sse_a = sse_reader(sse_url(a.addr, ROOM, "name=sse-a")).await;
        let (sink_b, ws_b) = ws_reader(ws_url(b.addr, ROOM, "name=ws-b")).await;
        let polls = poller(vec![a.addr, b.addr], ROOM, 5, 100);
        let phase = Arc::new(AtomicUsize::new(0));
        let on_a = publisher(a.addr, "on-a", phase.clone());
        let on_b = publisher(b.addr, "on-b", phase.clone());
        let scene = Scene {
            _redis: redis,
            proxy,
            a,
            b,
            phase,
            on_a,
            on_b,
            readers: vec![
                ("WebSocket on A", ws_a),
                ("SSE on A", sse_a),
                ("WebSocket on B", ws_b),
                ("poller on both", polls),
            ],
            _sinks: vec![sink_a, sink_b],
        };
        scene.on_a.acknowledges(10).await;
        scene.on_b.acknowledges(10).await;
        scene
    }

    fn phase(&self, phase: usize) {
        self.phase.store(phase, Ordering::Release);
    }

    /// Heals the link, waits until both relays acknowledge texts again, ends the room, and
    /// checks that every text was stored once and every reader received the whole room once,
    /// in order. Returns what the publishers were told.
    async fn heal_and_check(self) -> (Published, Published) {
        self.proxy.heal();
        self.phase(usize::MAX);
        wait_ready(&self.a, true).await;
        self.on_a.acknowledges(10).await;
        self.on_b.acknowledges(10).await;
        let on_a = self.on_a.finish().await;
        let on_b = self.on_b.finish().await;
        self.b.post(ROOM, "end", END).await;
        let mut readers = Vec::new();
        for (name, reader) in self.readers {
            readers.push((name, within_long(name, reader).await.expect("reader")));
        }
        let history = history(&self.b, ROOM).await;
        let mut seen = HashSet::new();
        for message in &history {
            assert!(
                seen.insert(message.text.as_str()),
                "{} stored twice",
                message.text
            );
        }
        let stored: HashSet<(u64, &str)> =
            history.iter().map(|m| (m.id, m.text.as_str())).collect();
        for (id, text) in on_a.acknowledged.iter().chain(&on_b.acknowledged) {
            assert!(
                stored.contains(&(*id, text.as_str())),
                "acknowledged {id} {text} is not stored as such"
            );
        }
        let acknowledged = on_a.acknowledged.len() + on_b.acknowledged.len();
        assert_eq!(
            history.len(),
            acknowledged + 1,
            "the room holds the acknowledged texts and END, nothing else"
        );
        assert_all_received(&readers, &history);
        (on_a, on_b)
    }
}

/// Answers to sends made and answered in `phase`.
fn during(published: &Published, phase: usize) -> Vec<&Answer> {
    published
        .answers
        .iter()
        .filter(|answer| answer.sent == phase && answer.phase == phase)
        .collect()
}

#[tokio::test]
async fn a_stalled_link_to_redis_answers_sends_within_the_timeout_and_loses_nothing() {
    let timeout = Duration::from_secs(1);
    let scene = Scene::start(timeout).await;
    let stalled_at = Instant::now();
    scene.proxy.set(Fault::Stall);
    // Sends already answered when the stall began are not the stall's.
    scene.on_a.refuses(1).await;
    scene.phase(1);
    // Redis neither answers nor closes anything. A says it is not ready, and keeps answering
    // its senders (never a hang); B, on a link of its own, carries on. The listener's ping
    // finds the subscription silent, and from then on sends are refused before they leave.
    wait_ready(&scene.a, false).await;
    scene.on_a.refuses(3).await;
    scene.on_b.acknowledges(10).await;
    scene.a.wait_metric("relay_bus_connected", 0.0).await;
    // (The first may have been on its way already.)
    scene.on_a.refuses(2).await;
    // At least 5 s in all.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(stalled_at.elapsed())).await;
    let (on_a, _) = scene.heal_and_check().await;
    let stalled = during(&on_a, 1);
    assert!(stalled.len() >= 4, "{stalled:?}");
    // Within the timeout, give or take a busy machine: a hang would last until the heal.
    assert!(
        stalled.iter().all(|answer| answer.took < timeout * 4),
        "{stalled:?}"
    );
    assert!(
        stalled.iter().all(|answer| matches!(
            answer.code,
            Some(ErrorCode::OutcomeUnknown | ErrorCode::Unavailable)
        )),
        "sends during the stall are refused or said unknown, never acknowledged: {stalled:?}"
    );
    // The first sends of the stall went out to Redis and were held: their outcome is unknown
    // until the link heals, and then they are stored — their repeats are answered 200 with
    // the id given to the first. Once the relay knew Redis was away, refusals were certain.
    assert!(
        stalled
            .iter()
            .any(|answer| answer.code == Some(ErrorCode::OutcomeUnknown)),
        "{stalled:?}"
    );
    assert!(
        stalled
            .iter()
            .any(|answer| answer.code == Some(ErrorCode::Unavailable)),
        "{stalled:?}"
    );
    let repeats = on_a
        .answers
        .iter()
        .filter(|answer| answer.status == StatusCode::OK)
        .count();
    assert!(
        repeats >= 1,
        "a held send was stored, and its repeat told so"
    );
}

#[tokio::test]
async fn a_partition_keeps_clients_attached_refuses_sends_certainly_and_catches_up() {
    let scene = Scene::start(Duration::from_secs(1)).await;
    let cut_at = Instant::now();
    scene.proxy.set(Fault::Partition);
    // Every connection to Redis is cut and new ones are refused: A knows at once that Redis
    // is away, so its refusals are certain (503 `unavailable`: nothing stored).
    wait_ready(&scene.a, false).await;
    scene.a.wait_metric("relay_bus_connected", 0.0).await;
    scene.phase(1);
    scene.on_a.refuses(3).await;
    // Meanwhile B goes on; A's readers stay attached, and get B's messages after the heal.
    scene.on_b.acknowledges(10).await;
    // At least 5 s in all: several of the readers' ping intervals (1 s), and longer than the
    // listener's longest wait between attempts to reconnect.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(cut_at.elapsed())).await;
    let (on_a, _) = scene.heal_and_check().await;
    let partitioned = during(&on_a, 1);
    assert!(!partitioned.is_empty());
    assert!(
        partitioned.iter().all(|answer| {
            answer.status == StatusCode::SERVICE_UNAVAILABLE
                && answer.code == Some(ErrorCode::Unavailable)
        }),
        "refused, certainly: {partitioned:?}"
    );
}

#[tokio::test]
async fn a_slow_link_to_redis_slows_sends_by_its_round_trip_and_refuses_nothing() {
    // A timeout well above the round trip: the documented condition for a slow link to be
    // only slow.
    let scene = Scene::start(Duration::from_secs(10)).await;
    scene.proxy.set(Fault::Delay(Duration::from_millis(200)));
    // Answers under way when the delay began may still arrive quickly; from phase 1 on, every
    // send crossed the slow link both ways.
    scene.on_a.acknowledges(1).await;
    scene.phase(1);
    scene.on_a.acknowledges(11).await;
    let ready = http()
        .get(scene.a.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK, "slow is not unready");
    scene.phase(2);
    let (on_a, _) = scene.heal_and_check().await;
    let slow = during(&on_a, 1);
    assert!(slow.len() >= 10);
    assert!(
        on_a.answers.iter().all(|answer| answer.code.is_none()),
        "nothing refused: {:?}",
        on_a.answers
    );
    assert!(
        slow.iter()
            .all(|answer| answer.took >= Duration::from_millis(400)),
        "each send waited for the round trip: {slow:?}"
    );
}

#[tokio::test]
async fn a_link_that_loses_one_direction_leaves_outcomes_unknown_and_retries_store_once() {
    let scene = Scene::start(Duration::from_secs(1)).await;
    // Answers lost: A's scripts run in Redis, and A never hears back.
    scene.proxy.set(Fault::Lose(Way::ToRelay));
    scene.on_a.refuses(1).await;
    scene.phase(1);
    scene.on_a.refuses(3).await;
    scene.proxy.heal();
    scene.phase(2);
    wait_ready(&scene.a, true).await;
    scene.on_a.acknowledges(3).await;
    // Commands lost: nothing A sends reaches Redis.
    scene.proxy.set(Fault::Lose(Way::ToRedis));
    scene.on_a.refuses(1).await;
    scene.phase(3);
    scene.on_a.refuses(3).await;
    scene.phase(4);
    let (on_a, _) = scene.heal_and_check().await;
    for phase in [1, 3] {
        let lossy = during(&on_a, phase);
        assert!(
            lossy
                .iter()
                .any(|answer| answer.code == Some(ErrorCode::OutcomeUnknown)),
            "a send with no answer is said to be unknown: {lossy:?}"
        );
        assert!(
            lossy.iter().all(|answer| answer.code.is_some()),
            "nothing acknowledged without an answer: {lossy:?}"
        );
    }
    // The sends whose answers were lost had been stored: after the heal, the first
    // acknowledgement is a repeat's, answered 200 with the id given to the lost one.
    assert!(
        during(&on_a, 2)
            .iter()
            .find(|answer| answer.code.is_none())
            .is_some_and(|answer| answer.status == StatusCode::OK),
        "{:?}",
        during(&on_a, 2)
    );
}
