//! Configuration: every setting is a flag and a `RELAY_*` environment variable, with the
//! default shown by `relay --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use protocol::limits;

use crate::bus::RoomLimits;
use crate::client::TrustedProxies;
use crate::logging::LogFormat;
use crate::rate::RateLimit;
use crate::server::SocketLimits;
use crate::server::io::IoLimits;
use crate::validate::TextLimits;

/// `RELAY_LONGPOLL_MAX`'s default, written from the one number the page also uses.
static LONGPOLL_MAX_DEFAULT: LazyLock<String> =
    LazyLock::new(|| format!("{}s", limits::DEFAULT_LONGPOLL_MAX_SECS));

/// `RELAY_DEDUP_WINDOW`'s default, from `protocol` (the page's resends stay within it).
static DEDUP_WINDOW_DEFAULT: LazyLock<String> =
    LazyLock::new(|| format!("{}s", limits::DEFAULT_DEDUP_WINDOW_SECS));

/// `RELAY_PRESENCE_TTL`'s default, from `protocol`.
static PRESENCE_TTL_DEFAULT: LazyLock<String> =
    LazyLock::new(|| format!("{}s", protocol::presence::DEFAULT_PRESENCE_TTL_SECS));

/// The command line: the relay's settings, and an optional subcommand.
#[derive(Parser, Debug, Clone)]
#[command(name = "relay", version, about = "Group-chat relay: WebSocket, SSE, long and short polling", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve (the default).
    Serve,
    /// Exit 0 if the relay at RELAY_ADDR answers `GET /healthz`, 1 otherwise. For container
    /// health checks, which then need neither a shell nor curl.
    Healthcheck,
}

