//! Credentials other than the client secret: client assertions checked against registered
//! certificates (graph-protocol.md 1.3), federated tokens, and the managed-identity endpoints
//! of an Azure VM (IMDS, 1.4) and an Arc-enabled server (1.4a). Also the throw-away
//! certificates tests register (made at run time; no key material is committed).

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::{Value, json};
use x509_cert::der::Decode as _;

use super::auth::{AadError, Roles, TokenStore, fail};
use super::http::{self, Ctx, Incoming, Reply};
use super::{CLIENT_ID, Settings};

/// The managed identity the simulated machine has (`Settings::managed_identity`).
#[derive(Clone, Debug)]
pub struct ManagedIdentitySim {
    /// A system-assigned identity exists.
    pub system_assigned: bool,
    /// Client ids of the user-assigned identities attached.
    pub user_assigned: Vec<String>,
    /// The identity's object id (the token's `oid`).
    pub object_id: String,
    /// `Some(dir)`: behave as the Azure Arc agent, answering 401 with a key file in `dir`.
    pub arc_tokens_dir: Option<PathBuf>,
}

impl Default for ManagedIdentitySim {
    fn default() -> ManagedIdentitySim {
        ManagedIdentitySim {
            system_assigned: true,
            user_assigned: Vec::new(),
            object_id: "9a9a9a9a-0000-4000-8000-00000000000a".to_owned(),
            arc_tokens_dir: None,
        }
    }
}

/// State the credential checks keep between requests.
#[derive(Default)]
pub(super) struct IdentityState {
    /// `jti`s of accepted client assertions: each may be used once.
    used_jti: HashSet<String>,
    /// Contents of the Arc key files handed out.
    arc_keys: Vec<String>,
}

fn segment(part: &str) -> Option<Value> {
    serde_json::from_slice(&http::base64_decode(part)?).ok()
}

/// Checks `client_assertion` (1.3): a certificate-signed JWT whose thumbprint names a
/// registered certificate, signature, `aud`, `iss`/`sub`, `exp`/`nbf` and a `jti` not seen
/// before; or a federated token from `Settings::federated_tokens`.
pub(super) fn check_assertion(
    state: &mut IdentityState,
    assertion: &str,
    audience: &str,
    settings: &Settings,
) -> Result<(), AadError> {
    let malformed = || {
        fail(
            400,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.",
        )
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [head, body, signature] = parts.as_slice() else {
        return Err(malformed());
    };
    let header = segment(head).ok_or_else(malformed)?;
    let claims = segment(body).ok_or_else(malformed)?;
    let x5t256 = header.get("x5t#S256").and_then(Value::as_str);
    let x5t = header.get("x5t").and_then(Value::as_str);
    if x5t256.is_none() && x5t.is_none() {
        // Not signed with a certificate: a federated token, or nothing Entra knows.
        if settings.federated_tokens.iter().any(|t| t == assertion) {
            return Ok(());
        }
        let claim = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
        return Err(fail(
            400,
            "invalid_client",
            700211,
            format!(
                "No matching federated identity record found for presented assertion issuer '{}'. Assertion \
                 Subject: '{}'. Assertion Audience: '{}'.",
                claim("iss"),
                claim("sub"),
                claim("aud")
            ),
        ));
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if !settings.assertion_algs.contains(&alg) {
        return Err(fail(
            400,
            "invalid_request",
            5002738,
            format!(
                "Invalid JWT token. '{alg}' is not a supported signature algorithm. Supported signing \
                 algorithms are: '{}'",
                settings.assertion_algs.join(",")
            ),
        ));
    }
    let registered = settings.certificates.iter().find(|der| {
        let sha256 = ring::digest::digest(&ring::digest::SHA256, der);
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        x5t256 == Some(http::base64url(sha256.as_ref()).as_str())
            || x5t == Some(http::base64url(sha1.as_ref()).as_str())
    });
    let Some(der) = registered else {
        return Err(fail(
            401,
            "invalid_client",
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on \
                 application. [Reason - The key was not found., Thumbprint of key used by client: '{}']",
                x5t256.or(x5t).unwrap_or("")
            ),
        ));
    };
    let public_key = x509_cert::Certificate::from_der(der)
        .map(|c| {
            c.tbs_certificate()
                .subject_public_key_info()
                .subject_public_key
                .raw_bytes()
                .to_vec()
        })
        .unwrap_or_default();
    let algorithm: &dyn ring::signature::VerificationAlgorithm = match alg {
        "PS256" => &ring::signature::RSA_PSS_2048_8192_SHA256,
        "RS256" => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        _ => return Err(malformed()),
    };
    let signed = format!("{head}.{body}");
    let signature = http::base64_decode(signature).ok_or_else(malformed)?;
    if ring::signature::UnparsedPublicKey::new(algorithm, public_key)
        .verify(signed.as_bytes(), &signature)
        .is_err()
    {
        return Err(fail(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation.",
        ));
    }
    let claim = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
    if claim("aud") != audience {
        return Err(fail(
            401,
            "invalid_client",
            700212,
            format!(
                "The audience '{}' in the client assertion is not the token endpoint '{audience}'.",
                claim("aud")
            ),
        ));
    }
    if !claim("iss").eq_ignore_ascii_case(CLIENT_ID)
        || !claim("sub").eq_ignore_ascii_case(CLIENT_ID)
    {
        return Err(fail(
            401,
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        ));
    }
    let now = http::unix_now();
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    let (Some(nbf), Some(exp)) = (number("nbf"), number("exp")) else {
        return Err(malformed());
    };
    // Entra allows a few minutes of clock skew.
    if exp <= now - 300 || nbf > now + 300 {
        return Err(fail(
            401,
            "invalid_client",
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {now}, assertion valid \
                 from {nbf}, expiry time of assertion {exp}."
            ),
        ));
    }
    let jti = claim("jti");
    if jti.is_empty() || !state.used_jti.insert(jti.to_owned()) {
        return Err(fail(
            401,
            "invalid_client",
            7000273,
            "The client assertion's jti was already used; each assertion may be used once.",
        ));
    }
    Ok(())
}

