//! The Autobahn target: an echo server made of the relay's WebSocket parts
//! (`relay::conformance`). `cargo run --release -p relay --example ws_echo -- 127.0.0.1:9001`,
//! then `kosoku -i '1.*' … 127.0.0.1:9001` (see docs/RELIABILITY.md).

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("echo listening on {}", listener.local_addr()?);
    relay::conformance::echo(listener).await
}
