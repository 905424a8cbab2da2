//! Issue 9: signing in without a client secret. Each credential signs in against the
//! simulator and syncs; each failure gets its operator message, with no key, assertion or
//! token in any output.

use std::path::Path;
use std::sync::OnceLock;

use entra_sync::auth::Auth;
use entra_sync::config::{Config, Credential, Env};
use entra_sync::shutdown::Shutdown;

use crate::sim::{self, ManagedIdentitySim, MemberKind, Resource, TestCertificate};
use crate::support::*;

/// The fields of a form body (`a=b&c=d`, percent-encoded).
fn form(body: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && let Some(hex) = bytes.get(i + 1..i + 3)
                && let Ok(b) = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16)
            {
                out.push(b);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// One valid certificate for the tests that need no special dates (a key takes a moment).
fn valid_certificate() -> &'static TestCertificate {
    static CERT: OnceLock<TestCertificate> = OnceLock::new();
    CERT.get_or_init(TestCertificate::valid)
}

fn seed(env: &TestEnv) {
    let mut t = env.sim.tenant();
    t.add_user(&u(1), user_props("Ada"));
    t.add_group(&g(1), security_group("Engineering"));
    t.add_member(&g(1), &u(1), MemberKind::User);
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

/// A TestEnv whose config signs in with `cert` (certificate and PKCS#8 key in one PEM).
fn with_certificate(cert: &TestCertificate, register: bool) -> TestEnv {
    let env = TestEnv::new();
    seed(&env);
    let pem = env.dir.path().join("client.pem");
    write_private(&pem, &format!("{}{}", cert.cert_pem, cert.key_pkcs8));
    if register {
        env.sim.settings().certificates.push(cert.der.clone());
    }
    env.write_config_credential(&format!(
        "client_id = \"{}\"\nclient_certificate_file = \"{}\"",
        sim::CLIENT_ID,
        pem.display()
    ));
    env
}

/// No line of the key, and no assertion or token the simulator saw, in `text`.
#[track_caller]
fn assert_no_secrets(env: &TestEnv, cert: Option<&TestCertificate>, text: &str) {
    if let Some(cert) = cert {
        for line in cert.key_pkcs8.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(line), "key material in output:\n{text}");
        }
    }
    for request in env.sim.requests() {
        for (name, value) in form(&request.body) {
            if name == "client_assertion" || name == "client_secret" {
                assert!(!text.contains(&value), "{name} in output:\n{text}");
            }
        }
    }
    assert!(!text.contains("eyJ"), "a JWT in output:\n{text}");
}

/// The client assertions of the token requests answered with `status` (any when `None`).
fn assertions(env: &TestEnv, status: Option<u16>) -> Vec<String> {
    token_requests(env)
        .iter()
        .filter(|r| status.is_none_or(|s| r.status == s))
        .filter_map(|r| {
            form(&r.body)
                .into_iter()
                .find(|(k, _)| k == "client_assertion")
                .map(|(_, v)| v)
        })
        .collect()
}

fn token_requests(env: &TestEnv) -> Vec<sim::Recorded> {
    env.sim
        .requests()
        .into_iter()
        .filter(|r| r.resource == Resource::Token)
        .collect()
}

#[test]
fn a_certificate_signs_in_and_syncs() {
    let cert = valid_certificate();
    let env = with_certificate(cert, true);
    let out = env.sync();
    assert_eq!(env.team(), vec![u(1)]);
    let log = stderr(&out);
    assert!(
        log.contains("Entra accepted the client assertion signed PS256 with x5t#S256"),
        "{log}"
    );
    let requests = token_requests(&env);
    assert!(!requests.is_empty());
    for request in &requests {
        let form = form(&request.body);
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(
            field("client_assertion_type").as_deref(),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        assert!(field("client_secret").is_none());
        assert!(field("client_assertion").is_some());
    }
    assert_no_secrets(&env, Some(cert), &format!("{log}{}", stdout(&out)));
    // The key never reaches the database either.
    let db = std::fs::read(&env.db).unwrap();
    let key_line = cert.key_pkcs8.lines().nth(2).unwrap();
    assert!(!db.windows(key_line.len()).any(|w| w == key_line.as_bytes()));

    // check: kind, thumbprint, notAfter and days left; status: kind and days left.
    let out = env.run(&["check"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("ok    credential: certificate: certificate CN=entra-sync-test from client_certificate_file"),
        "{text}"
    );
    assert!(
        text.contains(&format!("SHA-1 thumbprint {}", cert.thumbprint)),
        "{text}"
    );
    assert!(text.contains("days left)"), "{text}");
    assert!(
        text.contains("client assertion accepted as PS256 with x5t#S256"),
        "{text}"
    );
    let out = env.run(&["status", "--json"]);
    assert_success(&out);
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["credential"], "certificate");
    let days = status["secret_days_left"].as_i64().unwrap();
    assert!((363..=365).contains(&days), "{days}");
}

#[test]
fn an_assertion_form_entra_refuses_is_retried_once_in_the_other_form() {
    let cert = valid_certificate();
    let env = with_certificate(cert, true);
    env.sim.settings().assertion_algs = vec!["RS256"];
    let out = env.sync();
    let log = stderr(&out);
    assert!(
        log.contains("Entra refused the client assertion signed PS256 with x5t#S256"),
        "{log}"
    );
    assert!(
        log.contains("Entra accepted the client assertion signed RS256 with x5t"),
        "{log}"
    );
    let statuses: Vec<u16> = token_requests(&env).iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![400, 200],
        "one refusal, one retry, then the cached token"
    );
    assert_no_secrets(&env, Some(cert), &log);
}

