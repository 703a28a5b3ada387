//! WebSocket close codes the relay sends, and what a client should do on each. The page
//! interprets them (see its `transport::ws`); `docs/PROTOCOL.md` lists them for other clients.

/// The client stopped answering pings (or a proxy ended the socket): reconnect with backoff.
pub const GOING_AWAY: u16 = 1001;
/// A binary frame: only text is spoken here. Reconnecting and sending the same is pointless.
pub const UNSUPPORTED: u16 = 1003;
/// A frame larger than `RELAY_MAX_FRAME_BYTES`: the message was too large; do not resend it.
pub const TOO_BIG: u16 = 1009;
/// The relay is restarting (drain on SIGTERM). The reason is `{"retry_after_ms":N}`: come
/// back after N ms, resuming with `after`.
pub const RESTART: u16 = 1012;
/// Try again later: the relay is over its admission rate (reason `{"retry_after_ms":N}`),
/// or could not continue the stream (the bus failed; reason in words): wait as advised, or
/// back off, and resume with `after`.
pub const TRY_AGAIN: u16 = 1013;
/// The client read too slowly for `RELAY_SEND_TIMEOUT`; the relay dropped it rather than
/// buffer for it. Nothing was lost: resume now with `after`.
pub const TOO_SLOW: u16 = 4008;
