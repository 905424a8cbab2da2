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
    let logger = builder.build();
    log::set_max_level(logger.filter());
    // Ignored when a logger is already set (only tests call init twice).
    let _ = log::set_boxed_logger(Box::new(HttpStackCapped(logger)));
}

/// The HTTP stack's debug and trace output can show request lines and bodies (the token
/// request carries the client secret): only its warnings and errors pass, whatever RUST_LOG
/// says. A filter directive cannot promise that (a more specific `ureq::run=debug` overrides
/// `ureq=warn`), so this wrapper drops the records after every directive.
struct HttpStackCapped(env_logger::Logger);

const HTTP_STACK: [&str; 3] = ["ureq", "ureq_proto", "rustls"];

fn is_http_stack(target: &str) -> bool {
    HTTP_STACK.iter().any(|module| {
        target
            .strip_prefix(module)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

impl log::Log for HttpStackCapped {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        (metadata.level() <= log::Level::Warn || !is_http_stack(metadata.target()))
            && self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
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
