//! The application's own credentials as Entra holds them (graph-protocol.md 1.5): read only
//! by `check`, and only when the app has `Application.Read.All`.

use serde::Deserialize;

/// One password or key credential of the app registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCredential {
    /// "secret" or "certificate".
    pub kind: &'static str,
    pub display_name: String,
    /// A secret's first three characters (`hint`).
    pub hint: Option<String>,
    /// A certificate's SHA-1 thumbprint bytes (`customKeyIdentifier`).
    pub thumbprint: Option<Vec<u8>>,
    /// `endDateTime`, as a date.
    pub ends: Option<time::Date>,
}

/// What `applications(appId=...)` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppCredentials {
    Listed(Vec<AppCredential>),
    /// 403: the app lacks Application.Read.All (which is optional).
    NotPermitted,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    #[serde(default)]
    password_credentials: Vec<Raw>,
    #[serde(default)]
    key_credentials: Vec<Raw>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    display_name: Option<String>,
    hint: Option<String>,
    custom_key_identifier: Option<String>,
    end_date_time: Option<String>,
}

fn date(text: &str) -> Option<time::Date> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.date())
}

/// Parses the 200 body; every field is optional, text is escaped for display.
pub(super) fn parse(body: &[u8]) -> Result<Vec<AppCredential>, String> {
    let body: Body = serde_json::from_slice(body).map_err(|e| {
        format!(
            "unreadable application object: {}",
            crate::http::server_text(&e.to_string())
        )
    })?;
    let one = |kind: &'static str, raw: Raw| AppCredential {
        kind,
        display_name: crate::http::server_text(raw.display_name.as_deref().unwrap_or("")),
        hint: raw.hint.map(|h| crate::http::server_text(&h)),
        thumbprint: raw
            .custom_key_identifier
            .as_deref()
            .and_then(crate::auth::base64_decode_any),
        ends: raw.end_date_time.as_deref().and_then(date),
    };
    let mut all: Vec<AppCredential> = body
        .password_credentials
        .into_iter()
        .map(|r| one("secret", r))
        .collect();
    all.extend(
        body.key_credentials
            .into_iter()
            .map(|r| one("certificate", r)),
    );
    Ok(all)
}