#[test]
fn an_unregistered_certificate_names_its_thumbprint() {
    let cert = valid_certificate();
    let env = with_certificate(cert, false);
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "the certificate whose SHA-1 thumbprint is {} (as the Entra admin center shows it)",
            cert.thumbprint
        )),
        "{text}"
    );
    assert!(
        text.contains("upload this certificate under App registrations"),
        "{text}"
    );
    assert!(text.contains("AADSTS700027"), "{text}");
    assert_no_secrets(&env, Some(cert), &format!("{text}{}", stderr(&out)));
}

#[test]
fn certificate_expiry_is_warned_about_and_reported() {
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let cases = [
        (
            now - day,
            now + 10 * day,
            "warn  credential: certificate: the certificate (SHA-1 thumbprint",
        ),
        (
            now - 30 * day,
            now - 2 * day,
            "FAIL  credential: certificate: the certificate (SHA-1 thumbprint",
        ),
        (
            now + 2 * day,
            now + 30 * day,
            "FAIL  credential: certificate: the certificate (SHA-1 thumbprint",
        ),
    ];
    for (i, (from, to, says)) in cases.into_iter().enumerate() {
        let cert = TestCertificate::new(from, to);
        let env = with_certificate(&cert, true);
        let out = env.run(&["check"]);
        let text = stdout(&out);
        assert!(text.contains(says), "case {i}: {text}");
        let detail = match i {
            0 => "expires on",
            1 => "expired on",
            _ => "is not valid before",
        };
        assert!(text.contains(detail), "case {i}: {text}");
        if i > 0 {
            assert_eq!(out.status.code(), Some(1), "case {i}");
        }
    }
}

fn with_managed_identity(identity: Option<ManagedIdentitySim>, extra: &str) -> TestEnv {
    let env = TestEnv::new();
    seed(&env);
    env.sim.settings().managed_identity = identity;
    env.write_config_credential(&format!(
        "{extra}\nmanaged_identity_endpoint = \"{}/metadata/identity/oauth2/token\"",
        env.sim.url()
    ));
    env
}