#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "RELAY_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Directory of the page's build output, served at `/`.
    #[arg(long, env = "RELAY_STATIC_DIR", default_value = "dist")]
    pub static_dir: PathBuf,

    /// Origins allowed besides same-origin, comma-separated (e.g. `http://127.0.0.1:8080` for
    /// `trunk serve`).
    #[arg(long, env = "RELAY_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers name the client, as CIDRs or
    /// addresses, comma-separated. Unset: the socket's peer is the client.
    #[arg(long, env = "RELAY_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Host names (`host[:port]`, `*` for any) the relay answers, against DNS rebinding.
    /// Unset: loopback names only when listening on a loopback address, else any host.
    #[arg(long, env = "RELAY_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Messages retained per room for history and resume.
    #[arg(long, env = "RELAY_HISTORY", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub history: u64,

    /// Bytes of messages retained per room, besides the count; the newest message always
    /// stays.
    #[arg(long, env = "RELAY_HISTORY_BYTES", default_value_t = 256 * 1024)]
    pub history_bytes: usize,

    /// A room without a message or a listener for this long expires, history and all.
    #[arg(long, env = "RELAY_ROOM_TTL", default_value = "24h", value_parser = parse_duration)]
    pub room_ttl: Duration,

    /// Messages a newcomer is shown on joining (when it gives no `limit`).
    #[arg(long, env = "RELAY_JOIN_HISTORY", default_value_t = 50)]
    pub join_history: usize,

    /// Most rooms at once; at the limit, the least recently active room nobody listens to
    /// makes way for a new one.
    #[arg(long, env = "RELAY_MAX_ROOMS", default_value_t = 1000)]
    pub max_rooms: usize,

    /// Most concurrent WebSocket, SSE and long-poll connections.
    #[arg(long, env = "RELAY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most open WebSockets, SSE streams and pending long polls of one client address (an
    /// IPv6 client counts per /64).
    #[arg(long, env = "RELAY_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 32)]
    pub max_connections_per_client: usize,

    /// Longest message text, in bytes of UTF-8.
    #[arg(long, env = "RELAY_MAX_TEXT_BYTES", default_value_t = limits::DEFAULT_MAX_TEXT_BYTES)]
    pub max_text_bytes: usize,

    /// Longest sender name, in characters.
    #[arg(long, env = "RELAY_MAX_NAME_CHARS", default_value_t = limits::DEFAULT_MAX_NAME_CHARS)]
    pub max_name_chars: usize,

    /// Largest WebSocket message and `POST` body, in bytes.
    #[arg(long, env = "RELAY_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Sustained messages per second one sender may publish (per WebSocket, or per client
    /// address for `POST`).
    #[arg(long, env = "RELAY_RATE", default_value_t = 20.0)]
    pub rate: f64,

    /// Messages one sender may publish in a burst above the sustained rate.
    #[arg(long, env = "RELAY_BURST", default_value_t = 40.0)]
    pub burst: f64,

    /// Sustained messages per second one client address may publish, over all its
    /// WebSockets and `POST`s together.
    #[arg(long, env = "RELAY_CLIENT_RATE", default_value_t = 50.0)]
    pub client_rate: f64,

    /// Messages one client address may publish in a burst above its sustained rate.
    #[arg(long, env = "RELAY_CLIENT_BURST", default_value_t = 100.0)]
    pub client_burst: f64,

    /// Sustained API requests per second one client address may make (short polls, publishes,
    /// stream openings, …).
    #[arg(long, env = "RELAY_REQUEST_RATE", default_value_t = 20.0)]
    pub request_rate: f64,

    /// API requests one client address may make in a burst above its sustained rate.
    #[arg(long, env = "RELAY_REQUEST_BURST", default_value_t = 60.0)]
    pub request_burst: f64,

    /// Rooms one client address may bring into being per minute.
    #[arg(long, env = "RELAY_NEW_ROOMS_PER_CLIENT", default_value_t = 30)]
    pub new_rooms_per_client: u32,

    /// Longest a long poll is held (`wait` is capped to this); below common 60 s proxy
    /// idle timeouts.
    #[arg(long, env = "RELAY_LONGPOLL_MAX", default_value = LONGPOLL_MAX_DEFAULT.as_str(), value_parser = parse_duration)]
    pub longpoll_max: Duration,

    /// While messages keep coming, a long poll is answered at most this long after it
    /// arrived, so that one answer carries what arrives meanwhile instead of one request per
    /// message; a poll that waited longer (a quiet room) is answered at once. `0s` answers
    /// every poll at once. At most 5 s. 10 ms rather than 5 ms: a busy room's long pollers
    /// make half the requests (at 100 × 1000, 5.3 → 3.3 µs per delivery, docs/BENCHMARKS.md)
    /// for at most 5 ms more latency, which no one reading a chat notices.
    #[arg(long, env = "RELAY_LONGPOLL_LINGER", default_value = "10ms", value_parser = parse_duration)]
    pub longpoll_linger: Duration,

    /// Interval of SSE keep-alive comments.
    #[arg(long, env = "RELAY_SSE_HEARTBEAT", default_value = "15s", value_parser = parse_duration)]
    pub sse_heartbeat: Duration,

    /// Reconnection delay suggested to EventSource clients (the SSE `retry:` field).
    #[arg(long, env = "RELAY_SSE_RETRY", default_value = "1s", value_parser = parse_duration)]
    pub sse_retry: Duration,

    /// Interval of WebSocket pings; a connection that has not answered the previous ping by
    /// the next one is closed.
    #[arg(long, env = "RELAY_WS_PING", default_value = "20s", value_parser = parse_duration)]
    pub ws_ping: Duration,

    /// Longest a WebSocket write may block on a client that does not read before the
    /// connection is closed as too slow.
    #[arg(long, env = "RELAY_SEND_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub send_timeout: Duration,

    /// Address of a separate listener for `GET /metrics`; when set, the main port answers
    /// 404 for it. Unset: `/metrics` is on the main port.
    #[arg(long, env = "RELAY_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Longest a client may take to send a complete request head, from accept (or from the
    /// first byte of a later request on a keep-alive connection); also bounds request bodies.
    #[arg(long, env = "RELAY_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// A connection on which no byte has moved either way for this long is closed (idle
    /// keep-alive connections, silent sockets). Must exceed RELAY_LONGPOLL_MAX,
    /// RELAY_SSE_HEARTBEAT and RELAY_WS_PING.
    #[arg(long, env = "RELAY_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Most open TCP connections; at the limit, the one that has waited longest for a request
    /// head (new, or idle between requests) is closed to make room. Also capped by the
    /// process's file-descriptor limit, which the relay raises to its hard limit at startup.
    #[arg(long, env = "RELAY_MAX_SOCKETS", default_value_t = 16_384)]
    pub max_sockets: usize,

    /// Most open TCP connections from one peer address (an IPv6 /64); trusted proxies are
    /// not limited.
    #[arg(long, env = "RELAY_MAX_SOCKETS_PER_CLIENT", default_value_t = 256)]
    pub max_sockets_per_client: usize,

    /// Send small writes at once (`TCP_NODELAY`) instead of letting the kernel coalesce them:
    /// measured here, p99 delivery latency about 9× lower (≈5 ms instead of ≈40 ms at
    /// 100 × 1000 msg/s) for about 20–30 % more CPU per delivery (docs/BENCHMARKS.md).
    #[arg(long, env = "RELAY_TCP_NODELAY", default_value_t = false, action = clap::ArgAction::Set)]
    pub tcp_nodelay: bool,

    /// Log format: `text` or `json` (one object per line). Levels come from `RUST_LOG`.
    #[arg(long, env = "RELAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Interval of the info-level summary of refused requests (each refusal itself is
    /// logged at debug).
    #[arg(long, env = "RELAY_LOG_SUMMARY", default_value = "60s", value_parser = parse_duration)]
    pub log_summary: Duration,

    /// Redis server shared by several relays (`redis://host:6379/0`); without it, rooms live
    /// in this process only.
    #[arg(long, env = "RELAY_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Longest to wait for Redis before answering 503 (or an error event).
    #[arg(long, env = "RELAY_REDIS_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// On SIGINT/SIGTERM, longest to wait for connections to close before exiting anyway.
    #[arg(long, env = "RELAY_SHUTDOWN_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_deadline: Duration,

    /// On SIGINT/SIGTERM, open streams are closed one after another over this window, each
    /// client told when to come back, rather than all at once; shorter than
    /// `RELAY_SHUTDOWN_DEADLINE`. `0s` closes them all at once.
    #[arg(long, env = "RELAY_DRAIN_WINDOW", default_value = "3s", value_parser = parse_duration)]
    pub drain_window: Duration,

    /// How long a publish's idempotency key (`Idempotency-Key`, a send frame's `key`) is
    /// remembered: a repeat within it stores nothing and is answered with the first id. In
    /// memory, also no longer than the message stays in history.
    #[arg(long, env = "RELAY_DEDUP_WINDOW", default_value = DEDUP_WINDOW_DEFAULT.as_str(), value_parser = parse_duration)]
    pub dedup_window: Duration,

    /// New streams (WebSocket, SSE; resumes included) this relay opens per second, with a
    /// burst of as many; over it, clients are told when to come back.
    #[arg(long, env = "RELAY_ACCEPT_RATE", default_value = "500")]
    pub accept_rate: f64,

    /// How long a room member stays listed after its last sign of life (a poll, a publish,
    /// its last stream closing) when it did not say it left: the grace that lets a page
    /// reconnect, or a short poller poll again, without leaving and joining.
    #[arg(long, env = "RELAY_PRESENCE_TTL", default_value = PRESENCE_TTL_DEFAULT.as_str(), value_parser = parse_duration)]
    pub presence_ttl: Duration,

    /// UDP address for WebTransport (HTTP/3) sessions, e.g. `0.0.0.0:4433`. Unset: no
    /// WebTransport.
    #[arg(long, env = "RELAY_WT_ADDR")]
    pub wt_addr: Option<SocketAddr>,

    /// PEM certificate chain for WebTransport (with `RELAY_WT_KEY`). Unset: a self-signed
    /// certificate, renewed before it expires, whose hash pages get from
    /// `/api/transport-info`.
    #[arg(long, env = "RELAY_WT_CERT", requires = "wt_key")]
    pub wt_cert: Option<PathBuf>,

    /// PEM private key of `RELAY_WT_CERT`.
    #[arg(long, env = "RELAY_WT_KEY", requires = "wt_cert")]
    pub wt_key: Option<PathBuf>,

    /// How long a self-signed WebTransport certificate is valid (browsers accept at most 14
    /// days, 336h); it is replaced when two thirds of it have passed.
    #[arg(long, env = "RELAY_WT_CERT_VALIDITY", default_value = "312h", value_parser = parse_duration)]
    pub wt_cert_validity: Duration,
}

