//! entra-sync keeps a local SQLite copy of a Microsoft Entra ID tenant's users, groups and
//! memberships, and of the local team that a chosen set of Entra groups maps into.
//!
//! Modules in reading order: `config` (the TOML file), `auth` (client-credentials tokens),
//! `graph` (HTTP to Microsoft Graph, typed delta pages; no SQL), `store` (SQLite; no HTTP),
//! `sync` (a pass: rounds of delta pages applied to the store), `team` (the mapped team),
//! `explain` (why a user is or is not in the team), `daemon` (the service loop), `status` (the `status` report), `cli` (the commands), `exit`
//! (how a command ends: its error and exit status). `hardening`, `http`, `origin`, `lock`,
//! `logging`, `shutdown`, `systemd` and `watch` are plumbing.

pub mod auth;
pub mod cli;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod exit;
pub mod explain;
pub mod graph;
pub mod guard;
pub mod history;
pub mod metrics;
pub mod status;
pub mod store;
pub mod sync;
pub mod team;

pub mod hardening;
pub mod http;
pub mod lock;
pub mod logging;
pub mod origin;
pub mod shutdown;
pub mod systemd;
pub mod watch;