#[test]
fn a_vm_managed_identity_signs_in_and_syncs() {
    let env = with_managed_identity(
        Some(ManagedIdentitySim::default()),
        "managed_identity = true",
    );
    env.sync();
    assert_eq!(env.team(), vec![u(1)]);
    assert!(
        token_requests(&env).is_empty(),
        "no request to the token endpoint"
    );
    let identity: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.resource == Resource::ManagedIdentity)
        .collect();
    assert!(!identity.is_empty());
    let request = &identity[0];
    assert_eq!(request.method, "GET");
    assert_eq!(request.header("Metadata"), Some("true"));
    let query = &request.path_and_query;
    assert!(query.contains("api-version=2018-02-01"), "{query}");
    assert!(
        query.contains("resource=https%3A%2F%2Fgraph.microsoft.com%2F"),
        "resource, not scope: {query}"
    );
    assert!(!query.contains("scope"), "{query}");
    assert!(!query.contains("client_id"), "{query}");

    let out = env.run(&["check"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("ok    credential: managed identity: system-assigned managed identity via the Azure VM instance metadata service"),
        "{text}"
    );
    assert!(
        text.contains(
            "token for the managed identity (object id 9a9a9a9a-0000-4000-8000-00000000000a)"
        ),
        "{text}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&stdout(&env.run(&["status", "--json"]))).unwrap();
    assert_eq!(status["credential"], "managed identity");
}

#[test]
fn a_user_assigned_identity_is_asked_for_by_client_id() {
    let id = "7c7c7c7c-0000-4000-8000-00000000000c";
    let identity = ManagedIdentitySim {
        system_assigned: false,
        user_assigned: vec![id.to_owned()],
        ..ManagedIdentitySim::default()
    };
    let env = with_managed_identity(
        Some(identity),
        &format!("managed_identity_client_id = \"{id}\""),
    );
    env.sync();
    let asked = env
        .sim
        .requests()
        .into_iter()
        .find(|r| r.resource == Resource::ManagedIdentity)
        .unwrap();
    assert!(
        asked.path_and_query.contains(&format!("client_id={id}")),
        "{}",
        asked.path_and_query
    );
}

#[test]
fn imds_failures_are_retried_or_explained() {
    // A transient 503 is retried on the documented schedule (2 s first).
    let env = with_managed_identity(
        Some(ManagedIdentitySim::default()),
        "managed_identity = true",
    );
    env.sim.push_fault(
        Resource::ManagedIdentity,
        sim::Fault::Status {
            status: 503,
            retry_after: None,
            code: "",
        },
    );
    let out = env.sync();
    assert!(stderr(&out).contains("retrying in 2s"), "{}", stderr(&out));

    // No identity on this VM: say how to enable one.
    let env = with_managed_identity(None, "managed_identity = true");
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(
            "this VM has no system-assigned managed identity: enable it in the Azure portal"
        ),
        "{text}"
    );
    assert!(text.contains("az vm identity assign"), "{text}");
}

#[test]
fn managed_identity_without_app_roles_is_told_how_to_assign_them() {
    let env = with_managed_identity(
        Some(ManagedIdentitySim::default()),
        "managed_identity = true",
    );
    env.sim.settings().consent_users = false;
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("app role"), "{text}");
    assert!(
        text.contains("New-MgServicePrincipalAppRoleAssignment"),
        "{text}"
    );
    assert!(text.contains("hours"), "{text}");
    assert!(!text.contains("Grant admin consent"), "{text}");
}

/// The Arc agent's challenge (1.4a), in-process: the tokens directory is a temp dir here.
#[test]
fn an_arc_server_answers_the_challenge_with_the_key_file() {
    let env = TestEnv::new();
    let tokens = tempfile::tempdir().unwrap();
    env.sim.settings().managed_identity = Some(ManagedIdentitySim {
        arc_tokens_dir: Some(tokens.path().to_path_buf()),
        ..ManagedIdentitySim::default()
    });
    let identity_endpoint = format!("{}/metadata/identity/oauth2/token", env.sim.url());
    let process_env = Env {
        identity_endpoint: Some(identity_endpoint.clone()),
        imds_endpoint: Some(env.sim.url()),
        ..Env::default()
    };
    let text = format!(
        "[entra]\ntenant_id = \"{}\"\nmanaged_identity = true\nauthority_host = \"{url}\"\ngraph_endpoint = \"{url}\"\n",
        sim::TENANT_ID,
        url = env.sim.url()
    );
    let mut config = Config::parse(&text, &env.dir.path().join("arc.toml"), &process_env).unwrap();
    let Credential::ManagedIdentity(identity) = &mut config.entra.credential else {
        panic!("{:?}", config.entra.credential);
    };
    assert_eq!(identity.kind, entra_sync::config::ManagedIdentityKind::Arc);
    assert_eq!(identity.endpoint, identity_endpoint);
    identity.arc_tokens_dir = tokens.path().to_path_buf();
    let auth = Auth::new(
        entra_sync::http::agent(false),
        &config.entra,
        Shutdown::new(),
    );
    let token = auth.token().unwrap();
    assert!(token.roles().is_some());
    let asked: Vec<_> = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.resource == Resource::ManagedIdentity)
        .collect();
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[0].status, 401);
    assert!(asked[0].header("Authorization").is_none());
    assert!(asked[0].path_and_query.contains("api-version=2019-11-01"));
    assert_eq!(asked[1].status, 200);
    assert!(
        asked[1]
            .header("Authorization")
            .unwrap()
            .starts_with("Basic ")
    );

    // A challenge naming a file outside the tokens directory is refused, unread.
    let elsewhere = tempfile::tempdir().unwrap();
    env.sim.settings().managed_identity = Some(ManagedIdentitySim {
        arc_tokens_dir: Some(elsewhere.path().to_path_buf()),
        ..ManagedIdentitySim::default()
    });
    auth.invalidate(&token);
    let error = auth.token().unwrap_err().to_string();
    assert!(
        error.contains("is not in the agent's tokens directory"),
        "{error}"
    );
    assert!(
        error.contains("a program other than the Azure Arc agent"),
        "{error}"
    );
}

