//! The file as written: serde structs mirroring `gateway.toml` key for key.
//!
//! Nothing here is validated beyond TOML types; `config::load` turns these into the library's
//! `Config`. Every struct denies unknown keys, and every value an error message may need to
//! point at is `Spanned` so the message can carry `FILE:LINE:COL`. The structs are the only
//! list of keys: [`parse`] learns what is unknown from serde itself.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::values::Diagnostics;

pub type Str = Spanned<String>;
pub type StrList = Spanned<Vec<Str>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: Spanned<RawServer>,
    pub admin: Option<RawAdmin>,
    pub store: Option<RawStore>,
    pub oauth: Option<RawOAuth>,
    #[serde(default)]
    pub scopes: Vec<Spanned<RawScope>>,
    #[serde(default)]
    pub users: Vec<Spanned<RawUser>>,
    #[serde(default)]
    pub clients: Vec<Spanned<RawClient>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub credentials: Vec<Spanned<RawCredential>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Str,
    pub public_url: Str,
    pub shutdown_grace: Option<Str>,
    pub workers: Option<Spanned<i64>>,
    pub trusted_proxies: Option<StrList>,
    pub max_header_bytes: Option<Spanned<i64>>,
    pub header_timeout: Option<Str>,
    pub idle_timeout: Option<Str>,
    pub max_connections: Option<Spanned<i64>>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Str,
    pub key: Str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Str,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub backend: Str,
    pub url: Option<Str>,
    pub urls: Option<StrList>,
    pub mode: Option<Str>,
    pub ca: Option<Str>,
    pub prefix: Option<Str>,
    pub cache_ttl: Option<Str>,
    pub cache_capacity: Option<Spanned<i64>>,
    pub encryption_key: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub path: Option<Str>,
    pub access_token_ttl: Option<Str>,
    pub refresh_token_ttl: Option<Str>,
    pub authorization_code_ttl: Option<Str>,
    pub refresh_grace: Option<Str>,
    pub default_client: Option<Str>,
    /// Full path → endpoint name (SPEC §5): keys spanned too, so an error can point at one.
    pub aliases: Option<Spanned<std::collections::BTreeMap<Str, Str>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    pub name: Str,
    pub description: Option<Str>,
    pub paths: StrList,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub username: Str,
    pub password_hash: Str,
    pub scopes: Option<StrList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub client_id: Str,
    pub name: Option<Str>,
    pub version: Option<Str>,
    pub description: Option<Str>,
    #[serde(rename = "type")]
    pub kind: Option<Str>,
    pub secret: Option<Str>,
    pub secret_hash: Option<Str>,
    pub redirect_uris: Option<StrList>,
    pub grants: Option<StrList>,
    pub scopes: Option<StrList>,
    pub access_token_ttl: Option<Str>,
    /// `"unlimited"` or a non-negative integer.
    pub refresh_count: Option<Spanned<toml::Value>>,
    pub enabled: Option<Spanned<bool>>,
    pub logo_uri: Option<Str>,
    pub token_response: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Str,
    pub path: Str,
    pub host: Option<Str>,
    pub upstreams: StrList,
    pub auth: Option<Str>,
    pub strip_prefix: Option<Str>,
    pub timeout: Option<Str>,
    pub forward_authorization: Option<Spanned<bool>>,
    pub upstream_ca: Option<Str>,
    pub credential: Option<Str>,
}

/// `[[credentials]]`: how Tollgate gets its own token for an upstream (SPEC §8).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    pub name: Str,
    pub token_url: Str,
    pub grant: Str,
    pub client_id: Str,
    pub client_secret: Option<Str>,
    pub auth_method: Option<Str>,
    pub scope: Option<Str>,
    pub params: Option<Spanned<std::collections::BTreeMap<String, Str>>>,
    pub request_format: Option<Str>,
    pub refresh_url: Option<Str>,
    pub refresh_token: Option<Str>,
    pub username: Option<Str>,
    pub password: Option<Str>,
    pub authorize_url: Option<Str>,
    pub per_user: Option<Spanned<bool>>,
    pub access_token_path: Option<Str>,
    pub refresh_token_path: Option<Str>,
    pub expires_in_path: Option<Str>,
    pub default_ttl: Option<Str>,
    pub refresh_before: Option<Str>,
    pub timeout: Option<Str>,
    pub ca: Option<Str>,
}

