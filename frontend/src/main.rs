//! The chat page. `model` and `api` are plain Rust (tested natively with `cargo test`);
//! everything that touches the browser is compiled for wasm32 only and built with trunk.
//!
//! # Layout
//! - `model/`: the pure logic — merging links into one timeline, make-before-break switching,
//!   reconnection backoff, latency statistics.
//! - `api`: every URL and request the page makes, on the paths `protocol::api` defines.
//! - `controller`: owns the links and the model, and writes what the page shows into signals.
//! - `view`: the components that read those signals and forward user actions.
//! - `transport/`: one link per transport (WebSocket, SSE, long and short polling), each
//!   owning and releasing its browser resources.
//! - `browser`, `fetch`: thin wrappers over the browser's APIs.

// Natively only the tests use these, and nothing uses the model's re-exports.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code, unused_imports))]
mod api;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code, unused_imports))]
mod model;

#[cfg(target_arch = "wasm32")]
mod browser;
#[cfg(target_arch = "wasm32")]
mod controller;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod json;
#[cfg(target_arch = "wasm32")]
mod transport;
#[cfg(target_arch = "wasm32")]
mod view;

#[cfg(target_arch = "wasm32")]
fn main() {
    // Panic messages on the console in debug builds; release builds leave out the
    // formatting code it would keep.
    #[cfg(debug_assertions)]
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(view::App);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("The page runs in a browser: build it with `trunk build --release`.");
}