fn federated_jwt(subject: &str) -> String {
    let b64 = |v: serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(serde_json::json!({"alg": "RS256", "kid": "k1", "typ": "JWT"})),
        b64(
            serde_json::json!({"iss": "https://oidc.example/", "sub": subject, "aud": "api://AzureADTokenExchange"})
        )
    )
}

#[test]
fn a_federated_token_signs_in_and_is_read_again_for_every_token() {
    let env = TestEnv::new();
    seed(&env);
    let file = env.dir.path().join("federated-token");
    let first = federated_jwt("system:serviceaccount:sync:entra-sync");
    let second = federated_jwt("system:serviceaccount:sync:entra-sync-2");
    write_private(&file, &first);
    env.sim.settings().federated_tokens = vec![first.clone(), second.clone()];
    env.write_config_credential(&format!(
        "client_id = \"{}\"\nfederated_token_file = \"{}\"",
        sim::CLIENT_ID,
        file.display()
    ));
    let out = env.sync();
    assert_eq!(env.team(), vec![u(1)]);
    assert_no_secrets(&env, None, &stderr(&out));

    // In-process: the file rotates between two token requests.
    let config = Config::load(&env.config).unwrap();
    let auth = Auth::new(
        entra_sync::http::agent(false),
        &config.entra,
        Shutdown::new(),
    );
    env.sim.clear_requests();
    let token = auth.token().unwrap();
    write_private(&file, &second);
    auth.invalidate(&token);
    auth.token().unwrap();
    let sent = assertions(&env, None);
    assert_eq!(sent, vec![first, second]);

    // A token no federated credential matches: say what to add.
    write_private(&file, &federated_jwt("someone-else"));
    env.sim.settings().federated_tokens.clear();
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("no federated credential on application"),
        "{text}"
    );
    assert!(text.contains("api://AzureADTokenExchange"), "{text}");
}

#[test]
fn an_assertion_is_used_once_and_signed_anew_for_every_request() {
    let cert = valid_certificate();
    let env = with_certificate(cert, true);
    let config = Config::load(&env.config).unwrap();
    let auth = Auth::new(
        entra_sync::http::agent(false),
        &config.entra,
        Shutdown::new(),
    );
    let token = auth.token().unwrap();
    auth.invalidate(&token);
    auth.token().unwrap();
    let assertions = assertions(&env, Some(200));
    assert_eq!(assertions.len(), 2);
    assert_ne!(assertions[0], assertions[1], "a fresh assertion each time");

    // Replaying an assertion is refused by the token endpoint (single-use jti).
    let replay = entra_sync::http::agent(false)
        .post(&env.sim.token_url())
        .send_form([
            ("client_id", sim::CLIENT_ID),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertions[0].as_str()),
        ])
        .unwrap();
    assert_eq!(replay.status().as_u16(), 401);
}

/// graph-protocol.md 1.5: with Application.Read.All, `check` shows the expiry Entra holds for
/// the credential in use and warns about others expiring soon; without it, says it is optional.
#[test]
fn check_reads_the_apps_own_credentials_when_permitted() {
    use base64::Engine as _;
    let cert = valid_certificate();
    let env = with_certificate(cert, true);
    let out = env.run(&["check"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("ok    entra: the app's own credentials were not read (optional: with the Application.Read.All"),
        "{text}"
    );

    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert.der);
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::days(10)).date();
    env.sim.settings().application = Some(serde_json::json!({
        "id": "aaaaaaaa-0000-4000-8000-000000000001",
        "appId": sim::CLIENT_ID,
        "passwordCredentials": [{
            "customKeyIdentifier": null, "displayName": "old-secret", "hint": "Xy9",
            "endDateTime": format!("{soon}T00:00:00Z"), "keyId": "bbbbbbbb-0000-4000-8000-000000000002"
        }],
        "keyCredentials": [{
            "customKeyIdentifier": base64::engine::general_purpose::STANDARD.encode(sha1.as_ref()),
            "displayName": "CN=entra-sync-test", "endDateTime": "2099-01-01T00:00:00Z",
            "keyId": "cccccccc-0000-4000-8000-000000000003", "type": "AsymmetricX509Cert", "usage": "Verify"
        }]
    }));
    let out = env.run(&["check"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("ok    entra: Entra holds the certificate in use: certificate \"CN=entra-sync-test\" ends 2099-01-01"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "warn  entra: another credential of the app: secret \"old-secret\" ends {soon} (10 days left)"
        )),
        "{text}"
    );
}
