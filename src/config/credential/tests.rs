use super::*;
use crate::config::test_support::*;
use crate::config::{Config, ConfigError, PrivateKey};
use rustls_pki_types::pem::PemObject as _;

fn parse_in(dir: &Path, rest: &str, env: &Env) -> Result<Config, ConfigError> {
    let config = dir.join("config.toml");
    let text = with_head(rest);
    Config::parse(&text, &config, env)
}

fn cert(config: &Config) -> &Certificate {
    config.entra.credential.certificate().unwrap()
}

#[test]
fn certificates_in_each_form() {
    let dir = tempfile::tempdir().unwrap();
    let pem = test_pem();
    let both = dir.path().join("client.pem");
    write_mode(&both, &format!("{}{}", pem.cert, pem.pkcs8), 0o600);
    let config = parse_in(
        dir.path(),
        "client_certificate_file = \"client.pem\"\n",
        &Env::default(),
    )
    .unwrap();
    let c = cert(&config);
    assert_eq!(c.path, both);
    assert_eq!(c.key_path, None);
    assert!(matches!(c.key, PrivateKey::Pkcs8(_)));
    assert_eq!(c.subject, "CN=entra-sync-test");
    assert_eq!(c.thumbprint().len(), 40);
    assert!(
        c.thumbprint()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
    );
    // The thumbprint is the SHA-1 of the DER, as the portal shows it.
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap();
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
    assert_eq!(c.sha1.as_slice(), sha1.as_ref());
    assert_eq!(c.der.as_slice(), der.as_ref());
    let now = time::OffsetDateTime::now_utc();
    assert!(c.not_before < now && c.not_after > now + time::Duration::days(360));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.entra.credential.kind(), "certificate");
    assert_eq!(config.entra.credential.files(), vec![both.clone()]);
    assert_eq!(
        config.credential_expires(),
        Some(c.not_after.date()),
        "the certificate's notAfter replaces client_secret_expires"
    );

    // PKCS#1 key, key first.
    write_mode(&both, &format!("{}{}", pem.pkcs1, pem.cert), 0o600);
    let config = parse_in(
        dir.path(),
        "client_certificate_file = \"client.pem\"\n",
        &Env::default(),
    )
    .unwrap();
    assert!(matches!(cert(&config).key, PrivateKey::Pkcs1(_)));

    // A separate key file, readable by the group: a chmod warning.
    let only_cert = dir.path().join("cert.pem");
    let key = dir.path().join("client.key");
    write_mode(&only_cert, &pem.cert, 0o644);
    write_mode(&key, &pem.pkcs8, 0o640);
    let config = parse_in(
        dir.path(),
        "client_certificate_file = \"cert.pem\"\nclient_certificate_key_file = \"client.key\"\n",
        &Env::default(),
    )
    .unwrap();
    assert_eq!(cert(&config).key_path.as_deref(), Some(key.as_path()));
    assert_eq!(
        config.warnings,
        vec![format!(
            "the private key file {k} is readable by other users (mode 0640); run: chmod 600 {k}",
            k = key.display()
        )]
    );
    assert_eq!(
        config.entra.credential.files(),
        vec![only_cert.clone(), key.clone()]
    );

    // The systemd credential.
    let creds = tempfile::tempdir().unwrap();
    let credential = creds.path().join(CERTIFICATE_CREDENTIAL_NAME);
    write_mode(&credential, &format!("{}{}", pem.cert, pem.pkcs8), 0o400);
    let env = Env {
        credentials_directory: Some(creds.path().to_path_buf()),
        ..Env::default()
    };
    let config = parse_in(dir.path(), "", &env).unwrap();
    assert!(cert(&config).from_systemd_credential);
    assert_eq!(cert(&config).path, credential);
    assert!(config.entra.credential.files().is_empty());
}

