//! The admin listener from a test's point of view (SPEC §7): an ops client holding the
//! built-in `admin` scope, JSON calls to `/admin/...` with its token, and a small
//! Prometheus text parser for `/metrics`.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde_json::Value;

use super::{Fixture, GatewayConfig, Resp, Store, access_token, send};

/// The ops client every admin test registers: client_credentials, scopes `["admin"]`.
pub const OPS_CLIENT: &str = "ops";

/// Adds the `ops` client (scope `admin` only) to `config`; it shares the fixture's secret.
pub fn add_ops_client(config: &mut GatewayConfig) {
    config.add_client(OPS_CLIENT, &["client_credentials"], &["admin"], "");
}

/// A fixture with the `ops` client, after `tweak`; and an [`Admin`] for its gateway.
pub async fn admin_fixture(
    store: Store,
    tweak: impl FnOnce(&mut GatewayConfig),
) -> (Fixture, Admin) {
    let fx = Fixture::start_with(store, |config| {
        add_ops_client(config);
        tweak(config);
    })
    .await;
    let admin = Admin::new(&fx.gw.admin_url(), &admin_token(&fx).await);
    (fx, admin)
}

/// A fresh `admin` token for the `ops` client from the fixture's token endpoint.
pub async fn admin_token(fx: &Fixture) -> String {
    access_token(&fx.client_token_for(OPS_CLIENT, Some("admin")).await)
}

/// Calls to one admin listener with one bearer token.
#[derive(Clone)]
pub struct Admin {
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub base: String,
    pub token: String,
}

impl Admin {
    pub fn new(base: &str, token: &str) -> Admin {
        Admin {
            base: base.to_owned(),
            token: token.to_owned(),
        }
    }

    /// The same listener with another token.
    pub fn with_token(&self, token: &str) -> Admin {
        Admin::new(&self.base, token)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `METHOD path` with the bearer token, and `body` as JSON when given.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        admin_call(&self.url(path), Some(&self.token), method, body, &[]).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.call("POST", path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.call("PATCH", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, None).await
    }

    /// `POST /admin/clients`; panics unless 201 with `Cache-Control: no-store` (the answer
    /// may carry the one copy of a secret). Returns the created client (with secret).
    pub async fn create_client(&self, body: &Value) -> Value {
        let resp = self.post("/admin/clients", body).await;
        assert_eq!(resp.status, 201, "POST /admin/clients {body}: {resp}");
        assert_no_store(&resp);
        resp.json()
    }

    /// `GET /admin/tokens?query`; panics unless 200. Returns the `tokens` array.
    pub async fn tokens(&self, query: &str) -> Vec<Value> {
        let resp = self.get(&format!("/admin/tokens?{query}")).await;
        assert_eq!(resp.status, 200, "GET /admin/tokens?{query}: {resp}");
        resp.json()["tokens"]
            .as_array()
            .unwrap_or_else(|| panic!("no tokens array: {resp}"))
            .clone()
    }

    /// `GET /admin/explain?method=..&path=..` with `X-Explain-Token` when given; panics
    /// unless 200. Returns the explanation.
    pub async fn explain(&self, method: &str, path: &str, token: Option<&str>) -> Value {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("method", method)
            .append_pair("path", path)
            .finish();
        let mut headers = Vec::new();
        if let Some(token) = token {
            headers.push(("x-explain-token", token));
        }
        let url = self.url(&format!("/admin/explain?{query}"));
        let resp = admin_call(&url, Some(&self.token), "GET", None, &headers).await;
        assert_eq!(resp.status, 200, "explain {method} {path}: {resp}");
        resp.json()
    }

    /// `GET /metrics` (no token needed), parsed.
    pub async fn metrics(&self) -> Metrics {
        metrics(&self.base).await
    }
}

/// Asserts `Cache-Control: no-store`: what an answer carrying a secret or a token must say
/// so that no cache on the way keeps it.
pub fn assert_no_store(resp: &Resp) {
    let cache = resp.header("cache-control").unwrap_or_default();
    assert!(
        cache
            .split(',')
            .any(|d| d.trim().eq_ignore_ascii_case("no-store")),
        "Cache-Control {cache:?}, want no-store: {resp}"
    );
}

/// `METHOD url` with `Authorization: Bearer token` when given, a JSON body when given, and
/// `extra` headers.
pub async fn admin_call(
    url: &str,
    token: Option<&str>,
    method: &str,
    body: Option<&Value>,
    extra: &[(&str, &str)],
) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(auth) = &auth {
        headers.push(("authorization", auth));
    }
    let bytes = match body {
        Some(body) => {
            headers.push(("content-type", "application/json"));
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    send(method, url, &headers, bytes).await
}

/// One sample line of Prometheus text: name, labels, value.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed `/metrics` page.
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the Prometheus text exposition format (comments skipped, timestamps ignored).
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| parse_sample(line).unwrap_or_else(|| panic!("bad metrics line {line:?}")))
            .collect();
        Metrics {
            text: text.to_owned(),
            samples,
        }
    }

    /// The sum of every sample named `name` whose labels include all of `labels` (0 when
    /// there is none: a counter that never moved may not be exported yet).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// Samples named `name` whose labels include all of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// True if some sample named `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// True if the page declares `# TYPE name kind` or has a sample of that name.
    pub fn declares(&self, name: &str) -> bool {
        self.has(name)
            || self.text.lines().any(|line| {
                let mut words = line.split_whitespace();
                words.next() == Some("#")
                    && words.next() == Some("TYPE")
                    && words.next() == Some(name)
            })
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `GET {admin}/metrics`: asserts 200 and the Prometheus text content type, and parses it.
pub async fn metrics(admin_base: &str) -> Metrics {
    let resp = send("GET", &format!("{admin_base}/metrics"), &[], Bytes::new()).await;
    assert_eq!(resp.status, 200, "GET /metrics: {resp}");
    let content_type = resp.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"),
        "metrics content-type {content_type:?}"
    );
    Metrics::parse(&resp.body)
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) if line[..open].find(' ').is_none() => {
            let close = open + line[open..].rfind('}')?;
            let labels = parse_labels(&line[open + 1..close])?;
            (&line[..open], labels, &line[close + 1..])
        }
        _ => {
            let (name, rest) = line.split_once(' ')?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"` → map (escapes `\\`, `\"`, `\n` handled).
fn parse_labels(mut text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if text.is_empty() {
            return Some(labels);
        }
        let (name, after) = text.split_once('=')?;
        let quoted = after.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(name.trim().to_owned(), value);
        text = &quoted[end?..];
    }
}

#[test]
fn harness_parses_prometheus_text() {
    let m = Metrics::parse(
        "# HELP x help\n# TYPE tollgate_requests_total counter\n\
         tollgate_requests_total{route=\"abc\",status=\"200\"} 3\n\
         tollgate_requests_total{route=\"a\\\"b\",status=\"404\"} 1 1700000000\n\
         tollgate_cache_hits_total 7\n\
         tollgate_request_duration_seconds_bucket{le=\"+Inf\"} 4\n",
    );
    assert_eq!(m.sum("tollgate_requests_total", &[]), 4.0);
    assert_eq!(
        m.sum(
            "tollgate_requests_total",
            &[("route", "abc"), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(m.sum("tollgate_requests_total", &[("route", "a\"b")]), 1.0);
    assert_eq!(m.sum("tollgate_cache_hits_total", &[]), 7.0);
    assert_eq!(
        m.sum(
            "tollgate_request_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        4.0
    );
    assert!(m.declares("tollgate_requests_total"));
    assert!(!m.has("tollgate_nothing"));
}
