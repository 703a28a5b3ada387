//! HTTP streaming link: one long `GET …/stream` whose body, read as it arrives, is NDJSON.
//!
//! `fetch` through gloo-net (as the page's other requests) with the link's abort signal, so
//! that closing the link ends the response; the body is read with `ndjson::follow`. Nothing
//! reconnects by itself: every attempt starts from the page's cursor, like the polls. A
//! refused stream is retried on the page's own backoff, as EventSource's are: reading the
//! refusal's advice cost more page bytes than it saves (the page is at its size budget).

use std::rc::Rc;

use gloo_net::http::Request;
use web_sys::AbortSignal;

use super::{LinkContext, LinkEvent, ndjson};
use crate::api;
use crate::model::Backoff;

pub async fn run(ctx: Rc<LinkContext>, signal: Option<AbortSignal>) {
    let mut backoff = Backoff::default();
    loop {
        ctx.emit(LinkEvent::Attempt);
        let url = api::stream_url(&ctx.room, ctx.member(), &(ctx.cursor)());
        if let Ok(response) = Request::get(&url)
            .abort_signal(signal.as_ref())
            .send()
            .await
            && response.ok()
            && let Some(body) = response.body()
        {
            ndjson::follow(&ctx, &body, &mut backoff).await;
        }
        ctx.lost(&mut backoff).await;
    }
}
