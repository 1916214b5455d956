//! The user's side of the authorization endpoint, over plain HTTP: a user agent with a
//! cookie jar that submits the login and consent pages' forms as a browser would (hidden
//! inputs included; parsing in `html.rs`), PKCE, redirect parsing, and the clients the
//! authorization tests register.

use std::collections::BTreeMap;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::html::Form;
use super::{Fixture, GatewayConfig, Resp, client_toml, post_form, random_token, send};

/// A PKCE pair (RFC 7636): a 43-character verifier and its S256 challenge.
#[derive(Clone, Debug)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn random() -> Pkce {
        let verifier = random_token();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// Cookies by name, as a browser keeps them for one site (paths are not tracked: the agent
/// only ever talks to the OAuth pages).
#[derive(Clone, Debug, Default)]
pub struct CookieJar {
    cookies: BTreeMap<String, String>,
}

impl CookieJar {
    /// Stores every `Set-Cookie` of `resp`; one with `Max-Age` <= 0 or an empty value
    /// deletes the cookie.
    pub fn absorb(&mut self, resp: &Resp) {
        for value in resp.headers.get_all("set-cookie") {
            let Ok(line) = value.to_str() else { continue };
            let Some((name, value)) = line.split(';').next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
            let max_age = cookie_attributes(line)
                .get("max-age")
                .and_then(|v| v.parse::<i64>().ok());
            if value.is_empty() || max_age.is_some_and(|age| age <= 0) {
                self.cookies.remove(&name);
            } else {
                self.cookies.insert(name, value);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    pub fn remove(&mut self, name: &str) {
        self.cookies.remove(name);
    }

    /// The `Cookie` request header, or `None` when the jar is empty.
    pub fn header(&self) -> Option<String> {
        if self.cookies.is_empty() {
            return None;
        }
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        Some(pairs.join("; "))
    }
}

/// The whole `Set-Cookie` line that sets cookie `name`, if `resp` has one.
pub fn set_cookie_line<'a>(resp: &'a Resp, name: &str) -> Option<&'a str> {
    resp.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|line| line.split_once('=').is_some_and(|(n, _)| n.trim() == name))
}

/// The attributes of a `Set-Cookie` line (after `name=value`), names lower-cased, flags
/// (`HttpOnly`, `Secure`) mapped to "".
pub fn cookie_attributes(line: &str) -> BTreeMap<String, String> {
    line.split(';')
        .skip(1)
        .map(|attr| match attr.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_owned()),
            None => (attr.trim().to_ascii_lowercase(), String::new()),
        })
        .collect()
}

