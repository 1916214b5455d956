//! `tollgate clients …`, `tollgate tokens …`, `tollgate scopes …`, `tollgate credentials …`,
//! `tollgate explain`: the ops CLI, a client of the admin API. Prints tables for people
//! (`print.rs`) and the API's JSON with `--json`. Secrets come from arguments, the
//! environment, or files (`-`: stdin), read here.

use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};

mod credentials;
mod print;
mod scopes;
mod verbs;
pub use credentials::CredentialsCommand;
pub use scopes::ScopesCommand;
pub use verbs::{ClientsCommand, TokensCommand};

/// How to reach and authenticate to the admin API.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// e.g. `http://127.0.0.1:9090`
    pub admin_url: String,
    /// An access token with the `admin` scope…
    pub token: Option<String>,
    /// …or client credentials to get one from `public_url`'s token endpoint.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub public_url: Option<String>,
    pub oauth_path: String,
    pub json: bool,
    /// `--admin-ca`: PEM CA certificates trusted for an `https://` admin URL (`[admin.tls]`
    /// with a private CA), beside the system roots.
    pub admin_ca: Option<std::path::PathBuf>,
}

/// An admin command.
#[derive(Debug, Clone)]
pub enum Command {
    ClientsList,
    ClientsShow(String),
    ClientsCreate(Map<String, Value>),
    ClientsDelete(String),
    TokensList {
        client_id: Option<String>,
        username: Option<String>,
    },
    TokensIssue {
        client_id: String,
        scope: Option<String>,
        days: Option<u64>,
    },
    TokensRevoke(String),
    Explain {
        method: String,
        path: String,
        token: String,
    },
    Credentials(CredentialsCommand),
    Scopes(ScopesCommand),
    /// `PATCH /admin/clients/{id}` with `{"enabled": …}`.
    ClientsEnable(String, bool),
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{status}: {message}")]
    Api { status: StatusCode, message: String },
}

/// Under the `--help` of every command that takes a secret: how to keep it off the command line.
pub const SECRETS_HELP: &str = "\
Secrets: a token or secret given as an argument (--token, --client-secret, --explain-token)
can be read by every local user through `ps` and /proc. Give it in a file instead
(--token-file, --client-secret-file, --explain-token-file; the path `-` reads stdin, one
trailing newline is dropped) or in the environment (TOLLGATE_ADMIN_TOKEN,
TOLLGATE_CLIENT_SECRET).";

/// Reads the secrets given as `--…-file PATH`; stdin (`-`) can serve only one of them.
#[derive(Debug, Default)]
pub struct SecretFiles {
    stdin_read_by: Option<&'static str>,
}

impl SecretFiles {
    /// The secret in `path` (stdin for `-`) for `flag`, without one trailing newline, since
    /// `echo` and editors add one; an empty secret is an error.
    pub fn read(&mut self, path: &Path, flag: &'static str) -> Result<String, CliError> {
        let text = if path == Path::new("-") {
            if let Some(other) = self.stdin_read_by {
                return Err(CliError::Usage(format!(
                    "{flag} and {other} cannot both read stdin"
                )));
            }
            self.stdin_read_by = Some(flag);
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Usage(format!("{flag}: reading stdin: {e}")))?;
            text
        } else {
            std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("{flag}: reading {}: {e}", path.display())))?
        };
        let secret = without_newline(&text);
        if secret.is_empty() {
            let from = if path == Path::new("-") {
                "stdin".to_owned()
            } else {
                path.display().to_string()
            };
            return Err(CliError::Usage(format!("{flag}: {from} is empty")));
        }
        Ok(secret.to_owned())
    }
}

/// `text` without one trailing `\n` or `\r\n`.
pub fn without_newline(text: &str) -> &str {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.strip_suffix('\r').unwrap_or(text)
}

