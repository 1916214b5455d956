//! Credentials (seed 001's credential page): each outbound credential's status, "Refresh
//! now", "Connect" (authorization_code: off to the provider's consent page, whose callback
//! stores the tokens and sends the browser back here) and "Disconnect". All through
//! `admin::credentials`.

use hyper::{Response, StatusCode};

use super::page::{Nav, button, csrf, date, esc, page, text};
use super::session::see_other;
use super::{BASE, Console, Form, encode};
use crate::admin::{AdminError, credentials};
use crate::error::Body;

/// The list, with `flash` (an outcome of the last action) above it.
pub async fn list(c: &Console<'_>, flash: Option<(bool, String)>) -> Response<Body> {
    let reply = match credentials::list(c.gateway) {
        Ok(r) => r,
        Err(e) => return failed(c, &e),
    };
    let mut rows = String::new();
    for cr in reply.body["credentials"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let name = text(&cr["name"]);
        let at = |k: &str| cr[k].as_str().map_or("—".to_owned(), date);
        let mut actions = String::new();
        if c.can_write() {
            let path = format!("{BASE}/credentials/{}", encode(&name));
            actions.push_str(&button(
                c,
                &format!("{path}/refresh"),
                &[],
                "Refresh now",
                "secondary",
            ));
            if cr["grant"] == "authorization_code" && cr["per_user"] != true {
                actions.push_str(&button(c, &format!("{path}/connect"), &[], "Connect", ""));
            }
            actions.push_str(&format!(
                "<a class=\"button small danger\" href=\"{path}/disconnect\">Disconnect…</a>"
            ));
        }
        let status = text(&cr["status"]);
        let pill = match status.as_str() {
            "ok" => "on",
            "failing" => "off",
            _ => "",
        };
        rows.push_str(&format!(
            "<tr><td><strong>{}</strong><br><small class=\"note\">{}</small></td><td>{}</td><td><span class=\"pill {pill}\">{}</span></td>\
<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"actions\">{actions}</td></tr>",
            esc(&name),
            esc(&text(&cr["token_url"])),
            esc(&text(&cr["grant"])),
            esc(&status),
            esc(&at("expires_at")),
            esc(&at("last_refresh_at")),
            esc(&text(&cr["last_error"])),
            if cr["per_user"] == true {
                format!("{} connected", cr["connected_users"])
            } else {
                "shared".into()
            },
        ));
    }
    if rows.is_empty() {
        rows.push_str(
            "<tr><td colspan=\"8\" class=\"note\">No [[credentials]] in gateway.toml.</td></tr>",
        );
    }
    let flash = match flash {
        Some((true, m)) => format!("<p class=\"ok\">{}</p>", esc(&m)),
        Some((false, m)) => format!("<p class=\"error\" role=\"alert\">{}</p>", esc(&m)),
        None => String::new(),
    };
    let body = format!(
        "<h1>Outbound credentials</h1>{flash}<p class=\"note\">Tokens Tollgate holds for upstreams ([[credentials]] in gateway.toml). Tokens and secrets are never shown.</p>\
<table><thead><tr><th>Name</th><th>Grant</th><th>Status</th><th>Expires</th><th>Last refresh</th><th>Last error</th><th>Users</th><th></th></tr></thead>\
<tbody>{rows}</tbody></table>"
    );
    page(c, StatusCode::OK, "Credentials", Nav::Credentials, &body)
}

fn failed(c: &Console<'_>, e: &AdminError) -> Response<Body> {
    super::page::failed(c, Nav::Credentials, e)
}

pub async fn refresh(c: &Console<'_>, name: &str) -> Response<Body> {
    match credentials::refresh(c.gateway, name).await {
        Ok(reply) if reply.status.is_success() => {
            list(c, Some((true, format!("{name}: new token fetched.")))).await
        }
        Ok(reply) => {
            let why = text(&reply.body["last_error"]);
            list(
                c,
                Some((false, format!("{name}: the token request failed: {why}"))),
            )
            .await
        }
        Err(e) => failed(c, &e),
    }
}

/// Off to the provider's consent page; its callback (`{oauth.path}/callback` on the public
/// listener) stores the tokens and sends the browser back to this list.
pub async fn connect(c: &Console<'_>, name: &str) -> Response<Body> {
    // Back to this page when the provider is done (the public callback sends the browser
    // here), with the outcome above the list.
    let back = c
        .origin()
        .map(|o| format!("{o}{BASE}/credentials?connected={}", encode(name)));
    match credentials::authorize(c.gateway, name, back.as_deref()).await {
        Ok(reply) => match reply.body["authorize_url"].as_str() {
            Some(url) => see_other(url),
            None => list(c, Some((false, "no authorize URL".into()))).await,
        },
        Err(e) => list(c, Some((false, format!("{name}: {}", e.description)))).await,
    }
}

pub fn confirm_disconnect(c: &Console<'_>, name: &str) -> Response<Body> {
    let html = format!(
        "<h1>Disconnect {}?</h1><p>The stored tokens are forgotten; routes using this credential get 502 until it is connected or fetches a token again.</p>\
<form method=\"post\" action=\"{BASE}/credentials/{}/disconnect\">{}\
<label for=\"username\">Only this user (per-user credentials; empty = all)</label><input type=\"text\" id=\"username\" name=\"username\">\
<button type=\"submit\" class=\"danger\">Disconnect</button> <a class=\"button secondary\" href=\"{BASE}/credentials\">Cancel</a></form>",
        esc(name),
        encode(name),
        csrf(c)
    );
    page(c, StatusCode::OK, "Disconnect", Nav::Credentials, &html)
}

pub async fn disconnect(c: &Console<'_>, name: &str, f: &Form) -> Response<Body> {
    let user = f.text("username");
    let query = (!user.is_empty()).then(|| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("username", user)
            .finish()
    });
    match credentials::forget(c.gateway, name, query.as_deref()).await {
        Ok(_) => list(c, Some((true, format!("{name}: stored tokens forgotten.")))).await,
        Err(e) => failed(c, &e),
    }
}
