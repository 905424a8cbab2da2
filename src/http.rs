//! The HTTP plumbing shared by `auth` and `graph`: one configured ureq agent, request ids,
//! `Retry-After` and backoff. Nothing here knows about Entra or Graph semantics.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, SystemTime};

use crate::origin::Origin;

/// Largest body accepted from the token endpoint or Graph, after decompression. A delta page
/// is a few hundred KiB (200 users, or one group with 500 member links: graph-protocol.md
/// 3.5), but a snapshot's list page holds 999 objects (`$top=999`, 3.11): 999 groups with
/// descriptions of 1,024 non-ASCII characters come near 4.5 MiB, and a page over the limit
/// would be refused at every try. 8 MiB covers it. With the page parser's caps, a hostile
/// page at the limit still leaves the daemon well under the unit's `MemoryMax` (the test
/// `hostile_pages_keep_peak_memory_bounded`).
pub const BODY_LIMIT: u64 = 8 * 1024 * 1024;
/// No server-supplied wait is honoured beyond this; a longer one is treated as this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The agent used for every request: explicit timeouts (ureq has none by default), statuses
/// returned as responses so callers map them, no redirects (a redirect could carry the bearer
/// token to another host), and the proxy from `HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY` unless
/// `use_proxy` is false.
pub fn agent(use_proxy: bool) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("entra-sync/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_send_request(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(100)))
        .timeout_recv_body(Some(Duration::from_secs(100)))
        .proxy(use_proxy.then(ureq::Proxy::try_from_env).flatten())
        .build()
        .into()
}

/// Whether requests to `endpoint` go through the proxy from the environment: never for a
/// loopback endpoint (a local test server or simulator, the only hosts plain http is allowed
/// for), whatever `NO_PROXY` says.
pub fn use_proxy_for(endpoint: &str) -> bool {
    !Origin::parse(endpoint).is_ok_and(|origin| origin.is_loopback())
}

/// A fresh `client-request-id` (graph-protocol.md 5.4: one per request, retries included).
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn read_body(response: ureq::http::Response<ureq::Body>) -> Result<Vec<u8>, ureq::Error> {
    response
        .into_body()
        .into_with_config()
        .limit(BODY_LIMIT)
        .read_to_vec()
}

/// `Retry-After` as seconds (Graph sends fractions such as `2.128`) or as an HTTP date.
pub fn retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    retry_after_value(headers.get("retry-after")?.to_str().ok()?)
}

/// A `Retry-After` value read elsewhere than in response headers (a `$batch` item's), as
/// [`retry_after`] reads it.
pub fn retry_after_value(value: &str) -> Option<Duration> {
    parse_retry_after(value.trim(), SystemTime::now())
}

pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<f64>() {
        if !seconds.is_finite() || seconds < 0.0 {
            return None;
        }
        return Some(Duration::from_secs_f64(
            seconds.min(MAX_RETRY_AFTER.as_secs_f64()),
        ));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let date = time::PrimitiveDateTime::parse(value, &format).ok()?;
    let at = SystemTime::from(date.assume_utc());
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// `text` with every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`, RFC 3986) as
/// `%XX`: a `$filter` value or a path segment that cannot end the query or the path.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Longest piece of server text (an error message, a code, a header) quoted in a log line or
/// an error; Graph's and Entra's real messages are well under this.
pub const SERVER_TEXT_MAX: usize = 300;

/// Text a server sent, made safe to quote in a log line or an error message (and so in
/// `sync_runs.error`): control characters, newlines included, and the Unicode line separators
/// and direction overrides are escaped (`\n`, `\u{1b}`), so the text can neither start a forged
/// journald line (`\n<3>...`) nor reorder what the operator reads; and it is cut to
/// [`SERVER_TEXT_MAX`] characters, saying how much was left off.
pub fn server_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(SERVER_TEXT_MAX + 32));
    for (shown, c) in text.chars().enumerate() {
        if shown == SERVER_TEXT_MAX {
            let rest = text.chars().count() - shown;
            out.push_str(&format!("... ({rest} more characters)"));
            break;
        }
        let unsafe_char = c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if unsafe_char {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Exponential backoff with jitter for failures that carry no `Retry-After`: about 1 s, 2 s,
/// 4 s ... capped at 60 s, each between half and all of its step.
pub struct Backoff {
    step: Duration,
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff {
            step: Duration::from_secs(1),
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(Duration::from_secs(60));
        step.mul_f64(0.5 + jitter() * 0.5)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// A number in [0, 1) that differs between calls and processes; good enough for jitter.
fn jitter() -> f64 {
    let bits = RandomState::new().hash_one(std::time::Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_fractions_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_741_083_300); // 2025-03-04 10:15:00
        assert_eq!(
            parse_retry_after("2.128", now),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Tue, 04 Mar 2025 10:15:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Tue, 04 Mar 2025 10:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("99999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn percent_encoding_leaves_only_unreserved_bytes() {
        assert_eq!(
            percent_encode("userPrincipalName ge 'a' and x lt 'b'"),
            "userPrincipalName%20ge%20%27a%27%20and%20x%20lt%20%27b%27"
        );
        assert_eq!(percent_encode("a&b=c/d?e#f%"), "a%26b%3Dc%2Fd%3Fe%23f%25");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode("Az09-._~"), "Az09-._~");
    }

    #[test]
    fn server_text_cannot_forge_log_lines() {
        let forged = server_text("denied\n<3>entra-sync: team emptied\r\n\u{1b}[2J\u{2028}x");
        assert_eq!(
            forged,
            "denied\\n<3>entra-sync: team emptied\\r\\n\\u{1b}[2J\\u{2028}x"
        );
        assert!(!forged.contains(['\n', '\r', '\u{1b}', '\u{2028}']));
        assert_eq!(
            server_text("Insufficient privileges."),
            "Insufficient privileges."
        );
        assert_eq!(server_text("tab\there"), "tab\\there");
    }

    #[test]
    fn server_text_is_capped() {
        let long = "é".repeat(SERVER_TEXT_MAX + 50);
        let shown = server_text(&long);
        assert!(shown.starts_with(&"é".repeat(SERVER_TEXT_MAX)));
        assert!(shown.ends_with("... (50 more characters)"), "{shown}");
        assert_eq!(
            server_text(&"a".repeat(SERVER_TEXT_MAX)),
            "a".repeat(SERVER_TEXT_MAX)
        );
        // A megabyte of newlines costs a bounded line, not a megabyte of escapes.
        assert!(server_text(&"\n".repeat(1 << 20)).len() < 4 * SERVER_TEXT_MAX);
    }

    #[test]
    fn backoff_grows_to_a_cap() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(500) && delays[0] <= Duration::from_secs(1));
        assert!(delays[3] >= Duration::from_secs(4));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(60)));
        assert!(delays[9] >= Duration::from_secs(30));
    }
}

/// Issue 7 item 6: whatever a server writes in `Retry-After`, parsing never panics and the
/// wait stays within [0, MAX_RETRY_AFTER].
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn check(value: &str, now: SystemTime) {
        if let Some(wait) = parse_retry_after(value, now) {
            assert!(wait <= MAX_RETRY_AFTER, "{value:?}: {wait:?}");
        }
    }

    /// Values close to real ones: numbers in every notation, dates with every field varied.
    fn near_valid() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<f64>().prop_map(|f| f.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            "[-+]?[0-9]{0,30}(\\.[0-9]{0,30})?([eE][-+]?[0-9]{1,5})?",
            "(Mon|Tue|Xyz), [0-9]{1,3} (Jan|Mar|Dec|Foo) [-+]?[0-9]{1,6} [0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3} (GMT|UTC)?",
            "(NaN|inf|-inf|infinity|-0|-0.0|0x10|1_000| 7 |\u{0}|)",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn any_retry_after_is_bounded(value in any::<String>(), now_secs in any::<u32>()) {
            check(&value, SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(now_secs)));
        }

        #[test]
        fn near_valid_retry_after_is_bounded(value in near_valid(), now_secs in any::<u32>()) {
            check(&value, SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(now_secs)));
        }
    }

    #[test]
    fn edge_values() {
        let now = SystemTime::UNIX_EPOCH;
        for value in [
            "-0",
            "-0.0",
            "1e400",
            "NaN",
            "inf",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            check(value, now);
        }
        assert_eq!(parse_retry_after("1e400", now), None);
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
    }
}
