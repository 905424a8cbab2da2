//! The client assertion (graph-protocol.md 1.3): a JWT that the certificate's key signs,
//! fresh for every token request. The current documentation asks for PS256 with `x5t#S256`;
//! earlier revisions for RS256 with `x5t`. Both are built here, PS256 first.

use std::fmt;

use serde_json::json;

use super::base64url;
use crate::config::Certificate;

/// How long an assertion is valid: the documentation suggests 5-10 minutes at most.
const LIFETIME_SECS: u64 = 10 * 60;

/// Which documented form of assertion to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// RSA-PSS with SHA-256, header `x5t#S256` (SHA-256 thumbprint).
    Ps256,
    /// RSA PKCS#1 v1.5 with SHA-256, header `x5t` (SHA-1 thumbprint).
    Rs256,
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Form::Ps256 => "PS256 with x5t#S256",
            Form::Rs256 => "RS256 with x5t",
        })
    }
}

pub(super) fn now_unix() -> u64 {
    time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .try_into()
        .unwrap_or(0)
}

/// Signs a fresh assertion for `client_id` at `audience` (the token endpoint URL), issued at
/// `now` (Unix seconds). Errors are messages without key material.
pub(super) fn sign(
    cert: &Certificate,
    key: &ring::rsa::KeyPair,
    client_id: &str,
    audience: &str,
    form: Form,
    now: u64,
) -> Result<String, String> {
    let (alg, header): (&'static dyn ring::signature::RsaEncoding, _) = match form {
        Form::Ps256 => (
            &ring::signature::RSA_PSS_SHA256,
            json!({"alg": "PS256", "typ": "JWT", "x5t#S256": base64url(&cert.sha256)}),
        ),
        Form::Rs256 => (
            &ring::signature::RSA_PKCS1_SHA256,
            json!({"alg": "RS256", "typ": "JWT", "x5t": base64url(&cert.sha1)}),
        ),
    };
    let claims = json!({
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now,
        "iat": now,
        "exp": now + LIFETIME_SECS,
    });
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        alg,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "the certificate's private key could not sign the client assertion".to_owned())?;
    Ok(format!("{signing_input}.{}", base64url(&signature)))
}

/// Whether Entra's refusal may mean "this form of assertion is not accepted" rather than a
/// wrong certificate or app: then the other documented form is worth one try. A signature or
/// thumbprint Entra cannot match (700027, 50012), a malformed or unreadable JWT (50027,
/// 5002723, 50013), an unsupported signature algorithm (5002738) or, without any code, an
/// `invalid_request`/`invalid_client`.
pub(super) fn may_be_form_problem(code: Option<u64>, error: &str) -> bool {
    const FORM_CODES: [u64; 7] = [700027, 50012, 50027, 5002723, 5002738, 50013, 7000274];
    match code {
        Some(code) => FORM_CODES.contains(&code),
        None => error == "invalid_request" || error == "invalid_client",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap is fine in tests only
mod tests {
    use super::*;
    use crate::auth::base64url_decode;
    use crate::config::test_certificate;

    fn part(jwt: &str, i: usize) -> serde_json::Value {
        serde_json::from_slice(&base64url_decode(jwt.split('.').nth(i).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn both_forms_are_signed_and_verify_with_the_certificate_key() {
        let cert = test_certificate();
        let key = cert.key.key_pair().unwrap();
        let aud = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token";
        let client = "11111111-2222-3333-4444-555555555555";
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PSS_2048_8192_SHA256,
            key.public().as_ref().to_vec(),
        );
        let jwt = sign(&cert, &key, client, aud, Form::Ps256, 1_741_083_072).unwrap();
        let header = part(&jwt, 0);
        assert_eq!(header["alg"], "PS256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["x5t#S256"], base64url(&cert.sha256));
        assert!(header.get("x5t").is_none());
        let claims = part(&jwt, 1);
        assert_eq!(claims["aud"], aud);
        assert_eq!(claims["iss"], client);
        assert_eq!(claims["sub"], client);
        assert_eq!(claims["nbf"], 1_741_083_072);
        assert_eq!(claims["iat"], 1_741_083_072);
        assert_eq!(claims["exp"], 1_741_083_072 + 600);
        assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
        let (input, signature) = jwt.rsplit_once('.').unwrap();
        public
            .verify(input.as_bytes(), &base64url_decode(signature).unwrap())
            .unwrap();

        let jwt2 = sign(&cert, &key, client, aud, Form::Rs256, 1_741_083_072).unwrap();
        let header = part(&jwt2, 0);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["x5t"], base64url(&cert.sha1));
        let (input, signature) = jwt2.rsplit_once('.').unwrap();
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            key.public().as_ref().to_vec(),
        )
        .verify(input.as_bytes(), &base64url_decode(signature).unwrap())
        .unwrap();
        // A fresh jti every time.
        assert_ne!(part(&jwt, 1)["jti"], part(&jwt2, 1)["jti"]);
    }

    #[test]
    fn the_docs_worked_x5t_example() {
        // graph-protocol.md 1.3: hex thumbprint 84E05C1D... -> hOBcHZi846VCHSJbFAs26Go9VTQ.
        let sha1: Vec<u8> = (0..20)
            .map(|i| {
                u8::from_str_radix(
                    &"84E05C1D98BCE3A5421D225B140B36E86A3D5534"[i * 2..i * 2 + 2],
                    16,
                )
                .unwrap()
            })
            .collect();
        assert_eq!(base64url(&sha1), "hOBcHZi846VCHSJbFAs26Go9VTQ");
    }

    #[test]
    fn which_refusals_try_the_other_form() {
        assert!(may_be_form_problem(Some(700027), "invalid_client"));
        assert!(may_be_form_problem(Some(50027), "invalid_request"));
        assert!(!may_be_form_problem(Some(700016), "unauthorized_client"));
        assert!(!may_be_form_problem(Some(700024), "invalid_client"));
        assert!(!may_be_form_problem(Some(90002), "invalid_tenant"));
    }
}
