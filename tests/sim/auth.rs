//! The Entra token endpoint (`POST /{tenant}/oauth2/v2.0/token`, client credentials with a
//! secret) and validation of the bearer tokens it issues.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::http::{self, AAD_CONTENT_TYPE, Ctx, Incoming, Reply};
use super::identity::{self, IdentityState};
use super::schema::ObjectType;
use super::{CLIENT_ID, CLIENT_SECRET, Settings, TENANT_DOMAIN, TENANT_ID, TokenError};

/// Graph resources a `/.default` scope may name (all national clouds share the path layout).
/// The simulator's own URL is not one of them, as Entra would not know it either.
const GRAPH_RESOURCES: &[&str] = &[
    "https://graph.microsoft.com",
    "https://graph.microsoft.us",
    "https://dod-graph.microsoft.us",
    "https://microsoftgraph.chinacloudapi.cn",
    "00000003-0000-0000-c000-000000000000",
];

/// Application roles a token carries, fixed when it is issued (consent given later needs a
/// new token, as in Entra).
#[derive(Clone, Copy, Debug)]
pub(super) struct Roles {
    pub users: bool,
    pub groups: bool,
}

impl Roles {
    fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.users {
            names.push("User.Read.All");
        }
        if self.groups {
            names.push("GroupMember.Read.All");
        }
        names
    }

    /// Whether the token may call `ty`'s delta.
    pub fn allow(self, ty: ObjectType) -> bool {
        match ty {
            ObjectType::User => self.users,
            ObjectType::Group => self.groups,
        }
    }
}

/// Outcome of checking an `Authorization` header.
pub(super) enum Bearer {
    Valid(Roles),
    /// 401 `InvalidAuthenticationToken` with this message.
    Rejected(&'static str),
}

struct Issued {
    roles: Roles,
    expires: Instant,
}

/// Every access token issued so far.
#[derive(Default)]
pub(super) struct TokenStore {
    tokens: HashMap<String, Issued>,
    /// Used assertion ids and Arc challenge keys.
    pub identity: IdentityState,
}

impl TokenStore {
    /// Mints a fake JWT (its middle part decodes to claims with `roles`; no real signature).
    pub fn issue(&mut self, roles: Roles, lifetime_secs: u64) -> String {
        self.issue_with(roles, lifetime_secs, json!({}))
    }

    /// [`TokenStore::issue`] with `extra` claims (a managed identity's `oid`, `appid`).
    pub fn issue_with(
        &mut self,
        roles: Roles,
        lifetime_secs: u64,
        extra: serde_json::Value,
    ) -> String {
        let now = http::unix_now();
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": "sim-key"});
        let mut claims = json!({
            "aud": "https://graph.microsoft.com",
            "iss": format!("https://sts.windows.net/{TENANT_ID}/"),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_secs as i64,
            "appid": CLIENT_ID,
            "idtyp": "app",
            "tid": TENANT_ID,
            "uti": http::random_token(1),
            "ver": "1.0",
        });
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                claims.insert(k.clone(), v.clone());
            }
        }
        // A token without consent has no roles claim at all (protocol notes 1.2).
        if !roles.names().is_empty() {
            claims["roles"] = json!(roles.names());
        }
        let token = format!(
            "{}.{}.{}",
            http::base64url(header.to_string().as_bytes()),
            http::base64url(claims.to_string().as_bytes()),
            http::random_token(2)
        );
        let expires = Instant::now() + Duration::from_secs(lifetime_secs);
        self.tokens.insert(token.clone(), Issued { roles, expires });
        token
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, header: Option<&str>) -> Bearer {
        let token = header.and_then(|h| {
            let (scheme, token) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Bearer::Rejected("Access token is empty.");
        };
        match self.tokens.get(token) {
            Some(issued) if Instant::now() < issued.expires => Bearer::Valid(issued.roles),
            Some(_) => Bearer::Rejected("Access token has expired or is not yet valid."),
            None if token.matches('.').count() == 2 => {
                Bearer::Rejected("Access token validation failure.")
            }
            None => Bearer::Rejected("CompactToken parsing failed with error code: 80049217"),
        }
    }

    /// Makes every token issued so far expired.
    pub fn expire_all(&mut self) {
        let now = Instant::now();
        for issued in self.tokens.values_mut() {
            issued.expires = now;
        }
    }
}

/// A token-endpoint failure: HTTP status, OAuth `error`, AADSTS number and message text.
pub(super) struct AadError {
    pub status: u16,
    pub error: &'static str,
    pub code: u32,
    pub text: String,
}

