//! A real `redis-server` (Debian's) on a free loopback port, owned by one test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use relay::config::Config;

use super::{Client, PATIENCE, Relay, http, within};

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    persistent: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// Keeps nothing on disk: a restart loses every room, as a cache-only Redis would.
    pub async fn start() -> RedisServer {
        RedisServer::launch(false).await
    }

    /// Writes every command to an append-only file before answering it, so a restart (even
    /// after SIGKILL) keeps everything it acknowledged.
    pub async fn start_persistent() -> RedisServer {
        RedisServer::launch(true).await
    }

    async fn launch(persistent: bool) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let dir = std::env::temp_dir().join(format!("relay-test-redis-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for Redis");
        let mut server = RedisServer {
            port,
            dir,
            persistent,
            child: None,
        };
        server.run().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn run(&mut self) {
        let appendonly = if self.persistent { "yes" } else { "no" };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                appendonly,
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "redis-server runs (Debian package redis-server; ./scripts/setup.sh installs it)",
            );
        self.child = Some(child);
        let port = self.port;
        within("redis-server to answer PING", async move {
            loop {
                let answered = tokio::task::spawn_blocking(move || ping(port))
                    .await
                    .unwrap_or(false);
                if answered {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// A connection of the test's own, to look at or tamper with what the relays keep.
    pub async fn connection(&self) -> ::redis::aio::MultiplexedConnection {
        let client = ::redis::Client::open(self.url()).expect("redis url");
        within(
            "a Redis connection",
            client.get_multiplexed_async_connection(),
        )
        .await
        .expect("connects to Redis")
    }

    /// Kills the server outright (SIGKILL), as a crash or a lost machine would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server: a stopped Redis keeps its connections
    /// open and answers nothing, as a hung server or a stalled network would.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("Redis is running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal}");
    }

    /// Starts it again on the same port and directory.
    pub async fn restart(&mut self) {
        self.stop();
        self.run().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

/// Drops every pub/sub connection (the relays' subscriptions), as a network blip would;
/// returns how many there were.
pub async fn drop_subscriptions(conn: &mut ::redis::aio::MultiplexedConnection) -> i64 {
    ::redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query_async(conn)
        .await
        .expect("CLIENT KILL")
}

/// Waits until the relay's `/readyz` answers `ready` (200) or not (503).
pub async fn wait_ready(relay: &Client, ready: bool) {
    let url = relay.url("/readyz");
    let what = format!(
        "{url} to become {}",
        if ready { "ready" } else { "unready" }
    );
    let deadline = PATIENCE + Duration::from_secs(5);
    let waited = tokio::time::timeout(deadline, async {
        loop {
            if let Ok(response) = http().get(&url).send().await
                && response.status().is_success() == ready
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

/// A relay on `redis`, with room for the many messages these tests publish.
pub async fn relay_on(redis: &RedisServer) -> Relay {
    relay_on_with(redis, |_| {}).await
}

pub async fn relay_on_with(redis: &RedisServer, adjust: impl FnOnce(&mut Config)) -> Relay {
    let url = redis.url();
    let relay = Relay::start_with(move |config| {
        config.redis_url = Some(url);
        config.history = 20_000;
        config.history_bytes = 1 << 30;
        config.redis_timeout = Duration::from_secs(1);
        adjust(config);
    })
    .await;
    wait_ready(&relay, true).await;
    relay
}