/// `url` without its query and fragment.
pub fn without_query(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// The query parameters of `url` (fragment excluded), decoded; panics on a repeated name.
pub fn query_params(url: &str) -> BTreeMap<String, String> {
    let before_fragment = url.split('#').next().unwrap_or_default();
    let query = before_fragment
        .split_once('?')
        .map_or("", |(_, query)| query);
    decode_params(query, url)
}

/// The parameters in the fragment of `url`, decoded; panics on a repeated name.
pub fn fragment_params(url: &str) -> BTreeMap<String, String> {
    let fragment = url.split_once('#').map_or("", |(_, fragment)| fragment);
    decode_params(fragment, url)
}

fn decode_params(encoded: &str, url: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(encoded.as_bytes()) {
        let previous = params.insert(name.into_owned(), value.into_owned());
        assert!(previous.is_none(), "repeated parameter in {url}");
    }
    params
}

/// The parameters of a code-flow authorization request with PKCE S256.
pub fn code_params<'a>(
    client_id: &'a str,
    redirect_uri: &'a str,
    scope: &'a str,
    state: &'a str,
    pkce: &'a Pkce,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", scope),
        ("state", state),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// `params` as a query string.
pub fn authorize_query(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// A user agent on one gateway node: keeps cookies, never follows redirects by itself.
pub struct Agent {
    /// `http://127.0.0.1:PORT` of the node it talks to; change it to move to another node
    /// with the same cookies.
    pub base: String,
    pub jar: CookieJar,
}

impl Agent {
    pub fn new(base: &str) -> Agent {
        Agent {
            base: base.to_owned(),
            jar: CookieJar::default(),
        }
    }

    fn absolute(&self, target: &str) -> String {
        if target.starts_with("http://") || target.starts_with("https://") {
            target.to_owned()
        } else {
            assert!(target.starts_with('/'), "not a path: {target:?}");
            format!("{}{target}", self.base)
        }
    }

    fn cookie_headers(&self) -> Vec<(&'static str, String)> {
        self.jar
            .header()
            .map(|cookie| ("cookie", cookie))
            .into_iter()
            .collect()
    }

    /// `GET target` (a path on the node, or an absolute URL) with the jar's cookies.
    pub async fn get(&mut self, target: &str) -> Resp {
        let headers = self.cookie_headers();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let resp = send("GET", &self.absolute(target), &headers, "").await;
        self.jar.absorb(&resp);
        resp
    }

    /// `POST target` with a form body and the jar's cookies.
    pub async fn post(&mut self, target: &str, params: &[(String, String)]) -> Resp {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let mut headers = self.cookie_headers();
        headers.push(("content-type", "application/x-www-form-urlencoded".into()));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let resp = send("POST", &self.absolute(target), &headers, body).await;
        self.jar.absorb(&resp);
        resp
    }

    /// `GET /oauth/authorize?params`.
    pub async fn authorize(&mut self, params: &[(&str, &str)]) -> Resp {
        let target = format!("/oauth/authorize?{}", authorize_query(params));
        self.get(&target).await
    }

    /// Submits `form` as a browser would: its hidden inputs, then `fields`.
    pub async fn submit(&mut self, form: &Form, fields: &[(&str, &str)]) -> Resp {
        let mut params = form.hidden();
        params.extend(
            fields
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        self.post(&form.action, &params).await
    }

    /// Fills in and submits the login form of `page`.
    pub async fn login(&mut self, page: &Resp, username: &str, password: &str) -> Resp {
        let form = Form::posting_to(page, "/oauth/login");
        self.submit(&form, &[("username", username), ("password", password)])
            .await
    }

    /// Submits the consent form of `page` with `ticked` scopes (`None`: those checked on
    /// the page) and the `decision` button (`grant` or `deny`).
    pub async fn consent(&mut self, page: &Resp, ticked: Option<&[&str]>, decision: &str) -> Resp {
        let form = Form::posting_to(page, "/oauth/consent");
        let checked: Vec<String> = match ticked {
            Some(scopes) => scopes.iter().map(|s| (*s).to_owned()).collect(),
            None => form
                .checkboxes("scope")
                .iter()
                .filter(|b| b.attrs.contains_key("checked"))
                .filter_map(|b| b.attr("value").map(str::to_owned))
                .collect(),
        };
        let mut fields: Vec<(&str, &str)> = checked.iter().map(|s| ("scope", s.as_str())).collect();
        fields.push(("decision", decision));
        self.submit(&form, &fields).await
    }

    /// `GET` the `Location` of `resp` (a redirect within the gateway).
    pub async fn follow(&mut self, resp: &Resp) -> Resp {
        let location = location(resp).to_owned();
        self.get(&location).await
    }

    /// The whole user journey for `params`: authorize, log in as `username` when the login
    /// page shows, then decide on the consent page. Returns the final answer (normally the
    /// 303 back to the client).
    pub async fn approve(
        &mut self,
        params: &[(&str, &str)],
        username: &str,
        password: &str,
        ticked: Option<&[&str]>,
        decision: &str,
    ) -> Resp {
        let mut resp = self.authorize(params).await;
        if resp.status == 200 {
            resp = self.login(&resp, username, password).await;
        }
        assert_eq!(resp.status, 303, "expected a redirect to consent: {resp}");
        let page = self.follow(&resp).await;
        assert_eq!(page.status, 200, "consent page: {page}");
        self.consent(&page, ticked, decision).await
    }
}

/// The `Location` header; panics if absent.
pub fn location(resp: &Resp) -> &str {
    resp.header("location")
        .unwrap_or_else(|| panic!("no Location in {resp}"))
}

/// Registers the clients the authorization tests use; every redirect URI is on the
/// fixture's upstream (`/callback`, `/callback2`), which answers anything with 200.
/// - `webapp`: confidential, name "WebApp" 2.1, code + refresh, two redirect URIs,
///   scopes reports, secret, publish.
/// - `webapp2`: confidential, code only, `/callback`, scope reports.
/// - `spa`: public, code + refresh, `/callback` only, scopes reports, secret.
/// - `implicit-app`: public, implicit only, `/callback`, scopes reports, secret.
/// - `ccapp`: confidential, client_credentials only (but a registered `/callback`).
pub fn add_auth_clients(c: &mut GatewayConfig) {
    let cb = format!("{}/callback", c.upstream);
    let cb2 = format!("{}/callback2", c.upstream);
    c.extra.push_str(&format!(
        "\n[[clients]]\nclient_id = \"webapp\"\nname = \"WebApp\"\nversion = \"2.1\"\n\
         description = \"Builds monthly reports\"\ntype = \"confidential\"\n\
         secret_hash = \"{}\"\nredirect_uris = [\"{cb}\", \"{cb2}\"]\n\
         grants = [\"authorization_code\", \"refresh_token\"]\n\
         scopes = [\"reports\", \"secret\", \"publish\"]\n",
        c.secret_hash
    ));
    let secret = format!("secret_hash = \"{}\"", c.secret_hash);
    let redirect = format!("redirect_uris = [\"{cb}\"]");
    c.extra.push_str(&client_toml(
        "webapp2",
        &secret,
        &["authorization_code"],
        &["reports"],
        &redirect,
    ));
    c.extra.push_str(&client_toml(
        "ccapp",
        &secret,
        &["client_credentials"],
        &["reports"],
        &redirect,
    ));
    let grants = ["authorization_code", "refresh_token"];
    c.add_public_client("spa", &[&cb], &grants, &["reports", "secret"]);
    c.add_public_client(
        "implicit-app",
        &[&cb],
        &["implicit"],
        &["reports", "secret"],
    );
}

impl Fixture {
    /// The `/callback` redirect URI of [`add_auth_clients`].
    pub fn callback(&self) -> String {
        format!("{}/callback", self.up.url())
    }

    /// A fresh user agent (no cookies) on this fixture's gateway.
    pub fn agent(&self) -> Agent {
        Agent::new(&self.gw.base_url())
    }

    /// Runs the code flow for `client_id` as alice with PKCE, every requested scope
    /// ticked, on `agent` (logging in only if it has no session yet); returns the code and
    /// the PKCE pair.
    pub async fn code_for(
        &self,
        agent: &mut Agent,
        client_id: &str,
        redirect_uri: &str,
        scope: &str,
    ) -> (String, Pkce) {
        let pkce = Pkce::random();
        let state = format!("st-{}", super::random_hex(6));
        let params = code_params(client_id, redirect_uri, scope, &state, &pkce);
        let resp = agent
            .approve(&params, "alice", &self.creds.password, None, "grant")
            .await;
        assert_eq!(resp.status, 303, "consent answer: {resp}");
        let back = location(&resp);
        assert_eq!(without_query(back), redirect_uri, "{resp}");
        let query = query_params(back);
        assert_eq!(query.get("state"), Some(&state), "state in {back}");
        let code = query
            .get("code")
            .unwrap_or_else(|| panic!("no code in {back}"))
            .clone();
        (code, pkce)
    }

    /// `grant_type=authorization_code` at this fixture's token endpoint: HTTP Basic with
    /// the shared secret when `confidential`, else `client_id` in the body.
    pub async fn exchange_code(
        &self,
        client_id: &str,
        confidential: bool,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
    ) -> Resp {
        exchange_code(
            &self.token_url(),
            client_id,
            confidential.then_some(self.creds.secret.as_str()),
            code,
            redirect_uri,
            verifier,
        )
        .await
    }

    /// After a code was replayed (`replay` is the replay's answer): the replay got
    /// `invalid_grant`, the first exchange's access token (`tokens`, of client `webapp`)
    /// stops working within one second, and its refresh token is refused.
    pub async fn assert_code_replay_revoked(&self, replay: &Resp, tokens: &serde_json::Value) {
        super::assert_error(replay, 400, "invalid_grant");
        let access = super::access_token(tokens);
        let took = super::time_until_status(
            &self.url("/abc/x"),
            &access,
            401,
            std::time::Duration::from_secs(1),
        )
        .await;
        assert!(
            took.is_some(),
            "the first exchange's access token survived the code's replay"
        );
        let refresh = [
            ("grant_type", "refresh_token"),
            ("refresh_token", &super::refresh_token(tokens)),
        ];
        super::assert_error(
            &self.token_request("webapp", &refresh).await,
            400,
            "invalid_grant",
        );
    }

    /// `POST /oauth/introspect` as `photoprint`.
    /// Introspection by `photoprint`, the fixture's main confidential client.
    pub async fn introspect(&self, token: &str) -> Resp {
        self.introspect_as("photoprint", token).await
    }

    /// Introspection by `client_id` (a confidential client with the fixture's secret).
    pub async fn introspect_as(&self, client_id: &str, token: &str) -> Resp {
        let basic = Some((client_id, self.creds.secret.as_str()));
        post_form(&self.url("/oauth/introspect"), &[("token", token)], basic).await
    }
}

/// `grant_type=authorization_code` at `token_url`; `secret` = HTTP Basic, `None` = public
/// client (`client_id` in the body).
pub async fn exchange_code(
    token_url: &str,
    client_id: &str,
    secret: Option<&str>,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> Resp {
    let mut params = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
    ];
    if let Some(verifier) = verifier {
        params.push(("code_verifier", verifier));
    }
    match secret {
        Some(secret) => post_form(token_url, &params, Some((client_id, secret))).await,
        None => {
            params.push(("client_id", client_id));
            post_form(token_url, &params, None).await
        }
    }
}
