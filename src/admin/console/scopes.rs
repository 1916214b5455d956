//! Scopes (seed 002's Scope Management): the list, add, edit and delete, through
//! `admin::scopes`. Patterns are checked by the API when saved, and its message lands next
//! to the paths; a delete refused while the scope is in use says why on the confirmation
//! page. File scopes are read-only here.

use hyper::{Response, StatusCode};
use serde_json::{Map, Value};

use super::page::{Nav, Problem, csrf, esc, page, text};
use super::session::see_other;
use super::{BASE, Console, Form, encode};
use crate::admin::{AdminError, scopes};
use crate::error::Body;

const FIELDS: [&str; 3] = ["name", "description", "paths"];

fn failed(c: &Console<'_>, e: &AdminError) -> Response<Body> {
    super::page::failed(c, Nav::Scopes, e)
}

pub async fn list(c: &Console<'_>, q: &Form) -> Response<Body> {
    let reply = match scopes::list(c.gateway).await {
        Ok(r) => r,
        Err(e) => return failed(c, &e),
    };
    let mut rows = String::new();
    for s in reply.body["scopes"].as_array().cloned().unwrap_or_default() {
        let name = text(&s["name"]);
        let paths: String = s["paths"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| format!("<code>{}</code> ", esc(&text(p))))
                    .collect()
            })
            .unwrap_or_default();
        let store = s["source"] == "store";
        let actions = if store && c.can_write() {
            format!(
                "<a class=\"button small secondary\" href=\"{BASE}/scopes/{n}\">Edit</a> \
<a class=\"button small danger\" href=\"{BASE}/scopes/{n}/delete\">Delete…</a>",
                n = encode(&name)
            )
        } else if store {
            format!("<a href=\"{BASE}/scopes/{}\">View</a>", encode(&name))
        } else {
            "<span class=\"note\">gateway.toml</span>".to_owned()
        };
        rows.push_str(&format!(
            "<tr><td><strong>{}</strong></td><td>{}</td><td>{paths}</td><td>{}</td><td class=\"actions\">{actions}</td></tr>",
            esc(&name),
            esc(&text(&s["description"])),
            esc(&text(&s["source"])),
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"5\" class=\"note\">No scopes.</td></tr>");
    }
    let flash = match (q.get("saved"), q.get("deleted")) {
        (Some(n), _) => format!(
            "<p class=\"ok\">Scope {} saved; every node uses it within a second.</p>",
            esc(n)
        ),
        (_, Some(n)) => format!("<p class=\"ok\">Scope {} deleted.</p>", esc(n)),
        _ => String::new(),
    };
    let add = if c.can_write() {
        format!("<p><a class=\"button\" href=\"{BASE}/new/scope\">Add scope</a></p>")
    } else {
        String::new()
    };
    let body = format!(
        "<h1>Scopes</h1>{flash}<p class=\"note\">A scope is a list of path patterns (<code>/abc/*</code>, <code>GET /reports/{{id}}</code>). \
Scopes from gateway.toml are read-only here.</p>{add}\
<table><thead><tr><th>Name</th><th>Description</th><th>Paths</th><th>Defined in</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
    );
    page(c, StatusCode::OK, "Scopes", Nav::Scopes, &body)
}

fn scope_form(
    c: &Console<'_>,
    action: &str,
    v: &Map<String, Value>,
    creating: bool,
    p: Option<&Problem>,
) -> String {
    let paths = v
        .get("paths")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    let name = if creating {
        format!(
            "<label for=\"name\">Name</label><input type=\"text\" id=\"name\" name=\"name\" value=\"{}\" required>{}",
            esc(&v.get("name").map(text).unwrap_or_default()),
            Problem::at(p, "name")
        )
    } else {
        String::new()
    };
    let disabled = if c.can_write() { "" } else { " disabled" };
    format!(
        "<form method=\"post\" action=\"{}\">{}{}{name}\
<label for=\"description\">Description</label><input type=\"text\" id=\"description\" name=\"description\" value=\"{}\"{disabled}>{}\
<label for=\"paths\">Paths (one pattern per line)</label><textarea id=\"paths\" name=\"paths\" rows=\"5\"{disabled}>{}</textarea>{}\
{}</form>",
        esc(action),
        csrf(c),
        Problem::top(p),
        esc(&v.get("description").map(text).unwrap_or_default()),
        Problem::at(p, "description"),
        esc(&paths),
        Problem::at(p, "paths"),
        if c.can_write() {
            format!(
                "<button type=\"submit\">{}</button>",
                if creating { "Add scope" } else { "Save" }
            )
        } else {
            String::new()
        },
    )
}

