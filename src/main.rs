//! The `entra-sync` binary: parse arguments, start logging, run, turn the result into an
//! exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let hardened = entra_sync::hardening::at_start();
    let cli = entra_sync::cli::Cli::parse();
    entra_sync::logging::init();
    for problem in hardened {
        log::warn!("{problem}");
    }
    match entra_sync::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error}");
            ExitCode::from(error.exit_code())
        }
    }
}
