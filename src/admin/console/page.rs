//! The console's page chrome and HTML helpers: the layout with its navigation, the styles
//! (in the page, no external assets), the copy button's few lines of script, and an admin
//! action's error placed next to the form field it is about.

use std::sync::OnceLock;

use base64::Engine;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use sha2::{Digest, Sha256};

use super::{BASE, Console};
use crate::admin::AdminError;
use crate::error::Body;
pub use crate::oauth::pages::escape as esc;
use crate::oauth::pages::html_response;

const STYLE: &str = "*{box-sizing:border-box}body{font-family:system-ui,sans-serif;background:#f4f5f7;\
color:#1d2330;margin:0;font-size:15px}header{background:#1d2330;color:#fff;display:flex;align-items:center;\
gap:1.4rem;padding:.7rem 1.5rem}header b{font-size:1.05rem}header a{color:#c9d3ea;text-decoration:none}\
header a.on{color:#fff;border-bottom:2px solid #6f95ff}header .who{margin-left:auto;color:#c9d3ea}\
header form{margin:0}header button{margin:0;padding:.3rem .7rem;font-size:.85rem;background:#394256}\
main{max-width:1100px;margin:1.5rem auto;background:#fff;padding:1.4rem 1.8rem;border-radius:10px;\
box-shadow:0 2px 12px rgba(0,0,0,.08)}h1{font-size:1.3rem;margin:0 0 1rem}h2{font-size:1.05rem;margin:1.6rem 0 .6rem}\
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{text-align:left;padding:.45rem .55rem;\
border-bottom:1px solid #e3e6ec;vertical-align:top}th{background:#f0f2f6;font-weight:600}\
td.actions{white-space:nowrap}td.actions form{display:inline}label{display:block;margin:.8rem 0 .25rem;font-weight:600}\
input[type=text],input[type=password],input[type=number],select,textarea{width:100%;max-width:34rem;padding:.45rem;\
border:1px solid #c4c9d4;border-radius:6px;font:inherit}textarea{min-height:4.5rem}\
.checks label{display:inline-block;font-weight:400;margin:.2rem 1rem .2rem 0}\
button,.button{display:inline-block;margin-top:1rem;padding:.5rem 1rem;border:0;border-radius:6px;background:#2457d6;\
color:#fff;font:inherit;cursor:pointer;text-decoration:none}.small{margin:0;padding:.25rem .6rem;font-size:.85rem}\
.secondary{background:#e3e6ec;color:#1d2330}.danger{background:#b42318}.error{color:#b42318;background:#fef3f2;\
padding:.5rem .7rem;border-radius:6px}.field-error{color:#b42318;margin:.25rem 0;font-size:.9rem}\
.ok{color:#05603a;background:#ecfdf3;padding:.5rem .7rem;border-radius:6px}.note{color:#596172}\
.secret{font-family:ui-monospace,monospace;background:#fffbea;border:1px solid #f0d878;padding:.5rem .7rem;\
border-radius:6px;word-break:break-all;display:inline-block;max-width:100%}code{font-family:ui-monospace,monospace;\
background:#f0f2f6;padding:0 .25rem;border-radius:4px}.bar{display:flex;gap:.8rem;align-items:end;flex-wrap:wrap}\
.bar label{margin-top:0}.bar input,.bar select{width:14rem}.bar button{margin:0}.pill{padding:.05rem .45rem;\
border-radius:9px;font-size:.85rem;background:#e3e6ec}.pill.on{background:#d1fadf}.pill.off{background:#fee4e2}";

/// The copy buttons: hidden until this runs, so a browser without JavaScript shows none.
const SCRIPT: &str = "document.querySelectorAll('button[data-copy]').forEach(function(b){b.hidden=false;\
b.addEventListener('click',function(){var t=document.getElementById(b.dataset.copy).textContent;\
var done=function(){b.textContent='Copied'};if(navigator.clipboard){navigator.clipboard.writeText(t).then(done)}\
else{var r=document.createRange();r.selectNodeContents(document.getElementById(b.dataset.copy));\
var s=getSelection();s.removeAllRanges();s.addRange(r);document.execCommand('copy');done()}})});";