fn body_of(f: &Form, creating: bool) -> Map<String, Value> {
    let mut m = Map::new();
    if creating {
        m.insert("name".into(), f.text("name").into());
    }
    m.insert("description".into(), f.text("description").into());
    let paths: Vec<Value> = f
        .text("paths")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(Value::from)
        .collect();
    m.insert("paths".into(), paths.into());
    m
}

pub fn new(c: &Console<'_>) -> Response<Body> {
    let form = scope_form(c, &format!("{BASE}/scopes"), &Map::new(), true, None);
    page(
        c,
        StatusCode::OK,
        "Add scope",
        Nav::Scopes,
        &format!("<h1>Add scope</h1>{form}"),
    )
}

pub async fn create(c: &Console<'_>, f: &Form) -> Response<Body> {
    let body = body_of(f, true);
    match scopes::create(c.gateway, body.clone()).await {
        Ok(_) => see_other(&format!("{BASE}/scopes?saved={}", encode(f.text("name")))),
        Err(e) => {
            let form = scope_form(
                c,
                &format!("{BASE}/scopes"),
                &body,
                true,
                Some(&Problem::of(&e, &FIELDS)),
            );
            page(
                c,
                e.status,
                "Add scope",
                Nav::Scopes,
                &format!("<h1>Add scope</h1>{form}"),
            )
        }
    }
}

pub async fn show(c: &Console<'_>, name: &str) -> Response<Body> {
    match scopes::show(c.gateway, name).await {
        Ok(r) => edit_page(
            c,
            name,
            &r.body.as_object().cloned().unwrap_or_default(),
            None,
            StatusCode::OK,
        ),
        Err(e) => failed(c, &e),
    }
}

fn edit_page(
    c: &Console<'_>,
    name: &str,
    v: &Map<String, Value>,
    p: Option<&Problem>,
    status: StatusCode,
) -> Response<Body> {
    let form = if v.get("source").and_then(Value::as_str) == Some("file") {
        "<p class=\"note\">Defined in gateway.toml: read-only here; change it in the file.</p>"
            .to_owned()
    } else {
        scope_form(c, &format!("{BASE}/scopes/{}", encode(name)), v, false, p)
    };
    page(
        c,
        status,
        "Scope",
        Nav::Scopes,
        &format!("<h1>Scope {}</h1>{form}", esc(name)),
    )
}

pub async fn update(c: &Console<'_>, name: &str, f: &Form) -> Response<Body> {
    let body = body_of(f, false);
    match scopes::update(c.gateway, name, body.clone()).await {
        Ok(_) => see_other(&format!("{BASE}/scopes?saved={}", encode(name))),
        Err(e) => edit_page(c, name, &body, Some(&Problem::of(&e, &FIELDS)), e.status),
    }
}

pub fn confirm_delete(c: &Console<'_>, name: &str, error: Option<&AdminError>) -> Response<Body> {
    let alert = error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"refused\">Not deleted: {}</p>",
                esc(&e.description)
            )
        })
        .unwrap_or_default();
    let html = format!(
        "<h1>Delete scope {}?</h1>{alert}<p>Paths it covers are refused to tokens that only had this scope. A scope still listed by a client, or carried by a live token, cannot be deleted.</p>\
<form method=\"post\" action=\"{BASE}/scopes/{}/delete\">{}<button type=\"submit\" class=\"danger\">Delete</button> \
<a class=\"button secondary\" href=\"{BASE}/scopes\">Cancel</a></form>",
        esc(name),
        encode(name),
        csrf(c)
    );
    page(
        c,
        error.map_or(StatusCode::OK, |e| e.status),
        "Delete scope",
        Nav::Scopes,
        &html,
    )
}

pub async fn delete(c: &Console<'_>, name: &str) -> Response<Body> {
    match scopes::delete(c.gateway, name).await {
        Ok(_) => see_other(&format!("{BASE}/scopes?deleted={}", encode(name))),
        Err(e) => confirm_delete(c, name, Some(&e)),
    }
}