impl Config {
    pub fn socket_limits(&self, max_sockets: usize) -> SocketLimits {
        SocketLimits {
            io: IoLimits {
                header: self.header_timeout,
                idle: self.idle_timeout,
                send: self.send_timeout,
                nodelay: self.tcp_nodelay,
            },
            max_sockets,
            max_sockets_per_client: self.max_sockets_per_client,
            // Checked by `validate` before the relay starts.
            proxies: Arc::new(TrustedProxies::parse(&self.trusted_proxies).unwrap_or_default()),
        }
    }

    pub fn presence_limits(&self) -> crate::presence::Limits {
        crate::presence::Limits {
            ttl: self.presence_ttl,
            max_members: self.max_connections,
            max_per_client: self.max_connections_per_client,
        }
    }

    pub fn room_limits(&self) -> RoomLimits {
        RoomLimits {
            retention: self.history as usize,
            history_bytes: self.history_bytes,
            max_rooms: self.max_rooms,
            ttl: self.room_ttl,
            dedup_window: self.dedup_window,
        }
    }

    pub fn text_limits(&self) -> TextLimits {
        TextLimits {
            max_text_bytes: self.max_text_bytes,
            max_name_chars: self.max_name_chars,
        }
    }

    /// The per-connection send budget. [`Config::validate`] has made sure both numbers are
    /// positive and finite.
    pub fn rate_limit(&self) -> RateLimit {
        RateLimit {
            per_second: self.rate,
            burst: self.burst,
        }
    }

