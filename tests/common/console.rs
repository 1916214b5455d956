//! The console (SPEC §10) from a plain HTTP client: a browser-like agent with a cookie jar
//! that signs in, follows pages and posts forms with the CSRF token the page carried.

use super::html::Form;
use super::oauth::{CookieJar, location};
use super::{Resp, send};

/// The users the console tests sign in as (they share the fixture's password).
pub const CONSOLE_ADMIN: &str = "olga";
pub const CONSOLE_READER: &str = "rita";

/// Adds `olga` (`admin`) and `rita` (`admin:read`) to `config`; `alice` has neither.
pub fn add_console_users(config: &mut super::GatewayConfig) {
    config.add_user(CONSOLE_ADMIN, &["admin"]);
    config.add_user(CONSOLE_READER, &["admin:read"]);
}

/// One browser's session on one admin listener.
pub struct ConsoleAgent {
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub base: String,
    pub jar: CookieJar,
}

impl ConsoleAgent {
    pub fn new(base: &str) -> ConsoleAgent {
        ConsoleAgent {
            base: base.to_owned(),
            jar: CookieJar::default(),
        }
    }

    async fn request(&mut self, method: &str, path: &str, body: Option<String>) -> Resp {
        let url = format!("{}{path}", self.base);
        let cookie = self.jar.header();
        let mut headers = Vec::new();
        if let Some(c) = &cookie {
            headers.push(("cookie", c.as_str()));
        }
        if body.is_some() {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        let resp = send(method, &url, &headers, body.unwrap_or_default()).await;
        self.jar.absorb(&resp);
        resp
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, None).await
    }

    /// `POST path` with exactly `fields` (no CSRF token added).
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.request("POST", path, Some(body)).await
    }

    /// `POST path` with `fields` and the CSRF token of the page at `page_path`.
    pub async fn post(&mut self, page_path: &str, path: &str, fields: &[(&str, &str)]) -> Resp {
        let csrf = self.csrf(page_path).await;
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// The session's CSRF token, as the forms of the page at `page_path` carry it.
    pub async fn csrf(&mut self, page_path: &str) -> String {
        let page = self.get(page_path).await;
        assert_eq!(page.status, 200, "{page_path}: {page}");
        Form::all(&page.body)
            .iter()
            .find_map(|f| f.hidden_value("csrf"))
            .unwrap_or_else(|| panic!("no CSRF token on {page_path}: {page}"))
    }

    /// Loads the sign-in page and posts it; returns the answer (303 on success).
    pub async fn sign_in(&mut self, username: &str, password: &str) -> Resp {
        let page = self.get("/console/signin").await;
        assert_eq!(page.status, 200, "{page}");
        let form = Form::posting_to(&page, "/console/signin");
        let csrf = form.hidden_value("csrf").expect("csrf on the sign-in form");
        self.post_raw(
            "/console/signin",
            &[
                ("csrf", &csrf),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    /// Signs in and checks it worked (303 to the clients page).
    pub async fn signed_in(base: &str, username: &str, password: &str) -> ConsoleAgent {
        let mut agent = ConsoleAgent::new(base);
        let resp = agent.sign_in(username, password).await;
        assert_eq!(resp.status, 303, "sign-in of {username}: {resp}");
        assert_eq!(location(&resp), "/console/clients", "{resp}");
        agent
    }
}
