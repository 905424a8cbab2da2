//! Log output: `[2026-11-26T08:00:00Z INFO  entra_sync::sync] message` on a terminal or in a
//! file (env_logger's usual shape, with a UTC timestamp); under journald (`JOURNAL_STREAM`
//! set) no timestamps, since journald adds its own, and a syslog priority prefix (`<3>`) on
//! every line so `journalctl -p warning` works. `RUST_LOG` overrides the level.

use std::io::Write;

pub fn init() {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(log::LevelFilter::Info);
    if let Ok(filters) = std::env::var("RUST_LOG") {
        builder.parse_filters(&filters);
    }
    // The HTTP stack's debug and trace output can show request lines and bodies (the token
    // request carries the client secret): only its warnings and errors are shown, whatever RUST_LOG says.
    for module in ["ureq", "ureq_proto", "rustls"] {
        builder.filter_module(module, log::LevelFilter::Warn);
    }
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder
            .format(|out, record| writeln!(out, "<{}>{}", priority(record.level()), record.args()));
    } else {
        builder.format(|out, record| {
            writeln!(
                out,
                "[{} {:<5} {}] {}",
                crate::store::now(),
                record.level(),
                record.target(),
                record.args()
            )
        });
    }
    builder.init();
}

/// syslog priorities: err 3, warning 4, info 6, debug 7.
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}
