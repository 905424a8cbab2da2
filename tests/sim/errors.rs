//! Injected statuses (`Fault::Status`) and the error bodies and headers they come with: Graph's
//! (notes 4.1, 5.1) on the Graph host, AAD's (notes 1.2) on the token endpoint.

use serde_json::json;

use super::http::{self, Ctx, Incoming, Reply};
use super::{CLIENT_ID, Resource, TENANT_ID, auth};

/// 404 `Request_ResourceNotFound` for a path the simulator doesn't serve.
pub(super) fn not_found(ctx: &Ctx, incoming: &Incoming) -> Reply {
    let segment = incoming
        .path
        .trim_matches('/')
        .split('/')
        .nth(1)
        .unwrap_or_default();
    let message = format!("Resource not found for the segment '{segment}'.");
    Reply::graph_error(ctx, 404, "Request_ResourceNotFound", &message)
}

/// An injected status: Graph error body (with throttling headers for 429) or AAD error body.
/// An empty `code` gets the code the service usually sends with that status.
pub(super) fn status_fault(
    ctx: &Ctx,
    resource: Resource,
    status: u16,
    retry_after: Option<&str>,
    code: &'static str,
) -> Reply {
    let mut reply = if resource == Resource::Token {
        auth::aad_error(ctx, &token_status_error(status, code))
    } else {
        let code = if code.is_empty() {
            default_graph_code(status)
        } else {
            code
        };
        match status {
            // Service load rather than the RU budget: a fixed "20 % throttled" figure.
            429 => throttled(ctx, code).with("x-ms-throttle-limit-percentage", "1.2"),
            401 => Reply::graph_error(ctx, status, code, status_message(status))
                .with("WWW-Authenticate", "Bearer realm=\"\""),
            _ => Reply::graph_error(ctx, status, code, status_message(status)),
        }
    };
    if let Some(retry_after) = retry_after {
        reply = reply.with("Retry-After", retry_after);
    }
    reply
}

fn token_status_error(status: u16, code: &'static str) -> auth::AadError {
    let (aadsts, text) = match status {
        429 => (
            90055,
            "The tenant is being throttled. Please try again later.",
        ),
        400..=499 => (900144, "The request is not valid."),
        _ => (
            50000,
            "There was an error issuing a token or an issue with our sign-in service.",
        ),
    };
    let error = match (code, status) {
        ("", 400..=428 | 430..=499) => "invalid_request",
        ("", _) => "temporarily_unavailable",
        (code, _) => code,
    };
    auth::AadError {
        status,
        error,
        code: aadsts,
        text: text.to_string(),
    }
}

fn default_graph_code(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "InvalidAuthenticationToken",
        403 => "Authorization_RequestDenied",
        404 => "Request_ResourceNotFound",
        429 => "TooManyRequests",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "UnknownError",
    }
}

/// The documented 429 body (notes 5.1) and throttle headers (notes 5.2).
pub(super) fn throttled(ctx: &Ctx, code: &str) -> Reply {
    let body = json!({"error": {
        "code": code,
        "message": "Please retry again later.",
        "innerError": {
            "code": "429",
            "date": http::graph_date(),
            "message": "Please retry after",
            "request-id": ctx.request_id,
            "client-request-id": ctx.client_request_id,
            "status": "429",
        }
    }});
    // `x-ms-resource-unit` and (when the budget has no say) the limit percentage are added by
    // `quota::decorate`.
    Reply::graph(ctx, 429, body.to_string().into_bytes())
        .with(
            "x-ms-throttle-scope",
            format!("Tenant_Application/Read/{CLIENT_ID}/{TENANT_ID}"),
        )
        .with("x-ms-throttle-information", "ResourceUnitLimitExceeded")
}

fn status_message(status: u16) -> &'static str {
    match status {
        400 => "The request is not valid.",
        401 => "Access token validation failure.",
        403 => "Insufficient privileges to complete the operation.",
        404 => "Resource not found.",
        500 => "An internal server error occurred. Please retry later.",
        502 => "Bad Gateway.",
        503 => "The service is temporarily unavailable. Please retry later.",
        504 => "The gateway timed out waiting for the backend service.",
        _ => "The request failed.",
    }
}
