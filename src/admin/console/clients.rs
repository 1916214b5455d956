//! Clients (seed 002's Client Registration): the list with a filter, add with every
//! `[[clients]]` field and the secret shown once, a client's page with its endpoint URLs,
//! edit, enable/disable, delete after a confirmation. All through `admin::clients`.

use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::page::{Nav, Problem, button, csrf, esc, once, page, text};
use super::session::see_other;
use super::{BASE, Console, Form, encode};
use crate::admin::{AdminError, clients};
use crate::config::{ADMIN_READ_SCOPE, ADMIN_SCOPE, INTROSPECT_SCOPE};
use crate::error::Body;

/// The form's fields, in the order errors are matched to them: the API's.
const FIELDS: [&str; 13] = crate::admin::CLIENT_FIELDS;
const GRANTS: [&str; 5] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    "implicit",
];

fn failed(c: &Console<'_>, e: &AdminError) -> Response<Body> {
    super::page::failed(c, Nav::Clients, e)
}

pub async fn list(c: &Console<'_>, q: &Form) -> Response<Body> {
    let reply = match clients::list(c.gateway).await {
        Ok(r) => r,
        Err(e) => return failed(c, &e),
    };
    let filter = q.text("q").to_lowercase();
    let mut rows = String::new();
    let all = reply.body["clients"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let shown: Vec<&Value> = all
        .iter()
        .filter(|cl| {
            filter.is_empty()
                || ["client_id", "name", "description"].iter().any(|k| {
                    cl[*k]
                        .as_str()
                        .is_some_and(|s| s.to_lowercase().contains(&filter))
                })
        })
        .collect();
    for cl in &shown {
        let id = cl["client_id"].as_str().unwrap_or_default();
        let enabled = cl["enabled"] != false;
        rows.push_str(&format!(
            "<tr><td><a href=\"{BASE}/clients/{}\">{}</a><br><small class=\"note\">{}</small></td><td>{}</td><td>{}</td>\
<td>{}</td><td>{}</td><td><span class=\"pill {}\">{}</span></td><td>{}</td></tr>",
            encode(id),
            esc(&text(&cl["name"])),
            esc(id),
            esc(&text(&cl["version"])),
            esc(&text(&cl["type"])),
            esc(&text(&cl["grants"])),
            esc(&text(&cl["scopes"])),
            if enabled { "on" } else { "off" },
            if enabled { "enabled" } else { "disabled" },
            esc(&text(&cl["source"])),
        ));
    }
    if shown.is_empty() {
        rows.push_str("<tr><td colspan=\"7\" class=\"note\">No clients match.</td></tr>");
    }
    let add = if c.can_write() {
        format!("<a class=\"button\" href=\"{BASE}/new/client\">Add client</a>")
    } else {
        String::new()
    };
    let flash = match q.get("deleted") {
        Some(id) => format!(
            "<p class=\"ok\">Client {} deleted; its tokens are revoked.</p>",
            esc(id)
        ),
        None => String::new(),
    };
    let body = format!(
        "<h1>Clients</h1>{flash}<form method=\"get\" action=\"{BASE}/clients\" class=\"bar\">\
<div><label for=\"q\">Filter</label><input type=\"text\" id=\"q\" name=\"q\" value=\"{}\" placeholder=\"name, id or description\"></div>\
<button type=\"submit\" class=\"secondary\">Filter</button>{add}</form>\
<table><thead><tr><th>Name</th><th>Version</th><th>Type</th><th>Grants</th><th>Scopes</th><th>Enabled</th><th>Defined in</th></tr></thead>\
<tbody>{rows}</tbody></table>",
        esc(q.text("q"))
    );
    page(c, StatusCode::OK, "Clients", Nav::Clients, &body)
}

/// Scope names a client may be given: the declared ones and the built-in ones.
async fn scope_choices(c: &Console<'_>) -> Vec<String> {
    let mut names = super::scope_names(c).await;
    for builtin in [ADMIN_SCOPE, ADMIN_READ_SCOPE, INTROSPECT_SCOPE] {
        names.push(builtin.to_owned());
    }
    names
}

pub async fn new(c: &Console<'_>) -> Response<Body> {
    let defaults = json!({"type": "confidential", "enabled": true, "grants": ["client_credentials"],
        "refresh_count": "unlimited", "token_response": "standard"});
    let values = defaults.as_object().cloned().unwrap_or_default();
    add_page(c, &values, None, StatusCode::OK).await
}

async fn add_page(
    c: &Console<'_>,
    values: &Map<String, Value>,
    problem: Option<&Problem>,
    status: StatusCode,
) -> Response<Body> {
    let choices = scope_choices(c).await;
    let form = client_form(
        c,
        &format!("{BASE}/clients"),
        values,
        true,
        problem,
        &choices,
    );
    page(
        c,
        status,
        "Add client",
        Nav::Clients,
        &format!("<h1>Add client</h1>{form}"),
    )
}

pub async fn create(c: &Console<'_>, f: &Form) -> Response<Body> {
    let body = body_of(f, true);
    match clients::create(c.gateway, body.clone()).await {
        Ok(reply) => {
            let cl = &reply.body;
            let id = cl["client_id"].as_str().unwrap_or_default();
            let secret = match cl["client_secret"].as_str() {
                Some(s) => once("client-secret", "Client secret", s),
                None => "<p class=\"note\">A public client has no secret.</p>".into(),
            };
            let html = format!(
                "<h1>Client {} created</h1><p>client_id: <code>{}</code></p>{secret}{}\
<p><a class=\"button secondary\" href=\"{BASE}/clients/{}\">Open the client</a></p>",
                esc(&text(&cl["name"])),
                esc(id),
                endpoints(c),
                encode(id)
            );
            page(
                c,
                StatusCode::CREATED,
                "Client created",
                Nav::Clients,
                &html,
            )
        }
        Err(e) => add_page(c, &body, Some(&Problem::of(&e, &FIELDS)), e.status).await,
    }
}

pub async fn show(c: &Console<'_>, id: &str, q: &Form) -> Response<Body> {
    match clients::show(c.gateway, id).await {
        Ok(reply) => {
            let values = reply.body.as_object().cloned().unwrap_or_default();
            let flash = if q.get("saved").is_some() {
                "<p class=\"ok\">Saved.</p>"
            } else {
                ""
            };
            detail(c, id, &values, &values, None, flash, StatusCode::OK).await
        }
        Err(e) => failed(c, &e),
    }
}

/// A client's page: its fields, endpoints, and (store clients, `admin`) the edit form.
async fn detail(
    c: &Console<'_>,
    id: &str,
    current: &Map<String, Value>,
    values: &Map<String, Value>,
    problem: Option<&Problem>,
    flash: &str,
    status: StatusCode,
) -> Response<Body> {
    let mut rows = String::new();
    for key in FIELDS {
        let v = current.get(key).unwrap_or(&Value::Null);
        rows.push_str(&format!(
            "<tr><th>{key}</th><td>{}</td></tr>",
            esc(&text(v))
        ));
    }
    let from_file = current.get("source").and_then(Value::as_str) == Some("file");
    let enabled = current.get("enabled") != Some(&Value::Bool(false));
    let manage = if from_file {
        "<p class=\"note\">Defined in gateway.toml: read-only here; change it in the file.</p>"
            .to_owned()
    } else if !c.can_write() {
        String::new()
    } else {
        let toggle = button(
            c,
            &format!("{BASE}/clients/{}/enabled", encode(id)),
            &[("enabled", if enabled { "false" } else { "true" })],
            if enabled { "Disable" } else { "Enable" },
            "secondary",
        );
        let choices = scope_choices(c).await;
        format!(
            "<div class=\"bar\" style=\"margin-top:1rem\">{toggle}<a class=\"button small danger\" href=\"{BASE}/clients/{}/delete\">Delete…</a></div>\
<h2>Edit</h2>{}",
            encode(id),
            client_form(
                c,
                &format!("{BASE}/clients/{}", encode(id)),
                values,
                false,
                problem,
                &choices
            )
        )
    };
    let html = format!(
        "<h1>{} <small class=\"note\">{}</small></h1>{flash}<table>{rows}</table><h2>Endpoints</h2>{}{manage}",
        esc(&text(current.get("name").unwrap_or(&Value::Null))),
        esc(id),
        endpoints(c)
    );
    page(c, status, "Client", Nav::Clients, &html)
}

/// The URLs a client's developer needs.
fn endpoints(c: &Console<'_>) -> String {
    let base = format!(
        "{}{}",
        c.rt.config.server.public_url, c.rt.config.oauth.path
    );
    format!(
        "<table><tr><th>Authorization endpoint</th><td><code>{b}/authorize</code></td></tr>\
<tr><th>Token endpoint</th><td><code>{b}/token</code></td></tr>\
<tr><th>Refresh-token endpoint</th><td><code>{b}/token</code> with <code>grant_type=refresh_token</code></td></tr></table>",
        b = esc(&base)
    )
}

pub async fn update(c: &Console<'_>, id: &str, f: &Form) -> Response<Body> {
    let body = body_of(f, false);
    match clients::update(c.gateway, id, body.clone()).await {
        Ok(_) => see_other(&format!("{BASE}/clients/{}?saved=1", encode(id))),
        Err(e) => match clients::show(c.gateway, id).await {
            Ok(current) => {
                let current = current.body.as_object().cloned().unwrap_or_default();
                let mut values = current.clone();
                values.extend(body);
                let problem = Problem::of(&e, &FIELDS);
                detail(c, id, &current, &values, Some(&problem), "", e.status).await
            }
            Err(_) => failed(c, &e),
        },
    }
}

pub async fn set_enabled(c: &Console<'_>, id: &str, f: &Form) -> Response<Body> {
    let mut body = Map::new();
    body.insert("enabled".into(), Value::Bool(f.text("enabled") == "true"));
    match clients::update(c.gateway, id, body).await {
        Ok(_) => see_other(&format!("{BASE}/clients/{}?saved=1", encode(id))),
        Err(e) => failed(c, &e),
    }
}

pub async fn confirm_delete(
    c: &Console<'_>,
    id: &str,
    error: Option<&AdminError>,
) -> Response<Body> {
    let name = match clients::show(c.gateway, id).await {
        Ok(r) => text(&r.body["name"]),
        Err(e) => return failed(c, &e),
    };
    let alert = error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\">{}</p>",
                esc(&e.description)
            )
        })
        .unwrap_or_default();
    let html = format!(
        "<h1>Delete client {}?</h1>{alert}<p>Client <code>{}</code> is removed on every node and <strong>every token issued to it is revoked</strong>. This cannot be undone (disable it instead to keep its tokens for later).</p>\
<form method=\"post\" action=\"{BASE}/clients/{}/delete\">{}<button type=\"submit\" class=\"danger\">Delete</button> \
<a class=\"button secondary\" href=\"{BASE}/clients/{}\">Cancel</a></form>",
        esc(&name),
        esc(id),
        encode(id),
        csrf(c),
        encode(id)
    );
    let status = error.map_or(StatusCode::OK, |e| e.status);
    page(c, status, "Delete client", Nav::Clients, &html)
}

