//! The relay under test: the real server on an ephemeral port, owned by the test and shut
//! down when dropped. Requests go through its [`Client`] (`relay.post(…)` derefs to it).

use std::ops::Deref;

use relay::config::Config;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Client, SMALL_BUFFER};

/// A relay serving on 127.0.0.1 with an ephemeral port; shut down when dropped.
pub struct Relay {
    client: Client,
    pub shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Relay {
    pub async fn start() -> Relay {
        Relay::start_with(|_| {}).await
    }

    /// Starts a relay with the defaults, adjusted by `adjust`. The send rate limits and the
    /// per-client budgets are lifted unless a test sets them, since most tests publish quickly
    /// on purpose, all from one address.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        Relay::start_on(listener, adjust).await
    }

    /// Like [`Relay::start_with`], but every connection the relay accepts has a small send
    /// buffer (accepted sockets inherit it from the listener): a client that stops reading
    /// blocks the relay's writes after a few kilobytes, whatever the kernel's defaults.
    pub async fn start_with_small_send_buffer(adjust: impl FnOnce(&mut Config)) -> Relay {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .set_send_buffer_size(SMALL_BUFFER)
            .expect("SO_SNDBUF");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind port 0");
        let listener = socket.listen(1024).expect("listen");
        Relay::start_on(listener, adjust).await
    }

    async fn start_on(listener: TcpListener, adjust: impl FnOnce(&mut Config)) -> Relay {
        let mut config = Config::defaults();
        config.rate = 1_000_000.0;
        config.burst = 1_000_000.0;
        // Every test client is 127.0.0.1: per-client budgets are lifted too, unless a test
        // (the attack suite) sets them.
        config.client_rate = 1_000_000.0;
        config.client_burst = 1_000_000.0;
        config.request_rate = 1_000_000.0;
        config.request_burst = 1_000_000.0;
        config.max_connections_per_client = 100_000;
        config.max_sockets_per_client = 100_000;
        config.accept_rate = 1_000_000.0;
        config.static_dir = std::env::temp_dir().join("relay-tests-no-static-dir");
        adjust(&mut config);
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(relay::serve(listener, config, shutdown.clone()));
        Relay {
            client: Client::new(addr),
            shutdown,
            task: Some(task),
        }
    }

    /// A client of this relay that can move into another task.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Stops the relay and waits (bounded) until it no longer serves.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let result = super::within("the relay to stop", task).await;
            result.expect("the relay task").expect("the relay served");
        }
    }
}

impl Deref for Relay {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // The server ends by itself once cancelled; detach it rather than block in `drop`.
        drop(self.task.take());
    }
}
