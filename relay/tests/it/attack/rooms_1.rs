//! Item 1: rooms come and go. At `RELAY_MAX_ROOMS` the least recently active room nobody
//! listens to makes way; a room with listeners never does; `RELAY_ROOM_TTL` expires unused
//! rooms; `RELAY_NEW_ROOMS_PER_CLIENT` bounds how fast one client creates them; and each
//! incarnation of a room has its own epoch, so a cursor from an evicted one is told
//! `epoch_changed`. With the memory bus and with Redis.
//!
//! Failed on the main of issue 10: with RELAY_MAX_ROOMS=3, a fourth room was refused 503
//! `too_many_rooms` for good (memory: until restart; Redis: for ever, on every relay).

use std::time::Duration;

use protocol::ResetReason;
use reqwest::StatusCode;

use crate::support::redis::{RedisServer, relay_on_with};
use crate::support::*;

fn small(config: &mut ::relay::config::Config) {
    config.max_rooms = 3;
    config.trusted_proxies = vec!["127.0.0.1".into()];
}

async fn full_rooms_make_way_and_a_new_incarnation_has_a_new_epoch(relay: &Relay) {
    for room in ["r1", "r2", "r3"] {
        let (status, body) = relay.post_as("198.51.100.1", room, "hi").await;
        assert_eq!(status, StatusCode::CREATED, "{room}: {body}");
    }
    // A listener keeps r2 in place, although it becomes the least recently active room.
    let mut listener = Sse::connect(&relay.sse_url("r2", ""), &[])
        .await
        .expect("SSE");
    listener.welcome().await;
    relay.post_as("198.51.100.1", "r1", "second").await;
    relay.post_as("198.51.100.1", "r3", "second").await;
    let old = relay.poll("r1", "").await;
    assert_eq!(old.last_id, 2);
    // Another client opens new rooms: r1, then r3 (the least recently active ones nobody
    // listens to) make way; r2, older still, stays.
    for room in ["r4", "r5"] {
        let (status, body) = relay.post_as("198.51.100.2", room, "new").await;
        assert_eq!(status, StatusCode::CREATED, "{room}: {body}");
    }
    assert_eq!(
        relay.poll("r2", "").await.last_id,
        1,
        "the listened room stays"
    );
    // r1 comes back as a new incarnation: a cursor of the old one is told, not skipped.
    let (status, _) = relay.post_as("198.51.100.2", "r1", "reborn").await;
    assert_eq!(status, StatusCode::CREATED);
    let resumed = relay
        .poll("r1", &format!("after=2&epoch={}", old.epoch))
        .await;
    assert_ne!(resumed.epoch, old.epoch);
    assert_eq!(
        resumed.reset.map(|r| r.reason),
        Some(ResetReason::EpochChanged)
    );
    assert_eq!(texts(&resumed.messages), ["reborn"]);
    // Every room is listened to: then, and only then, a new one is refused.
    let mut held = vec![listener];
    for room in ["r1", "r5"] {
        let mut sse = Sse::connect(&relay.sse_url(room, ""), &[])
            .await
            .expect("SSE");
        sse.welcome().await;
        held.push(sse);
    }
    let (status, body) = relay.post_as("198.51.100.3", "r6", "no room").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("too_many_rooms"), "{body}");
}

#[tokio::test]
async fn full_rooms_make_way_in_memory() {
    let relay = Relay::start_with(small).await;
    full_rooms_make_way_and_a_new_incarnation_has_a_new_epoch(&relay).await;
}

#[tokio::test]
async fn full_rooms_make_way_with_redis() {
    let redis = RedisServer::start().await;
    let relay = relay_on_with(&redis, small).await;
    full_rooms_make_way_and_a_new_incarnation_has_a_new_epoch(&relay).await;
}

async fn one_client_cannot_open_rooms_faster_than_its_budget(relay: &Relay) {
    for i in 0..5 {
        let (status, body) = relay.post_as("198.51.100.1", &format!("a{i}"), "x").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = relay.post_as("198.51.100.1", "a5", "x").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // Rooms that exist cost nothing to join or post in.
    assert_eq!(
        relay.post_as("198.51.100.1", "a0", "x").await.0,
        StatusCode::CREATED
    );
    // Another client still creates one.
    assert_eq!(
        relay.post_as("198.51.100.2", "b0", "x").await.0,
        StatusCode::CREATED
    );
}

fn budget(config: &mut ::relay::config::Config) {
    config.new_rooms_per_client = 5;
    config.trusted_proxies = vec!["127.0.0.1".into()];
}

#[tokio::test]
async fn new_rooms_are_budgeted_per_client_in_memory() {
    one_client_cannot_open_rooms_faster_than_its_budget(&Relay::start_with(budget).await).await;
}

#[tokio::test]
async fn new_rooms_are_budgeted_per_client_with_redis() {
    let redis = RedisServer::start().await;
    one_client_cannot_open_rooms_faster_than_its_budget(&relay_on_with(&redis, budget).await).await;
}

async fn unused_rooms_expire_and_listened_ones_do_not(relay: &Relay) {
    relay.post("quiet", "a", "gone soon").await;
    relay.post("busy", "a", "kept").await;
    let mut listener = Sse::connect(&relay.sse_url("busy", ""), &[])
        .await
        .expect("SSE");
    listener.welcome().await;
    within_long("the unused room to expire", async {
        loop {
            if relay.poll("quiet", "").await.epoch.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    // Published at the same time, but listened to.
    assert_eq!(texts(&relay.poll("busy", "").await.messages), ["kept"]);
}

fn short_ttl(config: &mut ::relay::config::Config) {
    // With Redis, listened rooms are renewed every second (a quarter of this): a loaded
    // machine has four chances before the listened room could expire.
    config.room_ttl = Duration::from_secs(4);
}

#[tokio::test]
async fn unused_rooms_expire_in_memory() {
    unused_rooms_expire_and_listened_ones_do_not(&Relay::start_with(short_ttl).await).await;
}

#[tokio::test]
async fn unused_rooms_expire_with_redis() {
    let redis = RedisServer::start().await;
    unused_rooms_expire_and_listened_ones_do_not(&relay_on_with(&redis, short_ttl).await).await;
}
