//! Shared state handed to every handler, and the admission of long-lived connections.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use protocol::{ErrorCode, Transport};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::budget::{Budgets, ClientConnection};
use crate::bus::{Bus, BusError, Cursor, Draft, Published, Subscription};
use crate::client::{ClientKey, TrustedProxies};
use crate::config::Config;
use crate::drain::{self, Closing, Drain};
use crate::error::ApiError;
use crate::host::HostPolicy;
use crate::metrics::Metrics;
use crate::origin::OriginPolicy;
use crate::presence::Presence;
use crate::validate::{RoomName, TextLimits};

/// What a client refused a connection is told to wait (`Retry-After`): long enough for a
/// page's other tab or an earlier stream to have closed.
const CONNECTION_RETRY: Duration = Duration::from_secs(5);

/// Presence for `config`: shared through Redis when the bus is.
fn presence(config: &Config, metrics: Arc<Metrics>) -> Presence {
    let redis = config
        .redis_url
        .as_deref()
        .map(|url| (url, config.redis_timeout));
    Presence::new(config.presence_limits(), metrics.clone(), redis).unwrap_or_else(|err| {
        // The bus opened the same URL first, so this cannot happen; if it did, presence
        // would be this relay's alone.
        tracing::error!(%err, "presence cannot use Redis; keeping it in memory");
        Presence::new(config.presence_limits(), metrics, None)
            .expect("in memory, presence cannot fail")
    })
}

/// The handle every handler gets: one `Arc`, so that each request's copy (axum clones the
/// state for every extraction) is one reference count, whatever the state holds; no lock on
/// the state itself.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub bus: Bus,
    pub config: Arc<Config>,
    pub limits: TextLimits,
    pub origins: Arc<OriginPolicy>,
    pub hosts: Arc<HostPolicy>,
    pub metrics: Arc<Metrics>,
    /// Who a request comes from (behind trusted proxies, from their headers).
    pub proxies: Arc<TrustedProxies>,
    /// What each client may spend: connections, publishing, requests, new rooms.
    pub budgets: Arc<Budgets>,
    /// One permit per open WebSocket, SSE stream or pending long poll.
    connections: Arc<Semaphore>,
    /// Cancelled on SIGINT/SIGTERM; every long-lived stream watches it.
    pub shutdown: CancellationToken,
    /// When each stream closes once the shutdown began (`RELAY_DRAIN_WINDOW`).
    pub drain: Drain,
    /// New streams per second (`RELAY_ACCEPT_RATE`).
    admission: Admission,
    /// Who is in each room and who is typing.
    pub presence: Presence,
    /// Upgraded WebSocket sessions and WebTransport sessions run outside the HTTP server's
    /// own bookkeeping; tracking them lets shutdown wait for their last frames to go out.
    pub sessions: TaskTracker,
    /// The WebTransport endpoint, once bound (never, without `RELAY_WT_ADDR`): what
    /// `/api/transport-info` tells pages.
    pub webtransport: OnceLock<Arc<crate::advert::Advert>>,
}

impl AppState {
    pub fn new(config: Config, bus: Bus, shutdown: CancellationToken) -> AppState {
        let metrics = Arc::new(Metrics::default());
        AppState(Arc::new(Shared {
            presence: presence(&config, metrics.clone()),
            bus,
            limits: config.text_limits(),
            origins: Arc::new(OriginPolicy::new(&config.allowed_origins)),
            hosts: Arc::new(HostPolicy::new(&config.allowed_hosts, config.addr)),
            metrics,
            // Checked by `Config::validate` before any state is built.
            proxies: Arc::new(TrustedProxies::parse(&config.trusted_proxies).unwrap_or_default()),
            budgets: Budgets::new(&config),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            drain: Drain::new(config.drain_window, shutdown.clone()),
            admission: Admission::new(config.accept_rate, Instant::now()),
            config: Arc::new(config),
            shutdown,
            sessions: TaskTracker::new(),
            webtransport: OnceLock::new(),
        }))
    }

    /// Publishes to a room for `client`, creating the room if the client's new-room budget
    /// allows (and then charging it).
    pub async fn publish(
        &self,
        room: &RoomName,
        draft: Draft<'_>,
        client: ClientKey,
    ) -> Result<Published, ApiError> {
        let may_create = self.may_create(client);
        let published = self
            .bus
            .publish(room, draft, may_create.is_ok())
            .await
            .map_err(|err| self.refused(err, may_create))?;
        if published.created {
            self.created(client);
        }
        Ok(published)
    }

    /// Subscribes to a room for `client`, creating the room as [`AppState::publish`] does.
    pub async fn subscribe(
        &self,
        room: &RoomName,
        cursor: &Cursor,
        limit: usize,
        client: ClientKey,
    ) -> Result<Subscription, ApiError> {
        let may_create = self.may_create(client);
        let (sub, created) = self
            .bus
            .subscribe(room, cursor, limit, may_create.is_ok())
            .await
            .map_err(|err| self.refused(err, may_create))?;
        if created {
            self.created(client);
        }
        Ok(sub)
    }