pub(super) fn fail(
    status: u16,
    error: &'static str,
    code: u32,
    text: impl Into<String>,
) -> AadError {
    AadError {
        status,
        error,
        code,
        text: text.into(),
    }
}

fn missing(name: &str) -> AadError {
    fail(
        400,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

/// Answers a token request: a token, or the error the request (or `settings.token_error`)
/// calls for. `graph_host` (the simulator's own URL) is accepted as a scope resource.
pub(super) fn serve(
    tokens: &mut TokenStore,
    incoming: &Incoming,
    ctx: &Ctx,
    settings: &Settings,
    graph_host: &str,
) -> Reply {
    let audience = format!("{graph_host}{}", incoming.path);
    match validate(
        &mut tokens.identity,
        incoming,
        settings,
        graph_host,
        &audience,
    ) {
        Ok(()) => {
            let roles = Roles {
                users: settings.consent_users,
                groups: settings.consent_groups,
            };
            let lifetime = settings.token_lifetime_secs;
            let body = json!({
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": tokens.issue(roles, lifetime),
            });
            aad_reply(ctx, 200, body.to_string())
        }
        Err(error) => aad_error(ctx, &error),
    }
}

/// An AAD error response (protocol notes 1.1): description ends with the trace and
/// correlation ids and timestamp joined by `\r\n`.
pub(super) fn aad_error(ctx: &Ctx, error: &AadError) -> Reply {
    let timestamp = http::aad_timestamp();
    let (trace, correlation) = (&ctx.request_id, &ctx.client_request_id);
    let description = format!(
        "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {timestamp}",
        error.code, error.text
    );
    let body = json!({
        "error": error.error,
        "error_description": description,
        "error_codes": [error.code],
        "timestamp": timestamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": format!("https://login.microsoftonline.com/error?code={}", error.code),
    });
    aad_reply(ctx, error.status, body.to_string())
}

fn aad_reply(ctx: &Ctx, status: u16, body: String) -> Reply {
    Reply::new(status, AAD_CONTENT_TYPE, body.into_bytes())
        .with("Cache-Control", "no-store, no-cache")
        .with("Pragma", "no-cache")
        .with("x-ms-request-id", ctx.request_id.clone())
        .with("client-request-id", ctx.client_request_id.clone())
}

fn validate(
    identity: &mut IdentityState,
    incoming: &Incoming,
    settings: &Settings,
    graph_host: &str,
    audience: &str,
) -> Result<(), AadError> {
    let tenant = incoming
        .path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    if incoming.method != "POST" {
        let text = format!(
            "The endpoint only accepts POST requests. Received a {} request.",
            incoming.method
        );
        return Err(fail(400, "invalid_request", 900561, text));
    }
    if let Some(forced) = settings.token_error {
        return Err(forced_error(forced, tenant));
    }
    check_tenant(tenant)?;
    let form = http::parse_pairs(&incoming.body);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match field("grant_type") {
        None => return Err(missing("grant_type")),
        Some("client_credentials") => {}
        Some(other) => {
            let text = format!("The app requested an unsupported grant type '{other}'.");
            return Err(fail(400, "unsupported_grant_type", 70003, text));
        }
    }
    let basic = basic_credentials(incoming.header("authorization"));
    let client_id = field("client_id")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let Some(client_id) = client_id else {
        return Err(missing("client_id"));
    };
    if !client_id.eq_ignore_ascii_case(CLIENT_ID) {
        return Err(app_not_found(&client_id, tenant));
    }
    check_scope(field("scope"), tenant, graph_host)?;
    if let Some(assertion) = field("client_assertion") {
        if field("client_assertion_type")
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return Err(missing("client_assertion_type"));
        }
        if field("client_secret").is_some() {
            let text = "Only one of client_secret and client_assertion may be sent.";
            return Err(fail(400, "invalid_request", 90014, text));
        }
        return identity::check_assertion(identity, assertion, audience, settings);
    }
    let secret = field("client_secret")
        .map(str::to_string)
        .or_else(|| basic.map(|b| b.1));
    match secret {
        None => Err(fail(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )),
        Some(secret) if secret == CLIENT_SECRET => Ok(()),
        Some(_) => Err(wrong_secret()),
    }
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 2.3.1).
fn basic_credentials(header: Option<&str>) -> Option<(String, String)> {
    let (scheme, encoded) = header?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(http::base64_decode(encoded.trim())?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((
        http::percent_decode(id, true),
        http::percent_decode(secret, true),
    ))
}

fn check_tenant(tenant: &str) -> Result<(), AadError> {
    let lower = tenant.to_ascii_lowercase();
    if lower == TENANT_ID || lower == TENANT_DOMAIN {
        return Ok(());
    }
    if matches!(lower.as_str(), "common" | "consumers" | "organizations") {
        let text = "The grant type is not supported over the /common or /consumers endpoints. \
                    Please use the /organizations or tenant-specific endpoint.";
        return Err(fail(400, "invalid_request", 9001023, text));
    }
    if uuid::Uuid::parse_str(tenant).is_err() && !tenant.contains('.') {
        let text = format!(
            "Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a valid external domain."
        );
        return Err(fail(400, "invalid_request", 900023, text));
    }
    Err(tenant_not_found(tenant))
}

fn check_scope(scope: Option<&str>, tenant: &str, graph_host: &str) -> Result<(), AadError> {
    let Some(scope) = scope else {
        return Err(missing("scope"));
    };
    let items: Vec<&str> = scope.split_whitespace().collect();
    if let Some(bad) = items.iter().find(|s| !s.ends_with("/.default")) {
        let text = format!(
            "The provided value for scope {bad} is not valid. Client credential flows must have a scope value \
             with /.default suffixed to the resource identifier (application ID URI)."
        );
        return Err(fail(400, "invalid_scope", 1002012, text));
    }
    match items.as_slice() {
        [] => Err(missing("scope")),
        [one] => {
            let resource = one.trim_end_matches("/.default").trim_end_matches('/');
            // Like Entra, only a real Graph resource: the simulator's own URL is where Graph
            // is reached, not a resource a token can be issued for.
            let _ = graph_host;
            if GRAPH_RESOURCES
                .iter()
                .any(|r| r.eq_ignore_ascii_case(resource))
            {
                return Ok(());
            }
            let text = format!(
                "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen \
                 if the application has not been installed by the administrator of the tenant or consented to by \
                 any user in the tenant. You might have sent your authentication request to the wrong tenant."
            );
            Err(fail(400, "invalid_resource", 500011, text))
        }
        _ => {
            let text = format!(
                "The scope {scope} is not valid: scopes for more than one resource were requested."
            );
            Err(fail(400, "invalid_scope", 700022, text))
        }
    }
}

fn wrong_secret() -> AadError {
    let text = format!(
        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, \
         not the client secret ID, for a secret added to app '{CLIENT_ID}'."
    );
    fail(401, "invalid_client", 7000215, text)
}

fn app_not_found(client_id: &str, tenant: &str) -> AadError {
    let text = format!(
        "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if \
         the application has not been installed by the administrator of the tenant or consented to by any user in \
         the tenant. You may have sent your authentication request to the wrong tenant."
    );
    fail(400, "unauthorized_client", 700016, text)
}

fn tenant_not_found(tenant: &str) -> AadError {
    let text = format!(
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the \
         correct cloud. Check with your subscription administrator, this may happen if there are no active \
         subscriptions for the tenant."
    );
    fail(400, "invalid_tenant", 90002, text)
}

/// The failure `Settings::token_error` forces (statuses per protocol notes 1.2).
fn forced_error(forced: TokenError, tenant: &str) -> AadError {
    match forced {
        TokenError::WrongSecret => wrong_secret(),
        TokenError::ExpiredSecret => fail(
            401,
            "invalid_client",
            7000222,
            format!(
                "The provided client secret keys for app '{CLIENT_ID}' are expired. Visit the Azure portal to \
                 create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate \
                 credentials for added security: https://aka.ms/certCreds."
            ),
        ),
        TokenError::AppNotFound => app_not_found(CLIENT_ID, tenant),
        TokenError::NoServicePrincipal => fail(
            401,
            "invalid_client",
            7000229,
            format!(
                "The client application {CLIENT_ID} is missing service principal in the tenant {TENANT_ID}. \
                 See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119"
            ),
        ),
        TokenError::AppDisabled => fail(
            400,
            "unauthorized_client",
            7000112,
            format!("Application '{CLIENT_ID}'(entra-sync) is disabled."),
        ),
        TokenError::TenantNotFound => tenant_not_found(tenant),
        TokenError::WrongCloud => fail(
            400,
            "invalid_request",
            90038,
            format!(
                "Tenant '{tenant}' is not in the cloud this login host serves. Use the login host of its national cloud."
            ),
        ),
        TokenError::Unavailable => fail(
            503,
            "temporarily_unavailable",
            50033,
            "A transient error has occurred. Please try again.",
        ),
    }
}
