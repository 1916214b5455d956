//! Explain: a method, a path and a token → what the gateway would answer and why, from
//! `admin::explain` (the API's `GET /admin/explain`). The token is posted, never put in a
//! URL, and the answer page is not cached.

use hyper::{Response, StatusCode};
use serde_json::Value;

use super::page::{Nav, csrf, esc, page, text};
use super::{BASE, Console, Form};
use crate::admin::explain;
use crate::error::Body;

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn form_html(c: &Console<'_>, method: &str, path: &str) -> String {
    let options: String = METHODS
        .iter()
        .map(|m| {
            let sel = if *m == method { " selected" } else { "" };
            format!("<option{sel}>{m}</option>")
        })
        .collect();
    format!(
        "<h1>Explain a decision</h1><p class=\"note\">Would this token be let through to this path, and why?</p>\
<form method=\"post\" action=\"{BASE}/explain\">{}<div class=\"bar\">\
<div><label for=\"method\">Method</label><select id=\"method\" name=\"method\">{options}</select></div>\
<div style=\"flex:1\"><label for=\"path\">Path</label><input type=\"text\" id=\"path\" name=\"path\" value=\"{}\" placeholder=\"/abc/1\"></div></div>\
<label for=\"token\">Token</label><input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\">\
<button type=\"submit\">Explain</button></form>",
        csrf(c),
        esc(path)
    )
}

pub fn form(c: &Console<'_>) -> Response<Body> {
    page(
        c,
        StatusCode::OK,
        "Explain",
        Nav::Explain,
        &form_html(c, "GET", ""),
    )
}

pub async fn run(c: &Console<'_>, f: &Form) -> Response<Body> {
    let method = f.text("method");
    let path = f.text("path");
    let token = Some(f.text("token")).filter(|t| !t.is_empty());
    let reply = explain::explain(
        c.gateway,
        Some(method),
        if path.is_empty() { "/" } else { path },
        token,
    )
    .await;
    let e = &reply.body;
    let allowed = e["allowed"] == true;
    let verdict = format!(
        "<p class=\"{}\" id=\"verdict\"><strong>{} ({})</strong>: {}</p>",
        if allowed { "ok" } else { "error" },
        if allowed { "Allowed" } else { "Refused" },
        e["status"],
        esc(&text(&e["reason"]))
    );
    let row =
        |label: &str, v: &Value| format!("<tr><th>{label}</th><td>{}</td></tr>", esc(&describe(v)));
    let html = format!(
        "{}<h2>Decision</h2>{verdict}<table>{}{}{}{}{}</table>",
        form_html(c, method, path),
        row(
            "Request",
            &Value::String(format!("{} {}", text(&e["method"]), text(&e["path"])))
        ),
        row("Normalised path", &e["normalized_path"]),
        row("Route", &e["route"]),
        row("Allowed by", &e["allowed_by"]),
        row("Token", &e["token"]),
    );
    page(c, StatusCode::OK, "Explain", Nav::Explain, &html)
}

/// An object as `key: value, …`; anything else as text.
fn describe(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}: {}", text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => text(other),
    }
}