/// Reads `src` into a [`RawConfig`], reporting every unknown key and every value of the wrong
/// type into `d`, not just the first. serde stops at its first error, so each such key is
/// reported, taken out of the parsed document, and the document read again; what remains is
/// returned so the caller's value checks report their errors beside these. `None` when the
/// file is not TOML or a required key is missing or unusable (reported too).
pub fn parse(src: &str, d: &mut Diagnostics) -> Option<RawConfig> {
    let mut doc = match DeTable::parse(src) {
        Ok(doc) => doc,
        Err(e) => {
            d.error(e.span().unwrap_or(0..0), e.message().trim_end());
            return None;
        }
    };
    // Keys taken out because of a bad value. serde then says "missing field" for the required
    // ones, which would only repeat the error already reported. A table missing a required
    // key is taken out, so the rest of the file is still read for its key errors, but the
    // value checks, which would see a config without that table, are skipped.
    let mut dropped: Vec<String> = Vec::new();
    let mut complete = true;
    loop {
        let err = match RawConfig::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(raw) => return complete.then_some(raw),
            Err(err) => err,
        };
        let message = err.message().trim_end();
        let span = err.span().unwrap_or(0..0);
        if message.starts_with("missing field") {
            complete = false;
        }
        let repeated = dropped
            .iter()
            .any(|key| message == format!("missing field `{key}`"));
        if !repeated {
            d.error(span.clone(), message);
        }
        // Every round takes something out of a finite document, so this loop ends.
        match remove_at(doc.get_mut(), &span) {
            Some(Removed::Value(key)) => dropped.push(key),
            Some(Removed::Key | Removed::Table) => {}
            None => return None,
        }
    }
}

/// What [`remove_at`] took out: an entry whose key was at the span (an unknown key), one
/// whose value (or a plain item of it) was (a value of the wrong type), or a table in an
/// array of tables (one missing a required key).
enum Removed {
    Key,
    Value(String),
    Table,
}

/// Removes what is at `span` in `table`, at any depth: an entry whose key or value is there,
/// or a table of an array of tables.
fn remove_at(table: &mut DeTable, span: &Range<usize>) -> Option<Removed> {
    let mut found = None;
    for (key, value) in table.iter_mut() {
        let name = key.get_ref().to_string();
        if key.span() == *span {
            found = Some((name, Removed::Key));
        } else if let Some(inner) = remove_within(value.get_mut(), span) {
            // Looked at first: an array of tables has the span of its first table.
            return Some(inner);
        } else if value.span() == *span || contains_item_at(value.get_ref(), span) {
            found = Some((name.clone(), Removed::Value(name)));
        }
        if found.is_some() {
            break;
        }
    }
    let (name, removed) = found?;
    table.remove(name.as_str());
    Some(removed)
}

/// [`remove_at`] inside a table value, or inside an array of tables.
fn remove_within(value: &mut DeValue, span: &Range<usize>) -> Option<Removed> {
    match value {
        DeValue::Table(table) => remove_at(table, span),
        DeValue::Array(items) => {
            if items.iter().any(|item| item.span() == *span) {
                let kept: DeArray = items
                    .iter()
                    .filter(|item| item.span() != *span)
                    .cloned()
                    .collect();
                *items = kept;
                return Some(Removed::Table);
            }
            items.iter_mut().find_map(|item| match item.get_mut() {
                DeValue::Table(table) => remove_at(table, span),
                _ => None,
            })
        }
        _ => None,
    }
}

/// Is a plain (non-table) item of this array at `span`? (`grants = ["a", 5]`)
fn contains_item_at(value: &DeValue, span: &Range<usize>) -> bool {
    match value {
        DeValue::Array(items) => items.iter().any(|item| {
            let here = item.span() == *span && !item.get_ref().is_table();
            here || contains_item_at(item.get_ref(), span)
        }),
        _ => false,
    }
}
