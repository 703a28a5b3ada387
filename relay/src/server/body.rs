//! An answer's body that tells its connection when it is done, so that the connection knows
//! it is between requests (and times the next head from its first byte).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::io::ConnPhase;
use super::sockets::SlotHandle;

pub struct TrackedBody {
    inner: Body,
    phase: Arc<ConnPhase>,
    slot: SlotHandle,
}

impl TrackedBody {
    pub fn new(inner: Body, phase: Arc<ConnPhase>, slot: SlotHandle) -> TrackedBody {
        TrackedBody { inner, phase, slot }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if self.phase.request_ended() {
            self.slot.idle();
        }
    }
}
