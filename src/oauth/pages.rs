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
color:#596172}.client{color:#596172;margin:-.6rem 0 1rem}\
.logo{display:block;width:64px;height:64px;object-fit:contain;margin:0 0 1rem}";

/// A complete page with the headers every authorization page carries.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    page_with_csp(status, title, body, HeaderValue::from_static(CSP))
}

fn page_with_csp(status: StatusCode, title: &str, body: &str, csp: HeaderValue) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    );
    html_response(status, html, csp)
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

/// `scheme://host[:port]` of a logo URL, fit to stand as a CSP source: only host names and
/// IP literals (a reg-name may hold `;` or `,`, which would end the directive), else `None`.
fn logo_origin(uri: &str) -> Option<String> {
    let u = uri.parse::<hyper::Uri>().ok()?;
    let scheme = u.scheme_str().filter(|s| matches!(*s, "https" | "http"))?;
    let host = u.host()?;
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-');
    let ip6 = |b: u8| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'[' | b']');
    if host.is_empty() || !host.bytes().all(|b| plain(b) || ip6(b)) {
        return None;
    }
    Some(match u.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
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
    /// The client's `logo_uri` (an absolute http(s) URL, checked when registered).
    pub logo_uri: Option<&'a str>,
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
    // The logo may load from its own origin and nowhere else. `img-src https: http:` would
    // let any markup that slipped through escaping fetch from (beacon to) any host; one
    // origin is all a logo needs. No logo, no image source at all.
    let (logo, csp) = match c.logo_uri.and_then(|u| Some((u, logo_origin(u)?))) {
        Some((uri, origin)) => {
            let csp = format!("{CSP}; img-src {origin}");
            match HeaderValue::from_str(&csp) {
                Ok(csp) => (
                    format!(
                        "<img class=\"logo\" src=\"{}\" alt=\"{}\" width=\"64\" height=\"64\">",
                        escape(uri),
                        escape(c.client_name)
                    ),
                    csp,
                ),
                Err(_) => (String::new(), HeaderValue::from_static(CSP)),
            }
        }
        None => (String::new(), HeaderValue::from_static(CSP)),
    };
    page_with_csp(
        StatusCode::OK,
        "Grant access",
        &format!(
            "{logo}<h1>{client}{version} wants access</h1>\
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
        csp,
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

    #[test]
    fn logo_origins() {
        let table: &[(&str, Option<&str>)] = &[
            (
                "https://cdn.example.com/a/logo.png?v=1",
                Some("https://cdn.example.com"),
            ),
            (
                "http://127.0.0.1:8000/logo.png",
                Some("http://127.0.0.1:8000"),
            ),
            ("https://[::1]:8443/l.png", Some("https://[::1]:8443")),
            ("https://a;script-src*/x.png", None),
            ("https://a,b/x.png", None),
            ("ftp://example.com/x.png", None),
            ("/relative.png", None),
        ];
        for (uri, want) in table {
            assert_eq!(logo_origin(uri).as_deref(), *want, "{uri}");
        }
    }
}