#[test]
fn certificate_problems_are_explained_without_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let pem = test_pem();
    let path = dir.path().join("client.pem");
    let shown = format!("client_certificate_file {}", path.display());
    let key_line = pem.pkcs8.lines().nth(1).unwrap().to_owned();
    let err = |contents: &str| {
        write_mode(&path, contents, 0o600);
        let e = parse_in(
            dir.path(),
            "client_certificate_file = \"client.pem\"\n",
            &Env::default(),
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(!text.contains(&key_line), "{text}");
        assert_eq!(
            e.key.as_deref(),
            Some("entra.client_certificate_file"),
            "{text}"
        );
        e.message
    };
    assert!(err(&pem.cert).starts_with(&format!("{shown} holds no private key")));
    assert!(err(&pem.pkcs8).starts_with(&format!("{shown} holds no certificate")));
    let (other_key, _) = test_key();
    let m = err(&format!("{}{other_key}", pem.cert));
    assert!(
        m.starts_with(&format!(
            "the private key in {shown} does not belong to the certificate"
        )),
        "{m}"
    );
    assert!(err("hello\n").starts_with(&format!("{shown} is not PEM")));
    let m = err(&format!(
        "{}-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
        pem.cert
    ));
    assert!(m.contains("holds an encrypted private key"), "{m}");
    let broken = pem.pkcs8.replace("-----END PRIVATE KEY-----", "");
    let m = err(&format!("{}{broken}", pem.cert));
    assert!(m.contains("is not a valid PEM file"), "{m}");
    let m = err(&format!("{}{}{}", pem.cert, pem.pkcs8, pem.pkcs1));
    assert!(m.contains("holds 2 private keys"), "{m}");
    std::fs::remove_file(&path).unwrap();
    let e = parse_in(
        dir.path(),
        "client_certificate_file = \"client.pem\"\n",
        &Env::default(),
    )
    .unwrap_err();
    assert!(e.message.contains("does not exist"), "{e}");
    // Writable by others: refused (issue 7 item 2).
    let e = {
        write_mode(&path, &format!("{}{}", pem.cert, pem.pkcs8), 0o622);
        parse_in(
            dir.path(),
            "client_certificate_file = \"client.pem\"\n",
            &Env::default(),
        )
        .unwrap_err()
    };
    assert_eq!(e.kind, ErrorKind::Unsafe);
    assert!(
        e.message.contains("is writable by its group and others")
            || e.message.contains("is writable by group and others"),
        "{e}"
    );
    // A key file alone.
    let e = parse_in(
        dir.path(),
        "client_certificate_key_file = \"k\"\n",
        &env_secret(),
    )
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("entra.client_certificate_key_file"));
    assert!(e.message.contains("belongs to a certificate"), "{e}");
}

#[test]
fn managed_identities() {
    let dir = tempfile::tempdir().unwrap();
    let parse = |rest: &str, env: &Env| {
        let text = format!("[entra]\ntenant_id = \"contoso.onmicrosoft.com\"\n{rest}");
        Config::parse(&text, &dir.path().join("config.toml"), env)
    };
    let mi = |config: &Config| match &config.entra.credential {
        Credential::ManagedIdentity(mi) => mi.clone(),
        other => panic!("{other:?}"),
    };
    let config = parse("managed_identity = true\n", &Env::default()).unwrap();
    let system = mi(&config);
    assert_eq!(system.client_id, None);
    assert_eq!(system.kind, ManagedIdentityKind::Vm);
    assert_eq!(system.endpoint, IMDS_TOKEN_URL);
    assert_eq!(system.api_version(), "2018-02-01");
    assert_eq!(config.entra.client_id, None);
    assert_eq!(config.entra.resource(), "https://graph.microsoft.com/");

    let config = parse(
        "managed_identity_client_id = \"AAAAAAAA-2222-3333-4444-555555555555\"\nmanaged_identity_endpoint = \"http://127.0.0.1:8080/token\"\n",
        &Env::default(),
    )
    .unwrap();
    let user = mi(&config);
    assert_eq!(
        user.client_id.as_deref(),
        Some("aaaaaaaa-2222-3333-4444-555555555555")
    );
    assert_eq!(user.endpoint, "http://127.0.0.1:8080/token");

    // Arc: the agent's variables.
    let arc_env = Env {
        identity_endpoint: Some("http://localhost:40342/metadata/identity/oauth2/token".into()),
        imds_endpoint: Some("http://localhost:40342".into()),
        ..Env::default()
    };
    let arc = mi(&parse("managed_identity = true\n", &arc_env).unwrap());
    assert_eq!(arc.kind, ManagedIdentityKind::Arc);
    assert_eq!(
        arc.endpoint,
        "http://localhost:40342/metadata/identity/oauth2/token"
    );
    assert_eq!(arc.api_version(), "2019-11-01");
    assert_eq!(arc.arc_tokens_dir, Path::new(ARC_TOKENS_DIR));
    let himds = Env {
        himds_installed: true,
        ..Env::default()
    };
    let arc = mi(&parse("managed_identity = true\n", &himds).unwrap());
    assert_eq!(
        (arc.kind, arc.endpoint.as_str()),
        (ManagedIdentityKind::Arc, ARC_DEFAULT_TOKEN_URL)
    );

    // client_id is not needed, and a warning when given.
    let config = parse(
        "client_id = \"11111111-2222-3333-4444-555555555555\"\nmanaged_identity = true\n",
        &Env::default(),
    )
    .unwrap();
    assert!(
        config.warnings[0].contains("is not used with a managed identity"),
        "{:?}",
        config.warnings
    );

    let e = parse("managed_identity_client_id = \"nope\"\n", &Env::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("entra.managed_identity_client_id: \"nope\" is not a GUID"),
        "{e}"
    );
    let e = parse(
        "managed_identity = false\nmanaged_identity_client_id = \"aaaaaaaa-2222-3333-4444-555555555555\"\n",
        &Env::default(),
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("is false, but managed_identity_client_id"),
        "{e}"
    );
    let e = parse(
        "managed_identity = true\nmanaged_identity_endpoint = \"http://10.0.0.1/token\"\n",
        &Env::default(),
    )
    .unwrap_err();
    assert!(e.message.contains("plain http"), "{e}");
    let ok = parse(
        "managed_identity = true\nmanaged_identity_endpoint = \"http://169.254.169.254/metadata/identity/oauth2/token\"\n",
        &Env::default(),
    );
    assert!(ok.is_ok());
    let e = parse_in(
        dir.path(),
        "managed_identity_endpoint = \"http://127.0.0.1:1/t\"\n",
        &env_secret(),
    )
    .unwrap_err();
    assert!(
        e.message.contains("only used with a managed identity"),
        "{e}"
    );
    // managed_identity = false alone is no credential.
    let e = parse_in(dir.path(), "managed_identity = false\n", &Env::default()).unwrap_err();
    assert!(e.message.starts_with("no credential is configured"), "{e}");
}

