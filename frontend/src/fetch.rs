//! `fetch` on web-sys directly: the page needs GET and POST with a JSON body, an abort signal
//! and the answer as text, which does not justify an HTTP client library in every download.

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Request, RequestInit, Response};

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

pub async fn get(url: &str, signal: Option<&AbortSignal>) -> Result<Answer, JsValue> {
    let init = RequestInit::new();
    init.set_method("GET");
    if let Some(signal) = signal {
        init.set_signal(Some(signal));
    }
    send(url, &init).await
}

/// `POST`s `json` under an idempotency key (`protocol::api::IDEMPOTENCY_KEY`).
pub async fn post_json(url: &str, json: &str, key: &str) -> Result<Answer, JsValue> {
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(json));
    let request = Request::new_with_str_and_init(url, &init)?;
    request.headers().set("content-type", "application/json")?;
    request.headers().set(protocol::api::IDEMPOTENCY_KEY, key)?;
    fetch(request).await
}

async fn send(url: &str, init: &RequestInit) -> Result<Answer, JsValue> {
    fetch(Request::new_with_str_and_init(url, init)?).await
}

async fn fetch(request: Request) -> Result<Answer, JsValue> {
    let response: Response = JsFuture::from(leptos::prelude::window().fetch_with_request(&request))
        .await?
        .dyn_into()?;
    let body = JsFuture::from(response.text()?).await?;
    Ok(Answer {
        status: response.status(),
        body: body.as_string().unwrap_or_default(),
    })
}