/// The login page's policy, plus the copy script by its hash (nothing else may run).
fn csp() -> HeaderValue {
    static CSP: OnceLock<String> = OnceLock::new();
    let csp = CSP.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT));
        format!("{}; script-src 'sha256-{hash}'", crate::oauth::pages::CSP)
    });
    HeaderValue::from_str(csp)
        .unwrap_or_else(|_| HeaderValue::from_static(crate::oauth::pages::CSP))
}

/// Which section of the navigation a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Clients,
    Tokens,
    Scopes,
    Credentials,
    Explain,
}

const SECTIONS: [(Nav, &str, &str); 5] = [
    (Nav::Clients, "clients", "Clients"),
    (Nav::Tokens, "tokens", "Tokens"),
    (Nav::Scopes, "scopes", "Scopes"),
    (Nav::Credentials, "credentials", "Credentials"),
    (Nav::Explain, "explain", "Explain"),
];

fn document(title: &str, header: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · Tollgate console</title><style>{STYLE}</style></head><body>{header}<main>{body}</main>\
<script>{SCRIPT}</script></body></html>",
        esc(title)
    )
}

/// A console page for the signed-in operator.
pub fn page(
    c: &Console<'_>,
    status: StatusCode,
    title: &str,
    nav: Nav,
    body: &str,
) -> Response<Body> {
    let mut header = String::from("<header><b>Tollgate console</b>");
    for (section, path, label) in SECTIONS {
        let on = if section == nav { " class=\"on\"" } else { "" };
        header.push_str(&format!("<a href=\"{BASE}/{path}\"{on}>{label}</a>"));
    }
    let role = if c.can_write() { "" } else { " (read-only)" };
    header.push_str(&format!(
        "<span class=\"who\">{}{role}</span><form method=\"post\" action=\"{BASE}/signout\">{}\
<button type=\"submit\" class=\"small\">Sign out</button></form></header>",
        esc(&c.who.username),
        csrf(c)
    ));
    html_response(status, document(title, &header, body), csp())
}

/// A page outside a session (sign-in, refusals).
pub fn bare(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let header = "<header><b>Tollgate console</b></header>";
    html_response(status, document(title, header, body), csp())
}

/// A page saying one thing, with a way back in.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    bare(
        status,
        title,
        &format!(
            "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"{BASE}/\">Back to the console</a></p>",
            esc(title),
            esc(text)
        ),
    )
}

/// An admin action's refusal as a page of `nav`'s section, with a way back to its list.
pub fn failed(c: &Console<'_>, nav: Nav, e: &crate::admin::AdminError) -> Response<Body> {
    let (_, path, label) = SECTIONS
        .iter()
        .find(|(section, _, _)| *section == nav)
        .copied()
        .unwrap_or(SECTIONS[0]);
    page(
        c,
        e.status,
        label,
        nav,
        &format!(
            "<h1>{label}</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"{BASE}/{path}\">All {}</a></p>",
            esc(&e.description),
            label.to_lowercase()
        ),
    )
}

pub fn not_found(c: &Console<'_>) -> Response<Body> {
    page(
        c,
        StatusCode::NOT_FOUND,
        "Not found",
        Nav::Clients,
        "<h1>Not found</h1><p>No such console page.</p>",
    )
}

pub fn store_down(e: crate::store::StoreError) -> Response<Body> {
    tracing::warn!(error = %e, "token store error on the console");
    let mut resp = message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Briefly unavailable",
        "The token store does not answer. Try again in a moment.",
    );
    resp.headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    resp
}

/// The hidden input every form carries.
pub fn csrf(c: &Console<'_>) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&c.who.csrf)
    )
}

/// A one-button POST form (refresh, enable, delete…).
pub fn button(
    c: &Console<'_>,
    action: &str,
    hidden: &[(&str, &str)],
    label: &str,
    class: &str,
) -> String {
    let fields: String = hidden
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(name),
                esc(value)
            )
        })
        .collect();
    format!(
        "<form method=\"post\" action=\"{}\">{}{fields}<button type=\"submit\" class=\"small {class}\">{}</button></form>",
        esc(action),
        csrf(c),
        esc(label)
    )
}

