//! `POST /v1.0/$batch` (JSON batching, notes 3.11): up to 20 requests in one HTTP round trip.
//!
//! Each item is evaluated on its own, exactly like a top-level request (its own RU charge,
//! its own 429, its own queued fault, recorded in `Sim::requests` with `in_batch`), in the
//! order of the `requests` array; the items inherit the envelope's `Authorization` unless
//! they carry their own. Item `url`s are relative to the version root, with or without a
//! leading `/`; absolute URLs are refused per item (400). `dependsOn` is accepted and
//! ignored (items run in array order anyway). The responses come back in a deterministic
//! pseudo-random order, so a client must match them by `id`.
//!
//! The envelope pays `Settings::page_latency` once; `Delay` faults taken by items add up.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::http::{self, Incoming, Reply};
use super::synthetic::XorShift;
use super::{Call, Endpoint, classify, evaluate};

/// Graph's limit on requests per batch.
const MAX_REQUESTS: usize = 20;

/// Headers of the envelope that make no sense on an item response.
const ENVELOPE_ONLY: &[&str] = &[
    "request-id",
    "client-request-id",
    "x-ms-ags-diagnostic",
    "strict-transport-security",
];

/// Answers one `$batch` envelope; returns the reply and the items' extra delay.
pub(super) fn serve(call: &Call) -> (Reply, Duration) {
    let (shared, incoming, ctx) = (call.shared, call.incoming, call.ctx);
    let bad = |message: &str| {
        (
            Reply::graph_error(ctx, 400, "BadRequest", message),
            Duration::ZERO,
        )
    };
    if incoming.method != "POST" {
        let reply = Reply::method_not_allowed(ctx);
        return (reply, Duration::ZERO);
    }
    let Ok(body) = serde_json::from_str::<Value>(&incoming.body) else {
        return bad("Invalid batch payload format.");
    };
    let Some(requests) = body.get("requests").and_then(Value::as_array) else {
        return bad("Invalid batch payload format.");
    };
    if requests.is_empty() {
        return bad("Invalid batch payload format: no requests.");
    }
    if requests.len() > MAX_REQUESTS {
        return bad(&format!(
            "The number of requests in the batch exceeds the limit of {MAX_REQUESTS}."
        ));
    }
    let mut items = Vec::with_capacity(requests.len());
    let mut ids = HashSet::new();
    for request in requests {
        let id = request.get("id").and_then(Value::as_str);
        let method = request.get("method").and_then(Value::as_str);
        let url = request.get("url").and_then(Value::as_str);
        let (Some(id), Some(method), Some(url)) = (id, method, url) else {
            return bad(
                "Invalid batch payload format: each request needs an id, a method and a url.",
            );
        };
        if !ids.insert(id.to_string()) {
            return bad(&format!("Duplicate request id '{id}' in the batch."));
        }
        items.push((id, method, url, request));
    }
    let mut pause = Duration::ZERO;
    let mut responses = Vec::with_capacity(items.len());
    for (id, method, url, request) in items {
        let item = item_request(incoming, method, url, request);
        let refusal = if url.contains("://") {
            Some("Invalid request URL: batch item urls are relative to the version root.")
        } else if classify(&item.path) == Endpoint::Batch {
            Some("Nested batch requests are not supported.")
        } else {
            None
        };
        let reply = match refusal {
            // Refused before evaluation (no RU, no fault), but still counted and recorded.
            Some(message) => {
                let endpoint = classify(&item.path);
                let reply = Reply::graph_error(&http::Ctx::new(&item), 400, "BadRequest", message);
                shared.count(endpoint, reply.status, 0, true);
                shared.record(&item, endpoint, call.at, reply.status, true);
                reply
            }
            None => {
                let answer = evaluate(shared, &item, call.settings, call.at, true);
                pause += answer.pause;
                shared.record(&item, answer.endpoint, call.at, answer.reply.status, true);
                answer.reply
            }
        };
        responses.push(item_response(id, reply));
    }
    // Fisher-Yates with a per-batch seed: "responses may come in any order" (notes 3.11).
    let serial = shared.batches.fetch_add(1, Ordering::Relaxed);
    let mut rng = XorShift::new(serial.wrapping_add(0x5EED));
    for i in (1..responses.len()).rev() {
        responses.swap(i, rng.below(i + 1));
    }
    let body = json!({ "responses": responses }).to_string();
    (Reply::graph(ctx, 200, body.into_bytes()), pause)
}

/// The item as a request of its own: `/v1.0/` + its url, its headers plus the envelope's
/// `Authorization` (and `client-request-id`) when it has none.
fn item_request(envelope: &Incoming, method: &str, url: &str, request: &Value) -> Incoming {
    let path_and_query = format!("/v1.0/{}", url.trim_start_matches('/'));
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path.to_string(), query.to_string()),
        None => (path_and_query.clone(), String::new()),
    };
    let mut headers: Vec<(String, String)> = request
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_string())))
        .collect();
    for inherited in ["authorization", "client-request-id"] {
        let has = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(inherited));
        if let (false, Some(value)) = (has, envelope.header(inherited)) {
            headers.push((inherited.to_string(), value.to_string()));
        }
    }
    let body = request
        .get("body")
        .map(Value::to_string)
        .unwrap_or_default();
    Incoming {
        method: method.to_ascii_uppercase(),
        path_and_query,
        path,
        query,
        headers,
        body,
        peer: envelope.peer,
    }
}

/// `{"id","status","headers","body"}`; a body that is not JSON is sent as a base64 string.
fn item_response(id: &str, reply: Reply) -> Value {
    let headers: Map<String, Value> = reply
        .headers
        .iter()
        .filter(|(name, _)| !ENVELOPE_ONLY.iter().any(|e| name.eq_ignore_ascii_case(e)))
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect();
    let mut response = json!({
        "id": id,
        "status": reply.status,
        "headers": headers,
    });
    if !reply.body.is_empty() {
        let body = serde_json::from_slice::<Value>(&reply.body)
            .unwrap_or_else(|_| json!(http::base64url(&reply.body)));
        response["body"] = body;
    }
    response
}
