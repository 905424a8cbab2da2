//! HTTP plumbing shared by the token endpoint and Graph: the parsed request, the reply,
//! Graph's common headers and error body, time formats, random tokens and URL encodings.

use std::io::{Cursor, Read};

use serde_json::json;
use time::OffsetDateTime;
use time::macros::format_description;

/// Content type of every Graph JSON response.
pub(super) const GRAPH_CONTENT_TYPE: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";
/// Content type of the token endpoint's responses.
pub(super) const AAD_CONTENT_TYPE: &str = "application/json; charset=utf-8";
const AGS_DIAGNOSTIC: &str = r#"{"ServerInfo":{"DataCenter":"Simulated","Slice":"E","Ring":"5","ScaleUnit":"000","RoleInstance":"SIM0000000001"}}"#;
/// Token bodies are tiny; anything bigger than this is not a token request worth reading.
const MAX_BODY: u64 = 64 * 1024;

/// A received request, detached from the connection.
pub(super) struct Incoming {
    pub method: String,
    pub path_and_query: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The client's end of the connection it came on (a `$batch` item: its envelope's).
    pub peer: Option<std::net::SocketAddr>,
}

impl Incoming {
    /// Reads method, target, headers and (for non-GET requests) the body.
    pub fn read(request: &mut tiny_http::Request) -> Incoming {
        let method = request.method().as_str().to_string();
        let path_and_query = request.url().to_string();
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path.to_string(), query.to_string()),
            None => (path_and_query.clone(), String::new()),
        };
        let headers = request
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_string(),
                    h.value.as_str().to_string(),
                )
            })
            .collect();
        let mut body = String::new();
        if method != "GET" {
            // A body that isn't UTF-8 is left empty: the endpoint then reports missing fields.
            let _ = request.as_reader().take(MAX_BODY).read_to_string(&mut body);
        }
        Incoming {
            method,
            path_and_query,
            path,
            query,
            headers,
            body,
            peer: request.remote_addr().copied(),
        }
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Per-request ids: Graph's `request-id` and the echoed (or invented) `client-request-id`.
pub(super) struct Ctx {
    pub request_id: String,
    pub client_request_id: String,
}

impl Ctx {
    /// New ids for `incoming`.
    pub fn new(incoming: &Incoming) -> Ctx {
        let client_request_id = incoming
            .header("client-request-id")
            .map_or_else(new_guid, str::to_string);
        Ctx {
            request_id: new_guid(),
            client_request_id,
        }
    }
}

/// A response about to be sent.
pub(super) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply with a body of `content_type`.
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets a header, replacing any value it had.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.into()));
    }

    /// A Graph reply: JSON content type plus the headers Graph puts on every response.
    pub fn graph(ctx: &Ctx, status: u16, body: Vec<u8>) -> Reply {
        Reply::new(status, GRAPH_CONTENT_TYPE, body)
            .with("request-id", ctx.request_id.clone())
            .with("client-request-id", ctx.client_request_id.clone())
            .with("x-ms-ags-diagnostic", AGS_DIAGNOSTIC)
            .with("Cache-Control", "no-cache")
            .with("Strict-Transport-Security", "max-age=31536000")
    }

    /// A Graph error (protocol notes 4.1) with `innerError` date and ids.
    pub fn graph_error(ctx: &Ctx, status: u16, code: &str, message: &str) -> Reply {
        let body = json!({"error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": graph_date(),
                "request-id": ctx.request_id,
                "client-request-id": ctx.client_request_id,
            }
        }});
        Reply::graph(ctx, status, body.to_string().into_bytes())
    }

    /// 405 for a method the path does not take, as Graph words it.
    pub fn method_not_allowed(ctx: &Ctx) -> Reply {
        Reply::graph_error(
            ctx,
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        )
    }

    /// Cuts the body in half (a connection dropped mid-body; Content-Length follows).
    pub fn truncate(&mut self) {
        let keep = self.body.len() / 2;
        self.body.truncate(keep);
    }

    /// Converts to a tiny_http response that always carries Content-Length (never chunked).
    pub fn into_response(self) -> tiny_http::Response<Cursor<Vec<u8>>> {
        let length = self.body.len();
        let headers = self
            .headers
            .iter()
            .filter_map(|(name, value)| {
                tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
            })
            .collect();
        tiny_http::Response::new(
            tiny_http::StatusCode(self.status),
            headers,
            Cursor::new(self.body),
            Some(length),
            None,
        )
        .with_chunked_threshold(usize::MAX)
    }
}

/// Graph's `innerError.date`: UTC without a zone, e.g. `2025-03-04T10:20:00`.
pub(super) fn graph_date() -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    OffsetDateTime::now_utc().format(format).unwrap_or_default()
}

/// The token endpoint's timestamp: `2025-03-04 10:11:12Z` (a space, not `T`).
pub(super) fn aad_timestamp() -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    OffsetDateTime::now_utc().format(format).unwrap_or_default()
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// A fresh random GUID string.
pub(super) fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An unguessable opaque token: base64url of `blocks` × 16 random bytes.
pub(super) fn random_token(blocks: usize) -> String {
    let bytes: Vec<u8> = (0..blocks)
        .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
        .collect();
    base64url(&bytes)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Unpadded base64url.
pub(super) fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            let c = B64[(n >> (18 - 6 * i) & 63) as usize];
            out.push(match c {
                b'+' => '-',
                b'/' => '_',
                c => char::from(c),
            });
        }
    }
    out
}

/// Standard (or url-safe) base64, padding optional; `None` on bad input.
pub(super) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let value = match c {
            b'-' => 62,
            b'_' => 63,
            c => B64.iter().position(|&b| b == c)? as u32,
        };
        bits = bits << 6 | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`, as in forms and queries).
pub(super) fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) if plus_is_space => out.push(b' '),
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query value, keeping characters OData URLs normally show as-is.
pub(super) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~,'()$:".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `a=1&b=2` pairs, decoded (form bodies and query strings).
pub(super) fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true), percent_decode(value, true))
        })
        .collect()
}