/// Graph resources a managed-identity `resource` may name (no `/.default`).
fn is_graph_resource(resource: &str) -> bool {
    [
        "https://graph.microsoft.com",
        "https://graph.microsoft.us",
        "https://dod-graph.microsoft.us",
        "https://microsoftgraph.chinacloudapi.cn",
    ]
    .iter()
    .any(|r| r.eq_ignore_ascii_case(resource.trim_end_matches('/')))
}

fn imds_error(status: u16, error: &str, description: &str) -> Reply {
    let body = json!({"error": error, "error_description": description});
    Reply::new(
        status,
        "application/json; charset=utf-8",
        body.to_string().into_bytes(),
    )
}

/// `GET /metadata/identity/oauth2/token` as IMDS (1.4) or the Arc agent (1.4a) answers it.
pub(super) fn serve_managed_identity(
    tokens: &mut TokenStore,
    incoming: &Incoming,
    _ctx: &Ctx,
    settings: &Settings,
) -> Reply {
    if incoming.method != "GET" {
        return imds_error(405, "invalid_request", "Only GET is supported.");
    }
    if incoming.header("metadata") != Some("true") {
        return imds_error(
            400,
            "bad_request_102",
            "Required metadata header not specified",
        );
    }
    let query = http::parse_pairs(&incoming.query);
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if param("api-version").is_none() {
        return imds_error(
            400,
            "invalid_request",
            "Required api-version parameter not specified",
        );
    }
    let Some(resource) = param("resource") else {
        return imds_error(
            400,
            "invalid_request",
            "Required audience parameter not specified",
        );
    };
    if !is_graph_resource(resource) {
        return imds_error(
            400,
            "invalid_resource",
            &format!(
                "AADSTS500011: The resource principal named {resource} was not found in the tenant."
            ),
        );
    }
    let Some(identity) = &settings.managed_identity else {
        return imds_error(400, "invalid_request", "Identity not found");
    };
    if let Some(dir) = &identity.arc_tokens_dir {
        let given = incoming.header("authorization").and_then(|h| {
            let (scheme, value) = h.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("basic")
                .then(|| value.trim().to_owned())
        });
        match given {
            Some(key) if tokens.identity.arc_keys.contains(&key) => {}
            _ => {
                let key = http::random_token(2);
                let path = dir.join(format!("{}.key", http::new_guid()));
                if std::fs::write(&path, &key).is_err() {
                    return imds_error(500, "server_error", "cannot write the key file");
                }
                tokens.identity.arc_keys.push(key);
                return Reply::new(401, "application/json", b"{}".to_vec()).with(
                    "WWW-Authenticate",
                    format!("Basic realm={}", path.display()),
                );
            }
        }
    }
    let client_id = match param("client_id") {
        Some(id)
            if identity
                .user_assigned
                .iter()
                .any(|u| u.eq_ignore_ascii_case(id)) =>
        {
            id.to_owned()
        }
        None if identity.system_assigned => "5b5b5b5b-0000-4000-8000-00000000000b".to_owned(),
        _ => return imds_error(400, "invalid_request", "Identity not found"),
    };
    let roles = Roles {
        users: settings.consent_users,
        groups: settings.consent_groups,
    };
    let lifetime = settings.token_lifetime_secs;
    let token = tokens.issue_with(
        roles,
        lifetime,
        json!({"oid": identity.object_id, "appid": client_id, "idtyp": "app"}),
    );
    let now = http::unix_now();
    let body = json!({
        "access_token": token,
        "refresh_token": "",
        "expires_in": lifetime.to_string(),
        "expires_on": (now + lifetime as i64).to_string(),
        "not_before": now.to_string(),
        "resource": resource,
        "token_type": "Bearer",
    });
    Reply::new(
        200,
        "application/json; charset=utf-8",
        body.to_string().into_bytes(),
    )
}

