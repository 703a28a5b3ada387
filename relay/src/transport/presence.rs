//! The presence and typing endpoints (the signals themselves travel on every transport; see
//! `crate::presence`):
//! - `GET /api/rooms/{room}/presence` → `{"members":[{"id","name","transports"}],"count":N}`;
//! - `POST /api/rooms/{room}/presence` with `{"client":ID,"leave":true}`: the tab leaves now
//!   (what a page sends with `navigator.sendBeacon` on `pagehide`); `204`;
//! - `POST /api/rooms/{room}/typing` with `{"client":ID}`: the member is typing (the
//!   transports without a WebSocket); `200 {"sent":bool}`, `false` when it came too soon
//!   after the previous one, or from no member here.

use std::time::Instant;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use protocol::PresenceSnapshot;
use protocol::presence::{PresenceRequest, TypingRequest, TypingResponse};

use super::poll::{json_object, read_body};
use crate::client::ClientKey;
use crate::error::ApiError;
use crate::presence::member::MemberId;
use crate::state::AppState;
use crate::validate::{self, RoomName};

pub async fn list(
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<Json<PresenceSnapshot>, ApiError> {
    let room = RoomName::parse(&room)?;
    Ok(Json(state.presence.snapshot(&room, None)))
}

pub async fn update(
    State(state): State<AppState>,
    Path(room): Path<String>,
    Extension(client): Extension<ClientKey>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    state.origins.check(&headers)?;
    let room = RoomName::parse(&room)?;
    state
        .budgets
        .post
        .take(client, Instant::now())
        .map_err(ApiError::rate_limited)?;
    // `sendBeacon` sends text as `text/plain`: any content type is read as JSON.
    let request: PresenceRequest = json_object(&read_body(body, &state).await?)?;
    let id = validate::client_id(&request.client)?;
    if request.leave {
        state.presence.leave(&room, id);
    } else {
        state.presence.touch(&room, id);
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn typing(
    State(state): State<AppState>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<TypingResponse>, ApiError> {
    state.origins.check(&headers)?;
    let room = RoomName::parse(&room)?;
    // Paced by the request rate (the gate) and, per member, by `TYPING_EVERY_MS`.
    let request: TypingRequest = json_object(&read_body(body, &state).await?)?;
    let id = validate::client_id(&request.client)?;
    let sent = state.presence.typing(&room, &MemberId::of_client(id));
    Ok(Json(TypingResponse { sent }))
}
