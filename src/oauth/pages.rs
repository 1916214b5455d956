//! The HTML pages of the authorization endpoint: login, consent and errors. Server-rendered,
//! no JavaScript, everything echoed is escaped, and every page refuses to be framed.

use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use crate::error::{Body, full};

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(s: &str) -> String {
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

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}\
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem 2.2rem;border-radius:10px;\
box-shadow:0 2px 12px rgba(0,0,0,.08)}h1{font-size:1.35rem;margin:0 0 1.2rem}\
label{display:block;margin:.8rem 0 .3rem;font-weight:600}input[type=text],input[type=password]\
{width:100%;box-sizing:border-box;padding:.55rem;border:1px solid #c4c9d4;border-radius:6px}\
button{margin-top:1.2rem;padding:.6rem 1.2rem;border:0;border-radius:6px;background:#2457d6;\
color:#fff;font-size:1rem;cursor:pointer}button.secondary{background:#e3e6ec;color:#1d2330;\
margin-left:.5rem}.error{color:#b42318;background:#fef3f2;padding:.6rem;border-radius:6px}\
.scope{display:flex;gap:.6rem;align-items:flex-start;margin:.6rem 0}.scope small{display:block;\
color:#596172}.client{color:#596172;margin:-.6rem 0 1rem}";

/// A complete page with the headers every authorization page carries.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    );
    html_response(status, html, HeaderValue::from_static(CSP))
}

/// The pages' Content-Security-Policy: nothing but inline styles, never framed. No
/// form-action: the consent form's answer redirects to the client's own origin.
pub const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML page with the headers every page of Tollgate carries (the console's too): never
/// cached, never framed, no sniffing, no referrer, and `csp`.
pub fn html_response(status: StatusCode, html: String, csp: HeaderValue) -> Response<Body> {
    let mut resp = Response::new(full(html));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("content-security-policy", csp);
    resp
}

/// An error that must not go back to the client (bad client or redirect URI).
pub fn error_page(status: StatusCode, message: &str) -> Response<Body> {
    page(
        status,
        "Authorization error",
        &format!(
            "<h1>Authorization error</h1><p class=\"error\" role=\"alert\">{}</p>\
<p>Return to the application and try again.</p>",
            escape(message)
        ),
    )
}

pub struct Login<'a> {
    pub action: &'a str,
    pub request: &'a str,
    pub csrf: &'a str,
    pub client_name: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

pub fn login(status: StatusCode, l: &Login<'_>) -> Response<Body> {
    let error = l
        .error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        status,
        "Sign in",
        &format!(
            "<h1>Sign in</h1><p class=\"client\">to continue to {client}</p>{error}\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"request\" value=\"{request}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"username\">Username</label>\
<input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" autocomplete=\"username\" required autofocus>\
<label for=\"password\">Password</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Sign in</button></form>",
            client = escape(l.client_name),
            action = escape(l.action),
            request = escape(l.request),
            csrf = escape(l.csrf),
            username = escape(l.username),
        ),
    )
}

pub struct Consent<'a> {
    pub action: &'a str,
    pub request: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub client_name: &'a str,
    pub client_version: &'a str,
    pub client_description: &'a str,
    /// (name, description) of each scope asked for.
    pub scopes: Vec<(&'a str, &'a str)>,
}

pub fn consent(c: &Consent<'_>) -> Response<Body> {
    let mut scopes = String::new();
    for (i, (name, description)) in c.scopes.iter().enumerate() {
        scopes.push_str(&format!(
            "<div class=\"scope\"><input type=\"checkbox\" id=\"scope{i}\" name=\"scope\" value=\"{n}\" checked>\
<label for=\"scope{i}\" style=\"margin:0\">{n}<small>{d}</small></label></div>",
            n = escape(name),
            d = escape(description),
        ));
    }
    let version = if c.client_version.is_empty() {
        String::new()
    } else {
        format!(" {}", escape(c.client_version))
    };
    page(
        StatusCode::OK,
        "Grant access",
        &format!(
            "<h1>{client}{version} wants access</h1>\
<p class=\"client\">{description}</p>\
<p>Signed in as <strong>{user}</strong>. Untick anything you do not want to share.</p>\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"request\" value=\"{request}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{scopes}\
<button type=\"submit\" name=\"decision\" value=\"grant\">Grant access</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>",
            client = escape(c.client_name),
            description = escape(c.client_description),
            user = escape(c.username),
            action = escape(c.action),
            request = escape(c.request),
            csrf = escape(c.csrf),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<script>alert("x&'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&amp;&#39;y&#39;)&lt;/script&gt;"
        );
    }
}
