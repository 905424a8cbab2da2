//! What the process does to itself before anything else runs: it makes itself non-dumpable,
//! so no core dump (a watchdog abort, SIGQUIT) writes the client secret or the access token
//! to disk, and so other processes of the same user cannot read its memory or environment
//! through `/proc` or ptrace. The units add `LimitCORE=0` on top.

/// Called first thing in `main`. Failing to harden is logged later by the caller, never fatal:
/// the kernel refuses this only in exotic sandboxes.
pub fn at_start() -> Result<(), String> {
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| format!("cannot switch off core dumps (prctl PR_SET_DUMPABLE): {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_is_no_longer_dumpable() {
        super::at_start().unwrap();
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
    }
}
