//! Integration tests: the real `entra-sync` binary against the project's Graph simulator.

// Tests and their helpers fail by panicking.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../sim/mod.rs"]
mod sim;
#[allow(dead_code)]
mod support;

mod commands;
mod credentials;
mod daemon;
mod dry_run;
mod explain;
mod faults;
mod guard;
mod history;
mod members_view;
mod metrics;
mod pinning;
mod snapshot;
mod sync;
