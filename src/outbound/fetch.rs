//! One token request to a credential's provider, and what its answer means: the request per
//! grant (RFC 6749 §4.1.3, §4.3, §4.4, §6) with `basic`/`post` client authentication, form or
//! JSON bodies, `scope` and `params`; the answer read through the credential's JSON pointers,
//! and every failure sorted into a short classification that never quotes the provider.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::credential::{AuthMethod, Credential, RequestFormat, Secret};

/// Largest token response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest lifetime believed; a provider claiming more is treated as mistaken, never as
/// "never expires".
const MAX_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

pub type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// The HTTP client of one credential (its own TLS roots). Token requests are rare, so no
/// connection is kept between them.
pub fn client(cred: &Credential) -> HttpClient {
    let tls = match &cred.tls {
        Some(tls) => (**tls).clone(),
        None => crate::proxy::system_tls_config(),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// What a token request asks for.
pub enum Ask<'a> {
    /// The credential's own grant (client_credentials or password).
    Initial,
    Refresh(&'a Secret),
    /// Authorization code exchange after the provider's consent page.
    Code {
        code: &'a str,
        verifier: &'a str,
        redirect_uri: &'a str,
    },
}

/// A provider's tokens.
pub struct Fetched {
    pub access: Secret,
    pub refresh: Option<Secret>,
    pub lifetime: Duration,
}

/// Why no usable token came back. Its text is a classification for `last_error`, logs and
/// metrics; the provider's body never appears in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("timeout after {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("provider unreachable")]
    Connect,
    #[error("provider answered HTTP {0}")]
    Status(u16),
    #[error("provider answered {0}")]
    OAuth(String),
    #[error("provider answered {0}, not JSON")]
    NotJson(&'static str),
    #[error("provider's answer has no access token at the configured path")]
    NoToken,
    #[error("provider's token_type is {0:?}, not Bearer")]
    TokenType(String),
    #[error("token request could not be built")]
    Request,
}

impl FetchError {
    /// `invalid_client` / `invalid_grant`: asking again will not help until the credential
    /// changes or an operator asks (SPEC §8).
    pub fn is_final(&self) -> bool {
        matches!(self, FetchError::OAuth(code) if code == "invalid_client" || code == "invalid_grant")
    }

    /// A label for the `outcome` of `tollgate_credential_token_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::Connect => "unreachable",
            FetchError::Status(_) => "http_error",
            FetchError::OAuth(_) => "refused",
            FetchError::NotJson(_) | FetchError::NoToken | FetchError::TokenType(_) => {
                "bad_response"
            }
            FetchError::Request => "error",
        }
    }
}

/// Sends one token request and reads its answer.
pub async fn fetch(
    http: &HttpClient,
    cred: &Credential,
    ask: Ask<'_>,
) -> Result<Fetched, FetchError> {
    let (url, fields) = fields(cred, &ask);
    let req = build(cred, url, fields)?;
    let exchange = async {
        let resp = http.request(req).await.map_err(|_| FetchError::Connect)?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| FetchError::Connect)?
            .to_bytes();
        Ok::<_, FetchError>((status, content_type, body))
    };
    let (status, content_type, body) = tokio::time::timeout(cred.timeout, exchange)
        .await
        .map_err(|_| FetchError::Timeout(cred.timeout))??;
    answer(cred, status, &content_type, &body)
}

/// Reads a provider's answer: its status, lower-cased `Content-Type` and body.
pub fn answer(
    cred: &Credential,
    status: StatusCode,
    content_type: &str,
    body: &[u8],
) -> Result<Fetched, FetchError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    // RFC 6749 §5.2: an error object wins over the status, whatever it is.
    if let Some(code) = json
        .as_ref()
        .and_then(|j| j.get("error"))
        .and_then(Value::as_str)
    {
        let code: String = code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(40)
            .collect();
        return Err(FetchError::OAuth(code));
    }
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    let Some(json) = json else {
        return Err(FetchError::NotJson(
            if body.iter().all(u8::is_ascii_whitespace) {
                "an empty body"
            } else if content_type.contains("html") || body.trim_ascii_start().starts_with(b"<") {
                "an HTML page"
            } else if content_type.contains("x-www-form-urlencoded") {
                "a form-encoded body"
            } else {
                "a body that is"
            },
        ));
    };
    parse(cred, &json)
}

/// The token endpoint and the fields of the request.
fn fields<'a>(cred: &'a Credential, ask: &Ask<'a>) -> (&'a Uri, Vec<(&'a str, String)>) {
    let mut out: Vec<(&str, String)> = Vec::new();
    let url = match ask {
        Ask::Initial => {
            out.push(("grant_type", cred.grant.as_str().to_owned()));
            if let (Some(u), Some(p)) = (&cred.username, &cred.password) {
                out.push(("username", u.clone()));
                out.push(("password", p.expose().to_owned()));
            }
            &cred.token_url
        }
        Ask::Refresh(rt) => {
            out.push(("grant_type", "refresh_token".to_owned()));
            out.push(("refresh_token", rt.expose().to_owned()));
            cred.refresh_endpoint()
        }
        Ask::Code {
            code,
            verifier,
            redirect_uri,
        } => {
            out.push(("grant_type", "authorization_code".to_owned()));
            out.push(("code", (*code).to_owned()));
            out.push(("redirect_uri", (*redirect_uri).to_owned()));
            out.push(("code_verifier", (*verifier).to_owned()));
            &cred.token_url
        }
    };
    if !matches!(ask, Ask::Code { .. })
        && let Some(scope) = &cred.scope
    {
        out.push(("scope", scope.clone()));
    }
    if cred.auth_method == AuthMethod::Post || cred.client_secret.is_none() {
        out.push(("client_id", cred.client_id.clone()));
        if let Some(secret) = &cred.client_secret {
            out.push(("client_secret", secret.expose().to_owned()));
        }
    }
    for (k, v) in &cred.params {
        out.push((k.as_str(), v.clone()));
    }
    (url, out)
}

