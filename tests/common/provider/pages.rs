//! The provider's authorization pages: `GET /authorize` shows a consent form, `POST
//! /authorize/decide` turns "Allow" into a code bound to the redirect URI and the PKCE
//! challenge and redirects back. No login step: the form carries the user name.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{HeaderValue, LOCATION};

use super::state::Code;
use super::{Answer, PROVIDER_CLIENT_ID, PROVIDER_USER, Shared, lock, respond};
use crate::common::random_token;

/// What `Mode::Html` answers on the token endpoints: what a provider behind a login wall or
/// at a wrong URL sends.
pub(super) const LOGIN_WALL: &str = "<!doctype html><html><head><title>Sign in</title></head>\
    <body><h1>Please sign in</h1><form method=\"post\" action=\"/login\"></form></body></html>";

/// The request fields the consent form carries on to `/authorize/decide`.
const CARRIED: [&str; 6] = [
    "client_id",
    "redirect_uri",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
];

/// `GET /authorize`: records the query, checks the client and PKCE method, shows the form.
pub(super) fn authorize(state: &Shared, parts: &hyper::http::request::Parts) -> Answer {
    let params: BTreeMap<String, String> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    lock(state).authorize_requests.push(params.clone());
    if params.get("response_type").map(String::as_str) != Some("code") {
        return error_page("response_type must be code");
    }
    if let Err(problem) = check(&params) {
        return error_page(problem);
    }
    let hidden: String = CARRIED
        .iter()
        .filter_map(|name| Some((name, params.get(*name)?)))
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
                escape(value)
            )
        })
        .collect();
    let scope = params.get("scope").map_or("", String::as_str);
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Provider: allow access</title></head>\n\
         <body><h1>Allow {client} to use your account?</h1><p>Scope: {scope}</p>\n\
         <form method=\"POST\" action=\"/authorize/decide\">\n{hidden}\
         <label>User <input type=\"text\" name=\"user\" value=\"{PROVIDER_USER}\"></label>\n\
         <button name=\"decision\" value=\"allow\">Allow</button>\n\
         <button name=\"decision\" value=\"deny\">Deny</button>\n</form></body></html>\n",
        client = escape(PROVIDER_CLIENT_ID),
        scope = escape(scope),
    );
    respond(StatusCode::OK, "text/html; charset=utf-8", page)
}

/// `POST /authorize/decide`: on "allow", a single-use code; a redirect either way.
pub(super) fn decide(state: &Shared, body: &Bytes) -> Answer {
    let params: BTreeMap<String, String> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Err(problem) = check(&params) {
        return error_page(problem);
    }
    let get = |name: &str| params.get(name).cloned();
    let redirect_uri = get("redirect_uri").unwrap_or_default();
    let mut query = form_urlencoded::Serializer::new(String::new());
    if get("decision").as_deref() == Some("allow") {
        let code = random_token();
        lock(state).codes.insert(
            code.clone(),
            Code {
                redirect_uri: redirect_uri.clone(),
                challenge: get("code_challenge").unwrap_or_default(),
                scope: get("scope"),
                user: get("user")
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| PROVIDER_USER.to_owned()),
            },
        );
        query.append_pair("code", &code);
    } else {
        query.append_pair("error", "access_denied");
    }
    if let Some(state) = get("state") {
        query.append_pair("state", &state);
    }
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let target = format!("{redirect_uri}{separator}{}", query.finish());
    let Ok(location) = HeaderValue::from_str(&target) else {
        return error_page("redirect_uri is not a valid header value");
    };
    let mut answer = respond(StatusCode::FOUND, "text/plain", "");
    answer.headers_mut().insert(LOCATION, location);
    answer
}

/// The checks both steps make: the client is ours, PKCE is S256, a redirect URI is given.
fn check(params: &BTreeMap<String, String>) -> Result<(), &'static str> {
    let get = |name: &str| params.get(name).map(String::as_str);
    if get("client_id") != Some(PROVIDER_CLIENT_ID) {
        return Err("unknown client_id");
    }
    if get("code_challenge_method") != Some("S256")
        || get("code_challenge").is_none_or(str::is_empty)
    {
        return Err("PKCE with code_challenge_method=S256 is required");
    }
    if get("redirect_uri").is_none_or(str::is_empty) {
        return Err("redirect_uri is required");
    }
    Ok(())
}

fn error_page(problem: &str) -> Answer {
    let page = format!(
        "<!doctype html>\n<html><head><title>Provider: bad request</title></head>\
         <body><h1>Bad authorization request</h1><p>{}</p></body></html>\n",
        escape(problem)
    );
    respond(StatusCode::BAD_REQUEST, "text/html; charset=utf-8", page)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
