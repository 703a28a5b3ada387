//! Integration tests: the real relay on port 0, real clients over real sockets.

mod attack;
mod bad_input;
mod delivery;
mod exactly_once;
mod faults;
mod ops;
mod origin;
mod overload;
mod page;
mod presence;
mod resume;
mod scale_out;
mod shutdown;
mod slow_consumer;
mod streaming;
mod support;
mod webtransport;