fn build(
    cred: &Credential,
    url: &Uri,
    fields: Vec<(&str, String)>,
) -> Result<Request<Full<Bytes>>, FetchError> {
    let (content_type, body) = match cred.request_format {
        RequestFormat::Form => (
            "application/x-www-form-urlencoded",
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&fields)
                .finish()
                .into_bytes(),
        ),
        RequestFormat::Json => {
            let object: serde_json::Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v)))
                .collect();
            (
                "application/json",
                serde_json::to_vec(&object).map_err(|_| FetchError::Request)?,
            )
        }
    };
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(url.clone())
        .header(CONTENT_TYPE, content_type)
        .header(ACCEPT, "application/json");
    if cred.auth_method == AuthMethod::Basic
        && let Some(secret) = &cred.client_secret
    {
        req = req.header(AUTHORIZATION, basic(&cred.client_id, secret.expose()));
    }
    req.body(Full::new(Bytes::from(body)))
        .map_err(|_| FetchError::Request)
}

/// RFC 6749 §2.3.1: id and secret form-encoded, then Basic.
pub fn basic(id: &str, secret: &str) -> HeaderValue {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(id), encode(secret));
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    let mut v = HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Basic"));
    v.set_sensitive(true);
    v
}

/// Reads the tokens out of a JSON answer through the credential's pointers.
pub fn parse(cred: &Credential, json: &Value) -> Result<Fetched, FetchError> {
    let text = |path: &str| {
        json.pointer(path)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
    };
    let access = text(&cred.access_token_path).ok_or(FetchError::NoToken)?;
    // A header value must be visible ASCII; anything else could not be sent anyway.
    if !access.expose().bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FetchError::NoToken);
    }
    if let Some(kind) = json.get("token_type").and_then(Value::as_str)
        && !kind.eq_ignore_ascii_case("bearer")
    {
        let kind: String = kind
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect();
        return Err(FetchError::TokenType(kind));
    }
    let lifetime = match json.pointer(&cred.expires_in_path) {
        None | Some(Value::Null) => cred.default_ttl,
        Some(v) => match seconds(v) {
            Some(s) if s > 0.0 => Duration::from_secs_f64(s.min(MAX_LIFETIME.as_secs_f64())),
            _ => {
                tracing::warn!(credential = %cred.name, "provider gave an unusable expires_in; assuming default_ttl");
                cred.default_ttl
            }
        },
    };
    Ok(Fetched {
        access,
        refresh: text(&cred.refresh_token_path),
        lifetime,
    })
}

/// A number, or a numeric string, of seconds.
fn seconds(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cred() -> Credential {
        Credential {
            name: "crm".into(),
            grant: super::super::OutboundGrant::ClientCredentials,
            token_url: Uri::from_static("http://127.0.0.1/token"),
            refresh_url: None,
            authorize_url: None,
            client_id: "id".into(),
            client_secret: None,
            auth_method: AuthMethod::Basic,
            scope: None,
            params: Vec::new(),
            request_format: RequestFormat::Form,
            refresh_token: None,
            username: None,
            password: None,
            per_user: false,
            access_token_path: "/access_token".into(),
            refresh_token_path: "/refresh_token".into(),
            expires_in_path: "/expires_in".into(),
            default_ttl: Duration::from_secs(3600),
            refresh_before: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            tls: None,
            fingerprint: [0; 32],
        }
    }

    #[test]
    fn lifetimes_the_provider_got_wrong_fall_back_to_default_ttl() {
        let c = cred();
        let life = |v: Value| {
            parse(&c, &json!({"access_token": "t", "expires_in": v}))
                .expect("token")
                .lifetime
                .as_secs()
        };
        assert_eq!(life(json!(120)), 120);
        assert_eq!(life(json!("90")), 90, "a numeric string");
        for wrong in [json!(0), json!(-5), json!("soon"), json!(null), json!([1])] {
            assert_eq!(
                life(wrong.clone()),
                3600,
                "{wrong}: default_ttl, never 'forever'"
            );
        }
        assert_eq!(
            life(json!(1e12)),
            MAX_LIFETIME.as_secs(),
            "absurd values are capped"
        );
    }

    #[test]
    fn answers_without_a_usable_bearer_token_are_refused() {
        let c = cred();
        assert_eq!(parse(&c, &json!({})).err(), Some(FetchError::NoToken));
        assert_eq!(
            parse(&c, &json!({"access_token": ""})).err(),
            Some(FetchError::NoToken)
        );
        assert_eq!(
            parse(&c, &json!({"access_token": "a b"})).err(),
            Some(FetchError::NoToken),
            "a token a header cannot carry"
        );
        assert_eq!(
            parse(&c, &json!({"access_token": "t", "token_type": "MAC"})).err(),
            Some(FetchError::TokenType("MAC".into()))
        );
        let ok = parse(&c, &json!({"access_token": "t", "token_type": "bearer"})).expect("ok");
        assert_eq!(ok.access.expose(), "t");
        assert!(ok.refresh.is_none());
        assert!(FetchError::OAuth("invalid_grant".into()).is_final());
        assert!(!FetchError::Status(503).is_final());
    }

    #[test]
    fn basic_authentication_form_encodes_first() {
        let v = basic("my app", "s:cr&t");
        let encoded = v.to_str().expect("ascii").trim_start_matches("Basic ");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        assert_eq!(decoded, b"my+app:s%3Acr%26t");
        assert!(v.is_sensitive());
    }
}
