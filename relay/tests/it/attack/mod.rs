//! The attack suite: each test tries one way a client on the open internet (or an operator's
//! typo) could take the relay down or lock other people out, against the real relay over real
//! sockets. The numbers in the module names are the items of issue 11, whose test each is.

mod budgets_2;
mod bytes_4;
mod headers_12;
mod hosts_7;
mod logs_9;
mod metrics_8;
mod names_11;
mod polls_5;
mod rate_limits_6;
mod rooms_1;
mod settings_10;
mod slow_readers_2;
mod slowloris_3;
