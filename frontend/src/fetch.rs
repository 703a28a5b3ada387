//! The page's HTTP requests (polls and sends), through gloo-net's `fetch` wrapper: GET with an
//! abort signal (a poll the page gives up on), POST with a JSON body and an idempotency key,
//! and the answer as its status and text. The page decodes bodies itself (`api`, `transport`),
//! so gloo-net's JSON helpers are not used.

use gloo_net::http::Request;
use web_sys::AbortSignal;

/// An HTTP answer: its status and its body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

pub async fn get(url: &str, signal: Option<&AbortSignal>) -> Result<Answer, Failed> {
    let response = Request::get(url)
        .abort_signal(signal)
        .send()
        .await
        .map_err(failed)?;
    answer(response).await
}

/// `POST`s `json` under an idempotency key (`protocol::api::IDEMPOTENCY_KEY`).
pub async fn post_json(url: &str, json: &str, key: &str) -> Result<Answer, Failed> {
    post_keyed(url, json, Some(key)).await
}

/// `POST`s `json` (a request that needs no idempotency: typing).
pub async fn post(url: &str, json: &str) -> Result<Answer, Failed> {
    post_keyed(url, json, None).await
}

async fn post_keyed(url: &str, json: &str, key: Option<&str>) -> Result<Answer, Failed> {
    let mut request = Request::post(url).header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header(protocol::api::IDEMPOTENCY_KEY, key);
    }
    let response = request
        .body(json)
        .map_err(failed)?
        .send()
        .await
        .map_err(failed)?;
    answer(response).await
}

async fn answer(response: gloo_net::http::Response) -> Result<Answer, Failed> {
    Ok(Answer {
        status: response.status(),
        body: response.text().await.map_err(failed)?,
    })
}

/// The request did not get an answer (the network, or an abort). Callers only need to know
/// that (they retry, or show it); keeping gloo-net's reason would cost its formatting code.
pub struct Failed;

fn failed(_: gloo_net::Error) -> Failed {
    Failed
}
