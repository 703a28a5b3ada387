//! The API's paths, defined once for the relay's router, the page and the load tool.

/// Where the API lives on the relay.
pub const PREFIX: &str = "/api";

/// The header of a `POST` that carries an idempotency key (the IETF draft's name).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The per-room endpoints. [`Endpoint::route`] is the router's pattern (under [`PREFIX`]);
/// [`Endpoint::path`] the path a client requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET` upgrades to a WebSocket.
    Ws,
    /// `GET` opens a Server-Sent Events stream.
    Events,
    /// `GET` polls (short or long), `POST` publishes.
    Messages,
    /// `GET` lists the room's members, `POST` says a tab leaves.
    Presence,
    /// `POST` says the client is typing.
    Typing,
    /// `GET` opens an HTTP stream of NDJSON events.
    Stream,
    /// A WebTransport session's path (on the relay's UDP port, not its HTTP one).
    Wt,
}

/// `GET` under [`PREFIX`]: how to reach the transports that are not on the page's own origin
/// (WebTransport's URL and certificate hashes).
pub const TRANSPORT_INFO: &str = "/transport-info";

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Ws => "ws",
            Endpoint::Events => "events",
            Endpoint::Messages => "messages",
            Endpoint::Presence => "presence",
            Endpoint::Typing => "typing",
            Endpoint::Stream => "stream",
            Endpoint::Wt => "wt",
        }
    }

    /// The route pattern relative to [`PREFIX`], in axum's syntax (`/rooms/{room}/ws`).
    pub fn route(self) -> &'static str {
        match self {
            Endpoint::Ws => "/rooms/{room}/ws",
            Endpoint::Events => "/rooms/{room}/events",
            Endpoint::Messages => "/rooms/{room}/messages",
            Endpoint::Presence => "/rooms/{room}/presence",
            Endpoint::Typing => "/rooms/{room}/typing",
            Endpoint::Stream => "/rooms/{room}/stream",
            Endpoint::Wt => "/rooms/{room}/wt",
        }
    }

    /// The path of this endpoint for `room` (a valid room name needs no escaping).
    pub fn path(self, room: &str) -> String {
        self.path_under(PREFIX, room)
    }

    /// The same path under another prefix: the page's development build reaches WebSockets
    /// through a proxy prefix of its own.
    pub fn path_under(self, prefix: &str, room: &str) -> String {
        format!("{prefix}/rooms/{room}/{}", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_the_router_patterns() {
        for endpoint in [
            Endpoint::Ws,
            Endpoint::Events,
            Endpoint::Messages,
            Endpoint::Presence,
            Endpoint::Typing,
            Endpoint::Stream,
            Endpoint::Wt,
        ] {
            let pattern = format!("{PREFIX}{}", endpoint.route());
            assert_eq!(endpoint.path("lobby"), pattern.replace("{room}", "lobby"));
        }
        assert_eq!(
            Endpoint::Ws.path_under("/api-ws", "r"),
            "/api-ws/rooms/r/ws"
        );
    }
}