type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn http_client(extra_ca: Option<&Path>) -> Result<HttpClient, CliError> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match extra_ca {
        None => builder
            .with_native_roots()
            .map_err(|e| CliError::Usage(format!("loading the system's CA certificates: {e}")))?,
        Some(file) => {
            let mut roots = rustls::RootCertStore::empty();
            // The system roots too: the token endpoint may have a public certificate.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let usage = |e: String| CliError::Usage(format!("--admin-ca {}: {e}", file.display()));
            let mut added = 0;
            for cert in CertificateDer::pem_file_iter(file).map_err(|e| usage(e.to_string()))? {
                let cert = cert.map_err(|e| usage(e.to_string()))?;
                roots.add(cert).map_err(|e| usage(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(usage("no certificate in the file".into()));
            }
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder.with_tls_config(config)
        }
    };
    let connector = builder.https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

async fn send(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Value), CliError> {
    let url = req.uri().to_string();
    let unreachable = |reason: String| CliError::Unreachable {
        url: url.clone(),
        reason,
    };
    let resp = client
        .request(req)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    Ok((status, value))
}

fn api_error(status: StatusCode, body: &Value) -> CliError {
    let message = match (
        body.get("error").and_then(Value::as_str),
        body.get("error_description").and_then(Value::as_str),
    ) {
        (Some(e), Some(d)) => format!("{e}: {d}"),
        (Some(e), None) => e.to_owned(),
        // A credential whose refresh failed answers with its status object.
        _ if body.get("last_error").is_some() => format!(
            "credential {}: {}",
            body.get("name").and_then(Value::as_str).unwrap_or("?"),
            body.get("last_error")
                .and_then(Value::as_str)
                .unwrap_or("failed")
        ),
        _ => body.to_string(),
    };
    CliError::Api { status, message }
}

/// The admin token: given, or fetched with client credentials (scope `admin`).
async fn admin_token(client: &HttpClient, t: &Target) -> Result<String, CliError> {
    if let Some(token) = &t.token {
        return Ok(token.clone());
    }
    let (Some(id), Some(secret), Some(url)) = (&t.client_id, &t.client_secret, &t.public_url)
    else {
        return Err(CliError::Usage(
            "no admin credentials: give --token (TOLLGATE_ADMIN_TOKEN), or --client-id, --client-secret and --url (TOLLGATE_CLIENT_ID, TOLLGATE_CLIENT_SECRET, TOLLGATE_URL)".into(),
        ));
    };
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("scope", crate::config::ADMIN_SCOPE)
        .append_pair("client_id", id)
        .append_pair("client_secret", secret)
        .finish();
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "{}{}/token",
            url.trim_end_matches('/'),
            t.oauth_path
        ))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .map_err(|e| CliError::Usage(format!("bad --url: {e}")))?;
    let (status, body) = send(client, req).await?;
    if !status.is_success() {
        return Err(api_error(status, &body));
    }
    body.get("access_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::Usage("the token endpoint answered without an access_token".into())
        })
}

/// Runs one command and prints its result.
pub async fn run(t: &Target, cmd: Command) -> Result<(), CliError> {
    let client = http_client(t.admin_ca.as_deref())?;
    let token = admin_token(&client, t).await?;
    let base = t.admin_url.trim_end_matches('/');
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let (method, path, body, explain_token): (Method, String, Option<Value>, Option<String>) =
        match &cmd {
            Command::ClientsList => (Method::GET, "/admin/clients".into(), None, None),
            Command::ClientsShow(id) => (
                Method::GET,
                format!("/admin/clients/{}", enc(id)),
                None,
                None,
            ),
            Command::ClientsCreate(fields) => (
                Method::POST,
                "/admin/clients".into(),
                Some(Value::Object(fields.clone())),
                None,
            ),
            Command::ClientsDelete(id) => (
                Method::DELETE,
                format!("/admin/clients/{}", enc(id)),
                None,
                None,
            ),
            Command::TokensList {
                client_id,
                username,
            } => {
                let mut q = form_urlencoded::Serializer::new(String::new());
                if let Some(c) = client_id {
                    q.append_pair("client_id", c);
                }
                if let Some(u) = username {
                    q.append_pair("username", u);
                }
                (
                    Method::GET,
                    format!("/admin/tokens?{}", q.finish()),
                    None,
                    None,
                )
            }
            Command::TokensIssue {
                client_id,
                scope,
                days,
            } => {
                let mut b = json!({ "client_id": client_id });
                if let Some(s) = scope {
                    b["scope"] = json!(s);
                }
                if let Some(d) = days {
                    b["days"] = json!(d);
                }
                (Method::POST, "/admin/tokens".into(), Some(b), None)
            }
            Command::TokensRevoke(id) => (
                Method::DELETE,
                format!("/admin/tokens/{}", enc(id)),
                None,
                None,
            ),
            Command::Credentials(c) => {
                let (method, path) = credentials::request(c);
                (method, path, None, None)
            }
            Command::Scopes(c) => {
                let (method, path, body) = scopes::request(c);
                (method, path, body, None)
            }
            Command::ClientsEnable(id, enabled) => (
                Method::PATCH,
                format!("/admin/clients/{}", enc(id)),
                Some(json!({ "enabled": enabled })),
                None,
            ),
            Command::Explain {
                method,
                path,
                token,
            } => {
                let q = form_urlencoded::Serializer::new(String::new())
                    .append_pair("method", method)
                    .append_pair("path", path)
                    .finish();
                (
                    Method::GET,
                    format!("/admin/explain?{q}"),
                    None,
                    Some(token.clone()),
                )
            }
        };
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        CliError::Usage("the admin token has characters a header cannot carry".into())
    })?;
    req = req.header(AUTHORIZATION, auth);
    if let Some(x) = &explain_token {
        req = req.header("x-explain-token", x.as_str());
    }
    let payload = match &body {
        Some(b) => {
            req = req.header(CONTENT_TYPE, "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let req = req
        .body(Full::new(payload))
        .map_err(|e| CliError::Usage(format!("bad --admin-url: {e}")))?;
    let (status, value) = send(&client, req).await?;
    if !status.is_success() {
        return Err(api_error(status, &value));
    }
    if t.json {
        let out = if value.is_null() {
            json!({"ok": true})
        } else {
            value
        };
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    print::print_human(&cmd, &value);
    Ok(())
}
