//! What the process does to itself before anything else runs:
//!
//! - It takes `$ENTRA_SYNC_CLIENT_SECRET` out of its environment. Changing the environment
//!   of a running process needs `unsafe` (`std::env::remove_var`), which this crate forbids,
//!   and would not even help: `/proc/<pid>/environ` shows the environment the process was
//!   started with, whatever it later removes. So the process starts itself again
//!   (`execve` of its own binary, same pid, same arguments) without the variable, handing
//!   the secret over through a pipe on standard input, which no command reads otherwise.
//! - It makes itself non-dumpable, so no core dump (a watchdog abort, SIGQUIT) writes the
//!   client secret or the access token to disk, and other processes of the same user cannot
//!   read its memory or environment through `/proc` or ptrace. The units add `LimitCORE=0`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;

use crate::config;

/// Set (to "1") in the environment of the re-started process: the secret waits on stdin.
const HANDOVER_ENV: &str = "ENTRA_SYNC_SECRET_ON_STDIN";
/// A pipe holds at least this much without a reader; an Entra secret is about 40 bytes.
const HANDOVER_MAX: usize = 4096;

/// Called first thing in `main`, before any thread exists. Returns what could not be done,
/// for the log (a failure to harden is never fatal: the kernel refuses these only in exotic
/// sandboxes).
pub fn at_start() -> Vec<String> {
    let mut problems = Vec::new();
    if std::env::var_os(HANDOVER_ENV).is_some() {
        let mut secret = Vec::new();
        match std::io::stdin()
            .take(HANDOVER_MAX as u64)
            .read_to_end(&mut secret)
        {
            Ok(_) => config::hand_over_secret(String::from_utf8_lossy(&secret).into_owned()),
            Err(e) => problems.push(format!(
                "cannot read the client secret handed over from {}: {e}",
                config::SECRET_ENV
            )),
        }
    } else if let Some(secret) = std::env::var_os(config::SECRET_ENV).filter(|s| !s.is_empty()) {
        // Returns only if the process could not start itself again.
        problems.push(restart_without(secret));
    }
    if let Err(e) = not_dumpable() {
        problems.push(e);
    }
    problems
}

fn not_dumpable() -> Result<(), String> {
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| format!("cannot switch off core dumps (prctl PR_SET_DUMPABLE): {e}"))
}

/// Starts this binary again in this process without `$ENTRA_SYNC_CLIENT_SECRET`, the secret
/// on its stdin. Returns only on failure, with the reason; the process then goes on with the
/// variable in its environment.
fn restart_without(secret: OsString) -> String {
    let failed = |why: String| {
        format!(
            "cannot take {} out of the environment ({why}); it stays visible in \
             /proc/<pid>/environ to root: prefer client_secret_file or a systemd credential",
            config::SECRET_ENV
        )
    };
    if secret.len() > HANDOVER_MAX {
        return failed("the value is too long to hand over".into());
    }
    let (reader, mut writer) = match std::io::pipe() {
        Ok(pipe) => pipe,
        Err(e) => return failed(format!("pipe: {e}")),
    };
    if let Err(e) = writer.write_all(secret.as_bytes()) {
        return failed(format!("pipe: {e}"));
    }
    drop(writer);
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "entra-sync".into());
    // /proc/self/exe is this very binary, even if the file was replaced or removed since.
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env_remove(config::SECRET_ENV)
        .env(HANDOVER_ENV, "1")
        .stdin(reader)
        .exec();
    failed(format!("exec: {error}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_is_no_longer_dumpable() {
        super::not_dumpable().unwrap();
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
    }
}
