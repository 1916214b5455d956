//! Tokens (seed 002's Token Management): the list filtered by client and user, add a token
//! for a client (shown once), delete one with its refresh token. All through `admin::tokens`.

use hyper::{Response, StatusCode};
use serde_json::{Map, Value};

use super::page::{Nav, Problem, csrf, date, esc, once, page, text};
use super::session::see_other;
use super::{BASE, Console, Form, encode};
use crate::admin::{AdminError, clients, tokens};
use crate::error::Body;

const FIELDS: [&str; 3] = ["client_id", "scope", "days"];

/// (client_id, "name version") of every client, for the pickers.
async fn client_options(c: &Console<'_>) -> Vec<(String, String)> {
    let Ok(reply) = clients::list(c.gateway).await else {
        return Vec::new();
    };
    reply.body["clients"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|cl| {
                    let id = text(&cl["client_id"]);
                    let name = format!("{} {}", text(&cl["name"]), text(&cl["version"]));
                    (id, name.trim().to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn client_select(options: &[(String, String)], current: &str, any: bool) -> String {
    let mut out = String::from("<select id=\"client_id\" name=\"client_id\">");
    if any {
        out.push_str("<option value=\"\">any client</option>");
    }
    for (id, name) in options {
        let sel = if id == current { " selected" } else { "" };
        out.push_str(&format!(
            "<option value=\"{}\"{sel}>{} ({})</option>",
            esc(id),
            esc(name),
            esc(id)
        ));
    }
    out + "</select>"
}

pub async fn list(c: &Console<'_>, q: &Form) -> Response<Body> {
    let (client, user) = (q.text("client_id"), q.text("username"));
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            [("client_id", client), ("username", user)]
                .iter()
                .filter(|(_, v)| !v.is_empty()),
        )
        .finish();
    let options = client_options(c).await;
    let mut rows = String::new();
    let alert = match tokens::list(c.gateway, Some(&query)).await {
        Ok(reply) => {
            for t in reply.body["tokens"].as_array().cloned().unwrap_or_default() {
                let expiry = if t["expired"] == true {
                    "Expired".to_owned()
                } else {
                    match t["expires_at"].as_str() {
                        Some(at) => date(at),
                        None => "Lifetime".to_owned(),
                    }
                };
                let left = match t["refreshes_left"].as_u64() {
                    Some(n) => n.to_string(),
                    None => "Unlimited".to_owned(),
                };
                let delete = if c.can_write() {
                    format!(
                        "<a class=\"button small danger\" href=\"{BASE}/tokens/{}/delete\">Delete…</a>",
                        encode(&text(&t["id"]))
                    )
                } else {
                    String::new()
                };
                // The client's name where it is known (a deleted client's tokens are gone),
                // its id underneath.
                let id = text(&t["client_id"]);
                let name = options
                    .iter()
                    .find(|(known, _)| *known == id)
                    .map_or("", |(_, name)| name.as_str());
                rows.push_str(&format!(
                    "<tr><td>{}<br><small class=\"note\">{}</small></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"actions\">{delete}</td></tr>",
                    esc(name),
                    esc(&id),
                    esc(&text(&t["username"])),
                    esc(&text(&t["scope"])),
                    esc(&date(&text(&t["issued_at"]))),
                    esc(&expiry),
                    esc(&left),
                ));
            }
            String::new()
        }
        Err(e) => format!(
            "<p class=\"error\" role=\"alert\">{}</p>",
            esc(&e.description)
        ),
    };
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"7\" class=\"note\">No tokens.</td></tr>");
    }
    let add = if c.can_write() {
        format!("<a class=\"button\" href=\"{BASE}/new/token\">Add token</a>")
    } else {
        String::new()
    };
    let flash = if q.get("deleted").is_some() {
        "<p class=\"ok\">Token deleted: the access token and its refresh token are revoked on every node.</p>"
    } else {
        ""
    };
    let body = format!(
        "<h1>Tokens</h1>{flash}{alert}<form method=\"get\" action=\"{BASE}/tokens\" class=\"bar\">\
<div><label for=\"client_id\">Client</label>{}</div>\
<div><label for=\"username\">User</label><input type=\"text\" id=\"username\" name=\"username\" value=\"{}\"></div>\
<button type=\"submit\" class=\"secondary\">Filter</button>{add}</form>\
<table><thead><tr><th>Client</th><th>User</th><th>Scope</th><th>Issued</th><th>Expiry</th><th>Refreshes left</th><th></th></tr></thead>\
<tbody>{rows}</tbody></table>",
        client_select(&options, client, true),
        esc(user)
    );
    page(c, StatusCode::OK, "Tokens", Nav::Tokens, &body)
}

pub async fn new(c: &Console<'_>, q: &Form) -> Response<Body> {
    let mut values = Map::new();
    values.insert("client_id".into(), q.text("client_id").into());
    values.insert("days".into(), "30".into());
    add_page(c, &values, None, StatusCode::OK).await
}

async fn add_page(
    c: &Console<'_>,
    v: &Map<String, Value>,
    p: Option<&Problem>,
    status: StatusCode,
) -> Response<Body> {
    let options = client_options(c).await;
    let get = |k: &str| match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let body = format!(
        "<h1>Add token</h1><form method=\"post\" action=\"{BASE}/tokens\">{}{}\
<label for=\"client_id\">Client</label>{}{}\
<label for=\"scope\">Scope (space separated; empty = all the client may have)</label>\
<input type=\"text\" id=\"scope\" name=\"scope\" value=\"{}\">{}\
<label for=\"days\">Days valid</label><input type=\"number\" id=\"days\" name=\"days\" min=\"1\" value=\"{}\">{}\
<button type=\"submit\">Add token</button></form>",
        csrf(c),
        Problem::top(p),
        client_select(&options, &get("client_id"), false),
        Problem::at(p, "client_id"),
        esc(&get("scope")),
        Problem::at(p, "scope"),
        esc(&get("days")),
        Problem::at(p, "days"),
    );
    page(c, status, "Add token", Nav::Tokens, &body)
}

pub async fn issue(c: &Console<'_>, f: &Form) -> Response<Body> {
    let mut body = Map::new();
    body.insert("client_id".into(), f.text("client_id").into());
    if !f.text("scope").is_empty() {
        body.insert("scope".into(), f.text("scope").into());
    }
    let days = f.text("days");
    // A number for the API; anything else as given, so its own message explains the rule.
    body.insert(
        "days".into(),
        days.parse::<u64>()
            .map_or_else(|_| Value::from(days), Value::from),
    );
    match tokens::issue(c.gateway, body.clone()).await {
        Ok(reply) => {
            let t = &reply.body;
            let expires = t["expires_at"].as_str().map_or("never".to_owned(), date);
            let html = format!(
                "<h1>Token added</h1>{}<table><tr><th>Client</th><td>{}</td></tr><tr><th>Scope</th><td>{}</td></tr>\
<tr><th>Expires</th><td>{}</td></tr></table><p class=\"note\">Send it as <code>Authorization: Bearer &lt;token&gt;</code>.</p>\
<p><a class=\"button secondary\" href=\"{BASE}/tokens\">All tokens</a></p>",
                once(
                    "access-token",
                    "Access token",
                    t["access_token"].as_str().unwrap_or_default()
                ),
                esc(f.text("client_id")),
                esc(&text(&t["scope"])),
                esc(&expires),
            );
            page(c, StatusCode::CREATED, "Token added", Nav::Tokens, &html)
        }
        Err(e) => add_page(c, &body, Some(&Problem::of(&e, &FIELDS)), e.status).await,
    }
}

pub fn confirm_delete(c: &Console<'_>, id: &str, error: Option<&AdminError>) -> Response<Body> {
    let alert = error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\">{}</p>",
                esc(&e.description)
            )
        })
        .unwrap_or_default();
    let html = format!(
        "<h1>Delete this token?</h1>{alert}<p>The access token and the refresh token issued with it are revoked on every node.</p>\
<form method=\"post\" action=\"{BASE}/tokens/{}/delete\">{}<button type=\"submit\" class=\"danger\">Delete</button> \
<a class=\"button secondary\" href=\"{BASE}/tokens\">Cancel</a></form>",
        encode(id),
        csrf(c)
    );
    let status = error.map_or(StatusCode::OK, |e| e.status);
    page(c, status, "Delete token", Nav::Tokens, &html)
}

pub async fn delete(c: &Console<'_>, id: &str) -> Response<Body> {
    match tokens::delete(c.gateway, id).await {
        Ok(_) => see_other(&format!("{BASE}/tokens?deleted=1")),
        Err(e) => confirm_delete(c, id, Some(&e)),
    }
}