pub async fn delete(c: &Console<'_>, id: &str) -> Response<Body> {
    match clients::delete(c.gateway, id).await {
        Ok(_) => see_other(&format!("{BASE}/clients?deleted={}", encode(id))),
        Err(e) => confirm_delete(c, id, Some(&e)).await,
    }
}

/// The form as the API's JSON (`creating`: also `client_id`, `name` and `type`, which
/// cannot change later).
fn body_of(f: &Form, creating: bool) -> Map<String, Value> {
    let mut m = Map::new();
    if creating {
        if !f.text("client_id").is_empty() {
            m.insert("client_id".into(), f.text("client_id").into());
        }
        m.insert("name".into(), f.text("name").into());
        m.insert("type".into(), f.text("type").into());
    }
    for key in ["version", "description", "logo_uri"] {
        m.insert(key.into(), f.text(key).into());
    }
    if !f.text("token_response").is_empty() {
        m.insert("token_response".into(), f.text("token_response").into());
    }
    let uris: Vec<Value> = f
        .text("redirect_uris")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(Value::from)
        .collect();
    m.insert("redirect_uris".into(), uris.into());
    m.insert("grants".into(), f.all("grants").into());
    m.insert("scopes".into(), f.all("scopes").into());
    if !f.text("access_token_ttl").is_empty() {
        m.insert("access_token_ttl".into(), f.text("access_token_ttl").into());
    }
    let count = f.text("refresh_count");
    m.insert(
        "refresh_count".into(),
        match count.parse::<u64>() {
            Ok(n) => n.into(),
            Err(_) if count.is_empty() => "unlimited".into(),
            Err(_) => count.to_lowercase().into(),
        },
    );
    m.insert("enabled".into(), f.get("enabled").is_some().into());
    m
}

