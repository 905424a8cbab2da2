//! How a command ends: the error that reaches `main` and the exit status it maps to. Every
//! command (`sync`, `check`, `status`, `run`) returns a [`CliError`]; `main` logs it and exits
//! with [`CliError::exit_code`]. Owned by no command, so commands never import each other.

use crate::config::{self, ConfigError};
use crate::{auth, graph, lock, store, sync};

/// sysexits.h `EX_DATAERR`: the database file is damaged (systemd shows
/// `status=65/DATAERR`). Like a configuration error it needs a person, not a restart: the
/// units do not restart on it.
pub const EX_DATAERR: u8 = 65;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The database is corrupt: the message says how to recover.
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => config::EX_CONFIG as u8,
            CliError::Corrupt(_) => EX_DATAERR,
            CliError::Failed(_) => 1,
        }
    }
}

impl From<store::StoreError> for CliError {
    fn from(e: store::StoreError) -> CliError {
        if e.is_corruption() {
            CliError::Corrupt(e.to_string())
        } else {
            CliError::Failed(e.to_string())
        }
    }
}

impl From<sync::SyncError> for CliError {
    fn from(e: sync::SyncError) -> CliError {
        match e {
            sync::SyncError::Store(e) => e.into(),
            other => CliError::Failed(other.to_string()),
        }
    }
}

/// Errors that end a command with exit status 1, by their message.
macro_rules! failed_from {
    ($($t:ty),*) => {$(
        impl From<$t> for CliError {
            fn from(e: $t) -> CliError { CliError::Failed(e.to_string()) }
        }
    )*};
}
failed_from!(lock::LockError, auth::AuthError, graph::GraphError);