/// A secret or token shown this once, with a copy button (script) and the text selectable.
pub fn once(id: &str, label: &str, value: &str) -> String {
    format!(
        "<p><strong>{}</strong> (shown only now; copy it somewhere safe):</p>\
<p><span class=\"secret\" id=\"{id}\">{}</span> \
<button type=\"button\" class=\"small secondary\" data-copy=\"{id}\" hidden>Copy</button></p>",
        esc(label),
        esc(value)
    )
}

/// An admin action's error, placed next to the field it names (`name`, `redirect_uris`,
/// `paths`, …) or, when it names none of `fields`, at the top of the form.
pub struct Problem {
    pub field: Option<&'static str>,
    pub message: String,
}

impl Problem {
    pub fn of(e: &AdminError, fields: &[&'static str]) -> Problem {
        Problem {
            field: field_named(&e.description, fields),
            message: e.description.clone(),
        }
    }

    /// The message at the top of the form (when no field is named).
    pub fn top(p: Option<&Problem>) -> String {
        match p {
            Some(p) if p.field.is_none() => {
                format!("<p class=\"error\" role=\"alert\">{}</p>", esc(&p.message))
            }
            _ => String::new(),
        }
    }

    /// The message under field `name`, if it is about it.
    pub fn at(p: Option<&Problem>, name: &str) -> String {
        match p {
            Some(p) if p.field == Some(name) => format!(
                "<p class=\"field-error\" role=\"alert\" id=\"{name}-error\">{}</p>",
                esc(&p.message)
            ),
            _ => String::new(),
        }
    }
}

/// Which of `fields` a message is about: one quoted in backticks first, then one named as a
/// word, then by what the message says (`unknown grant` → `grants`, `pattern` → `paths`).
fn field_named(description: &str, fields: &[&'static str]) -> Option<&'static str> {
    let d = description.to_ascii_lowercase();
    if let Some(f) = fields.iter().find(|f| d.contains(&format!("`{f}`"))) {
        return Some(f);
    }
    let words: Vec<&str> = d
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    // "a client named X version Y exists": about the name, though it says "version" too.
    if words.contains(&"named") && fields.contains(&"name") {
        return Some("name");
    }
    if let Some(f) = fields.iter().find(|f| words.contains(f)) {
        return Some(f);
    }
    let hints: [(&str, &str); 7] = [
        ("grant", "grants"),
        ("client_credentials", "grants"),
        ("scope", "scopes"),
        ("redirect", "redirect_uris"),
        ("pattern", "paths"),
        ("logo", "logo_uri"),
        ("days", "days"),
    ];
    hints
        .iter()
        .find(|(hint, f)| words.iter().any(|w| w.starts_with(hint)) && fields.contains(f))
        .and_then(|(_, f)| fields.iter().find(|x| *x == f).copied())
}

/// `2026-12-02T18:29:12Z` as `2026-12-02 18:29 UTC`.
pub fn date(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => rfc3339.to_owned(),
    }
}

/// A JSON value as text: strings bare, lists comma separated, null as "—".
pub fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "—".into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_find_their_field() {
        let fields = [
            "name",
            "version",
            "redirect_uris",
            "grants",
            "scopes",
            "paths",
            "logo_uri",
        ];
        for (description, want) in [
            ("`name` is required", Some("name")),
            ("unknown grant \"x\"", Some("grants")),
            ("unknown scope \"nope\"", Some("scopes")),
            (
                "grants authorization_code and implicit need redirect_uris",
                Some("redirect_uris"),
            ),
            (
                "a client named \"A\" version \"1\" exists already",
                Some("name"),
            ),
            (
                "invalid path pattern \"x\": must start with /",
                Some("paths"),
            ),
            ("the store is down", None),
        ] {
            assert_eq!(field_named(description, &fields), want, "{description}");
        }
    }
}
