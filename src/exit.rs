//! How a command ends: the error that reaches `main` and the exit status it maps to. Every
//! command (`sync`, `check`, `status`, `run`) returns a [`CliError`]; `main` logs it and exits
//! with [`CliError::exit_code`]. Owned by no command, so commands never import each other.

use crate::config::{self, ConfigError};
use crate::{auth, graph, lock, store, sync};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => config::EX_CONFIG as u8,
            CliError::Failed(_) => 1,
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
failed_from!(
    store::StoreError,
    lock::LockError,
    sync::SyncError,
    auth::AuthError,
    graph::GraphError
);