    /// Refuses settings that would panic or make no sense at run time (a zero interval, a
    /// zero rate, a connection limit of nothing), naming the setting. The binary exits 2 on
    /// an error, like any other command-line mistake; [`crate::serve`] refuses to start.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let durations = [
            ("RELAY_LONGPOLL_MAX", "--longpoll-max", self.longpoll_max),
            ("RELAY_SSE_HEARTBEAT", "--sse-heartbeat", self.sse_heartbeat),
            ("RELAY_SSE_RETRY", "--sse-retry", self.sse_retry),
            ("RELAY_WS_PING", "--ws-ping", self.ws_ping),
            ("RELAY_SEND_TIMEOUT", "--send-timeout", self.send_timeout),
            (
                "RELAY_HEADER_TIMEOUT",
                "--header-timeout",
                self.header_timeout,
            ),
            ("RELAY_IDLE_TIMEOUT", "--idle-timeout", self.idle_timeout),
            ("RELAY_ROOM_TTL", "--room-ttl", self.room_ttl),
            ("RELAY_LOG_SUMMARY", "--log-summary", self.log_summary),
            ("RELAY_REDIS_TIMEOUT", "--redis-timeout", self.redis_timeout),
            ("RELAY_PRESENCE_TTL", "--presence-ttl", self.presence_ttl),
            (
                "RELAY_WT_CERT_VALIDITY",
                "--wt-cert-validity",
                self.wt_cert_validity,
            ),
            (
                "RELAY_SHUTDOWN_DEADLINE",
                "--shutdown-deadline",
                self.shutdown_deadline,
            ),
        ];
        for (variable, flag, value) in durations {
            // Below a millisecond, timers round to zero: an interval that fires constantly.
            if value < Duration::from_millis(1) {
                return Err(InvalidSetting::new(variable, flag, "must be at least 1ms"));
            }
        }
        if self.wt_cert_validity < Duration::from_secs(1) {
            return Err(InvalidSetting::new(
                "RELAY_WT_CERT_VALIDITY",
                "--wt-cert-validity",
                "must be at least 1s (it is renewed after two thirds of it)",
            ));
        }
        if self.wt_cert_validity > Duration::from_secs(limits::MAX_HASHED_CERT_VALIDITY_SECS) {
            return Err(InvalidSetting::new(
                "RELAY_WT_CERT_VALIDITY",
                "--wt-cert-validity",
                "browsers refuse a self-signed certificate valid for more than 14 days (336h)",
            ));
        }
        let counts = [
            ("RELAY_MAX_ROOMS", "--max-rooms", self.max_rooms, 1),
            (
                "RELAY_MAX_CONNECTIONS",
                "--max-connections",
                self.max_connections,
                1,
            ),
            (
                "RELAY_MAX_TEXT_BYTES",
                "--max-text-bytes",
                self.max_text_bytes,
                1,
            ),
            (
                "RELAY_MAX_NAME_CHARS",
                "--max-name-chars",
                self.max_name_chars,
                1,
            ),
            (
                "RELAY_MAX_FRAME_BYTES",
                "--max-frame-bytes",
                self.max_frame_bytes,
                256,
            ),
        ];
        for (variable, flag, value, least) in counts {
            if value < least {
                return Err(InvalidSetting::new(
                    variable,
                    flag,
                    format!("must be at least {least}"),
                ));
            }
        }
        // Below a second, a key could be forgotten before its sender's retry arrives (and
        // Redis refuses an expiry of 0 ms).
        if self.dedup_window < Duration::from_secs(1) {
            return Err(InvalidSetting::new(
                "RELAY_DEDUP_WINDOW",
                "--dedup-window",
                "must be at least 1s",
            ));
        }
        if self.longpoll_linger > Duration::from_secs(5) {
            return Err(InvalidSetting::new(
                "RELAY_LONGPOLL_LINGER",
                "--longpoll-linger",
                "must be at most 5s",
            ));
        }
        // A connection waiting legitimately must move a byte before it counts as idle.
        for (other, value) in [
            ("RELAY_LONGPOLL_MAX", self.longpoll_max),
            ("RELAY_SSE_HEARTBEAT", self.sse_heartbeat),
            ("RELAY_WS_PING", self.ws_ping),
        ] {
            if self.idle_timeout <= value {
                return Err(InvalidSetting::new(
                    "RELAY_IDLE_TIMEOUT",
                    "--idle-timeout",
                    format!("must be longer than {other} ({value:?})"),
                ));
            }
        }
        let rates = [
            ("RELAY_RATE", "--rate", self.rate, f64::MIN_POSITIVE),
            ("RELAY_BURST", "--burst", self.burst, 1.0),
            (
                "RELAY_CLIENT_RATE",
                "--client-rate",
                self.client_rate,
                f64::MIN_POSITIVE,
            ),
            (
                "RELAY_CLIENT_BURST",
                "--client-burst",
                self.client_burst,
                1.0,
            ),
            (
                "RELAY_REQUEST_RATE",
                "--request-rate",
                self.request_rate,
                f64::MIN_POSITIVE,
            ),
            (
                "RELAY_REQUEST_BURST",
                "--request-burst",
                self.request_burst,
                1.0,
            ),
            (
                "RELAY_ACCEPT_RATE",
                "--accept-rate",
                self.accept_rate,
                f64::MIN_POSITIVE,
            ),
        ];
        for (variable, flag, value, least) in rates {
            if !value.is_finite() || value < least {
                return Err(InvalidSetting::new(
                    variable,
                    flag,
                    format!("must be a finite number of at least {least}"),
                ));
            }
        }
        TrustedProxies::parse(&self.trusted_proxies).map_err(|why| {
            InvalidSetting::new("RELAY_TRUSTED_PROXIES", "--trusted-proxies", why)
        })?;
        Ok(())
    }

    /// The defaults, as `relay` with no flags and no `RELAY_*` variables would use them; for
    /// tests, which must not change meaning when the shell exports, say, `RELAY_REDIS_URL`.
    pub fn defaults() -> Config {
        parse_ignoring_env(["relay"]).config
    }
}