    /// Whether `client` may bring a room into being now, or how long until it may. (Checked
    /// before and charged after, so that joining an existing room costs nothing; clients
    /// racing themselves may create a few rooms over their budget, never more than they have
    /// requests in flight.)
    fn may_create(&self, client: ClientKey) -> Result<(), Duration> {
        self.budgets.new_rooms.check(client, Instant::now())
    }

    fn created(&self, client: ClientKey) {
        let _ = self.budgets.new_rooms.take(client, Instant::now());
    }

    fn refused(&self, err: BusError, may_create: Result<(), Duration>) -> ApiError {
        match (err, may_create) {
            (BusError::NewRoomRefused, Err(wait)) => ApiError::new(
                ErrorCode::RateLimited,
                "this address has opened too many new rooms lately; try again later",
            )
            .retry_after(wait),
            (err, _) => err.into(),
        }
    }

    /// Admits one long-lived connection, or refuses it when the relay or the client's share
    /// of it is full, or the relay is stopping.
    pub fn admit(
        &self,
        transport: Transport,
        room: &RoomName,
        peer: SocketAddr,
        client: ClientKey,
    ) -> Result<Connection, ApiError> {
        if self.shutdown.is_cancelled() {
            return Err(self.shutting_down());
        }
        let per_client = self.budgets.open_connection(client).ok_or_else(|| {
            tracing::debug!(transport = %transport.as_str(), %client, "connection refused: client at its limit");
            ApiError::new(
                ErrorCode::TooManyConnections,
                "this client address has as many connections open as it may; close one",
            )
            .retry_after(CONNECTION_RETRY)
        })?;
        let permit = self.connections.clone().try_acquire_owned().map_err(|_| {
            tracing::debug!(transport = %transport.as_str(), %room, "connection refused: relay full");
            ApiError::new(
                ErrorCode::TooManyConnections,
                "the relay has reached its connection limit; try again later",
            )
            .retry_after(CONNECTION_RETRY)
        })?;
        // Polls are requests, paced per client by `RELAY_REQUEST_RATE`; streams are what a
        // crowd of returning clients opens.
        if transport.is_stream() {
            self.admission.admit(Instant::now()).map_err(|wait| {
                ApiError::new(
                    ErrorCode::Overloaded,
                    "the relay is opening as many streams as it may; come back after retry_after_ms",
                )
                .retry_after(wait)
            })?;
        }
        Ok(Connection {
            _permit: permit,
            _client: per_client,
            metrics: self.metrics.clone(),
            transport,
            room: room.clone(),
            peer,
            opened: Instant::now(),
            established: false,
        })
    }
}

impl AppState {
    /// The refusal of anything new once the drain began, with a time to come back (to
    /// another relay, or to this one restarted).
    pub fn shutting_down(&self) -> ApiError {
        let advice = self.drain.advice(drain::jitter());
        ApiError::new(ErrorCode::ShuttingDown, "the relay is shutting down")
            .retry_after(Duration::from_millis(advice.retry_after_ms))
    }

    /// Resolves when the stream that owns `closing` is to close (see [`Drain`]), with the
    /// advice for its client.
    pub async fn closing(&self, closing: &mut Closing) -> protocol::RetryAdvice {
        let open = || self.config.max_connections - self.connections.available_permits();
        closing.due(&self.drain, open, drain::jitter).await
    }
}

/// An admitted connection. Holding it holds a connection slot; dropping it frees the slot.
/// Once [`Connection::established`] (subscribed), it counts in `relay_connections` and its
/// opening and closing are logged, whichever way it ends.
#[derive(Debug)]
pub struct Connection {
    _permit: OwnedSemaphorePermit,
    _client: ClientConnection,
    pub metrics: Arc<Metrics>,
    pub transport: Transport,
    pub room: RoomName,
    pub peer: SocketAddr,
    opened: Instant,
    established: bool,
}

impl Connection {
    /// Marks the connection as open: counted and logged from now until it is dropped. Called
    /// once it is subscribed, so that a client (or a test) that sees the gauge rise knows a
    /// publish will reach it.
    pub fn established(&mut self) {
        if !self.established {
            self.established = true;
            self.metrics.connection_opened(self.transport);
            self.log("connected");
        }
    }

    fn log(&self, what: &str) {
        let transport = self.transport.as_str();
        let ms = self.opened.elapsed().as_millis() as u64;
        // At debug: any client can open and close connections as fast as its request rate
        // allows, and one line each would let it flood the log. `/metrics` counts them.
        tracing::debug!(transport = %transport, room = %self.room, peer = %self.peer, ms, "{what}");
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.established {
            self.metrics.connection_closed(self.transport);
            self.log("disconnected");
        }
    }
}