fn s(values: &Map<String, Value>, key: &str) -> String {
    match values.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn list_of(values: &Map<String, Value>, key: &str) -> Vec<String> {
    values
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn client_form(
    c: &Console<'_>,
    action: &str,
    v: &Map<String, Value>,
    creating: bool,
    p: Option<&Problem>,
    scopes: &[String],
) -> String {
    let input = |name: &str, label: &str, hint: &str| {
        format!(
            "<label for=\"{name}\">{label}</label><input type=\"text\" id=\"{name}\" name=\"{name}\" value=\"{}\" placeholder=\"{hint}\">{}",
            esc(&s(v, name)),
            Problem::at(p, name)
        )
    };
    let checks = |name: &str, options: &[String], ticked: &[String]| {
        let mut out = format!("<div class=\"checks\" id=\"{name}\">");
        for o in options {
            let on = if ticked.contains(o) { " checked" } else { "" };
            out.push_str(&format!(
                "<label><input type=\"checkbox\" name=\"{name}\" value=\"{o}\"{on}> {o}</label>",
                o = esc(o)
            ));
        }
        out + "</div>" + &Problem::at(p, name)
    };
    let select = |name: &str, options: &[&str]| {
        let current = s(v, name);
        let opts: String = options
            .iter()
            .map(|o| {
                let sel = if current == *o { " selected" } else { "" };
                format!("<option value=\"{o}\"{sel}>{o}</option>")
            })
            .collect();
        format!(
            "<select id=\"{name}\" name=\"{name}\">{opts}</select>{}",
            Problem::at(p, name)
        )
    };
    let fixed = if creating {
        format!(
            "{}{}<label for=\"type\">Type</label>{}",
            input("name", "Name", "PhotoPrint"),
            input(
                "client_id",
                "Client id (optional; generated when empty)",
                "photoprint"
            ),
            select("type", &["confidential", "public"])
        )
    } else {
        String::new()
    };
    let grants: Vec<String> = GRANTS.iter().map(|g| (*g).to_owned()).collect();
    let enabled = if v.get("enabled") != Some(&Value::Bool(false)) {
        " checked"
    } else {
        ""
    };
    format!(
        "<form method=\"post\" action=\"{}\">{}{}{fixed}{}{}\
<label for=\"redirect_uris\">Redirect URIs (one per line)</label><textarea id=\"redirect_uris\" name=\"redirect_uris\">{}</textarea>{}\
<label>Grants</label>{}<label>Scopes</label>{}{}\
<label for=\"refresh_count\">Refresh count</label><input type=\"text\" id=\"refresh_count\" name=\"refresh_count\" value=\"{}\" placeholder=\"unlimited, or a number (0 = no refresh token)\">{}\
<label><input type=\"checkbox\" name=\"enabled\" value=\"true\"{enabled}> Enabled</label>{}\
<label for=\"token_response\">Token response</label>{}\
<button type=\"submit\">{}</button></form>",
        esc(action),
        csrf(c),
        Problem::top(p),
        input("version", "Version", "1.0"),
        input("description", "Description", ""),
        esc(&list_of(v, "redirect_uris").join("\n")),
        Problem::at(p, "redirect_uris"),
        checks("grants", &grants, &list_of(v, "grants")),
        checks("scopes", scopes, &list_of(v, "scopes")),
        input(
            "access_token_ttl",
            "Access token lifetime",
            "10m, 12h, 30d or never"
        ),
        esc(&s(v, "refresh_count")),
        Problem::at(p, "refresh_count"),
        input(
            "logo_uri",
            "Logo URI (shown on the consent page)",
            "https://example.com/logo.png"
        ),
        select("token_response", &["standard", "flowwright"]),
        if creating { "Add client" } else { "Save" },
    )
}