/// A setting that [`Config::validate`] refused: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    pub variable: &'static str,
    pub flag: &'static str,
    pub why: String,
}

impl InvalidSetting {
    fn new(variable: &'static str, flag: &'static str, why: impl Into<String>) -> InvalidSetting {
        InvalidSetting {
            variable,
            flag,
            why: why.into(),
        }
    }
}

impl std::fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid setting {} ({}): {}",
            self.variable, self.flag, self.why
        )
    }
}

impl std::error::Error for InvalidSetting {}

/// Parses a command line as if no `RELAY_*` variable were set.
fn parse_ignoring_env<const N: usize>(args: [&str; N]) -> Cli {
    let command = Cli::command().mut_args(|arg| arg.env(None::<&str>));
    let matches = command.get_matches_from(args);
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        // Only reachable if the derive and the command disagree: a bug here, not bad input.
        Err(err) => err.exit(),
    }
}

/// Parses `250ms`, `15s`, `2m`, `24h` or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 250ms, 15s, 2m or 1h"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?}; use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("5d").is_err());
    }

    /// The README's settings table, as (flag, variable, default) rows; `None` for "none".
    fn documented_settings() -> Vec<(String, String, Option<String>)> {
        let readme = include_str!("../../README.md");
        readme
            .lines()
            .filter(|line| line.starts_with("| `--"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let unquote = |cell: &str| cell.split('`').nth(1).map(str::to_owned);
                let flag = unquote(cells[1]).expect("a flag");
                let variable = unquote(cells[2]).expect("a variable");
                let default = if cells[3].starts_with("none") {
                    None
                } else {
                    Some(unquote(cells[3]).expect("a default in backquotes"))
                };
                (flag, variable, default)
            })
            .collect()
    }

    #[test]
    fn every_setting_is_documented_with_its_variable() {
        let documented: Vec<(String, String)> = documented_settings()
            .into_iter()
            .map(|(flag, variable, _)| (flag, variable))
            .collect();
        let command = Cli::command();
        let declared: Vec<(String, String)> = command
            .get_arguments()
            .filter_map(|arg| {
                let flag = format!("--{}", arg.get_long()?);
                let variable = arg.get_env()?.to_str()?.to_owned();
                Some((flag, variable))
            })
            .collect();
        assert_eq!(
            documented, declared,
            "README settings table vs `relay --help`"
        );
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        // Passing every documented default explicitly must give the same configuration as
        // passing nothing: each default is checked against the README, not against itself.
        let mut args = vec!["relay".to_owned()];
        for (flag, _, default) in documented_settings() {
            if let Some(default) = default {
                args.push(format!("{flag}={default}"));
            }
        }
        let command = Cli::command().mut_args(|arg| arg.env(None::<&str>));
        let documented = Cli::from_arg_matches(&command.get_matches_from(args))
            .expect("the documented defaults parse")
            .config;
        assert_eq!(
            format!("{:?}", Config::defaults()),
            format!("{documented:?}")
        );
        // And the unset ones are unset.
        let config = Config::defaults();
        assert!(config.allowed_origins.is_empty());
        assert_eq!(config.redis_url, None);
    }

    #[test]
    fn allowed_origins_split_on_commas() {
        let cli = Cli::parse_from(["relay", "--allowed-origins", "http://a:1,http://b:2"]);
        assert_eq!(cli.config.allowed_origins, ["http://a:1", "http://b:2"]);
        assert_eq!(cli.command, None);
        let cli = Cli::parse_from(["relay", "healthcheck"]);
        assert_eq!(cli.command, Some(Command::Healthcheck));
    }
}