#[test]
fn federated_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    write_mode(&token, "eyJh.eyJi.c2ln\n", 0o600);
    let config = parse_in(
        dir.path(),
        "federated_token_file = \"token\"\n",
        &Env::default(),
    )
    .unwrap();
    assert_eq!(
        config.entra.credential,
        Credential::FederatedToken(FederatedToken {
            path: token.clone(),
            from_env: false
        })
    );
    // The AKS convention: the file and the ids from the environment.
    let env = Env {
        federated_token_file: Some(token.clone()),
        azure_client_id: Some("aaaaaaaa-2222-3333-4444-555555555555".into()),
        azure_tenant_id: Some("bbbbbbbb-2222-3333-4444-555555555555".into()),
        ..Env::default()
    };
    let config = Config::parse("[entra]\n", &dir.path().join("config.toml"), &env).unwrap();
    assert_eq!(
        config.entra.client_id.as_deref(),
        Some("aaaaaaaa-2222-3333-4444-555555555555")
    );
    assert_eq!(
        config.entra.tenant_id,
        "bbbbbbbb-2222-3333-4444-555555555555"
    );
    assert!(matches!(&config.entra.credential, Credential::FederatedToken(f) if f.from_env));
    // The keys win over the variables.
    let config = parse_in(dir.path(), "", &env).unwrap();
    assert_eq!(
        config.entra.client_id.as_deref(),
        Some("11111111-2222-3333-4444-555555555555")
    );
    // The ambient variable does not count when another credential is configured.
    let env_and_secret = Env {
        secret: Some("Zq8~s3cr3t.VALUE_abcdefghijklmnopqrstuv".into()),
        ..env.clone()
    };
    let config = parse_in(dir.path(), "", &env_and_secret).unwrap();
    assert_eq!(config.entra.credential.kind(), "client secret");
    // A bad AZURE_CLIENT_ID is named.
    let bad = Env {
        azure_client_id: Some("x".into()),
        ..env.clone()
    };
    let e = Config::parse("[entra]\n", &dir.path().join("config.toml"), &bad).unwrap_err();
    assert!(
        e.message
            .starts_with("the environment variable AZURE_CLIENT_ID \"x\" is not a GUID"),
        "{e}"
    );
    // Missing, empty or not a JWT.
    for (contents, says) in [
        (None, "does not exist"),
        (Some(""), "is empty"),
        (Some("abc"), "does not hold a JWT"),
    ] {
        match contents {
            None => std::fs::remove_file(&token).unwrap(),
            Some(c) => write_mode(&token, c, 0o600),
        }
        let e = parse_in(
            dir.path(),
            "federated_token_file = \"token\"\n",
            &Env::default(),
        )
        .unwrap_err();
        assert!(e.message.contains(says), "{e}");
    }
}

#[test]
fn several_credentials_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let pem = test_pem();
    write_mode(
        &dir.path().join("client.pem"),
        &format!("{}{}", pem.cert, pem.pkcs8),
        0o600,
    );
    write_mode(&dir.path().join("token"), "a.b.c", 0o600);
    let e = parse_in(
        dir.path(),
        "client_certificate_file = \"client.pem\"\nmanaged_identity = true\nfederated_token_file = \"token\"\n",
        &env_secret(),
    )
    .unwrap_err();
    let d = dir.path().display();
    assert_eq!(
        e.message,
        format!(
            "4 credentials are configured (environment variable ENTRA_SYNC_CLIENT_SECRET, client_certificate_file {d}/client.pem, \
             managed_identity (a managed identity), federated_token_file {d}/token); entra-sync signs in with exactly one, so keep \
             one and remove the others"
        )
    );
    assert_eq!(e.key.as_deref(), Some("entra.client_certificate_file"));
    assert_eq!(e.line, Some(4));
    assert!(!e.to_string().contains("s3cr3t"));
    // client_secret_expires belongs to a secret.
    let e = parse_in(
        dir.path(),
        "client_certificate_file = \"client.pem\"\nclient_secret_expires = 2030-01-01\n",
        &Env::default(),
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("reads a certificate's expiry (notAfter) from the certificate itself"),
        "{e}"
    );
}