/// `GET /v1.0/applications(appId='…')?$select=…` (notes 1.5): the app's own credentials.
pub(super) fn serve_application(
    tokens: &TokenStore,
    incoming: &Incoming,
    ctx: &Ctx,
    settings: &Settings,
) -> Reply {
    if let super::auth::Bearer::Rejected(message) = tokens.check(incoming.header("authorization")) {
        return Reply::graph_error(ctx, 401, "InvalidAuthenticationToken", message);
    }
    match &settings.application {
        Some(body) => Reply::graph(ctx, 200, body.to_string().into_bytes()),
        None => Reply::graph_error(
            ctx,
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ),
    }
}

/// A throw-away RSA certificate with its key, made at run time.
#[derive(Clone)]
pub struct TestCertificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The key as PKCS#8 (`PRIVATE KEY`) and PKCS#1 (`RSA PRIVATE KEY`) PEM.
    pub key_pkcs8: String,
    pub key_pkcs1: String,
    /// The certificate, DER (what `Settings::certificates` registers).
    pub der: Vec<u8>,
    /// SHA-1 thumbprint as the Entra admin center shows it.
    pub thumbprint: String,
}

impl TestCertificate {
    /// A certificate valid from `not_before` to `not_after`; a fresh key every call.
    pub fn new(
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> TestCertificate {
        use rsa::Generate as _;
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        use rsa::pkcs8::EncodePrivateKey as _;
        let key = rsa::PrivateKey::generate();
        let line = rsa::pkcs8::LineEnding::LF;
        let key_pkcs8 = key.to_pkcs8_pem(line).expect("pkcs8").to_string();
        let key_pkcs1 = key.to_pkcs1_pem(line).expect("pkcs1").to_string();
        let pair =
            rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key_pkcs8, &rcgen::PKCS_RSA_SHA256)
                .expect("rcgen key");
        let mut params =
            rcgen::CertificateParams::new(vec!["entra-sync-test".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "entra-sync-test");
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.self_signed(&pair).expect("self-signed");
        let der = cert.der().to_vec();
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        TestCertificate {
            cert_pem: cert.pem(),
            key_pkcs8,
            key_pkcs1,
            thumbprint: sha1.as_ref().iter().map(|b| format!("{b:02X}")).collect(),
            der,
        }
    }

    /// Valid from yesterday for a year.
    pub fn valid() -> TestCertificate {
        let now = time::OffsetDateTime::now_utc();
        TestCertificate::new(
            now - time::Duration::days(1),
            now + time::Duration::days(365),
        )
    }
}
