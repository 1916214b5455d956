//! How the CLI shows the admin API's answers to people: key-value blocks and tables.

use serde_json::Value;

use super::Command;

pub(super) fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

pub(super) fn print_human(cmd: &Command, v: &Value) {
    match cmd {
        Command::ClientsList => {
            let rows = v
                .get("clients")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let cols = [
                "client_id",
                "name",
                "version",
                "type",
                "grants",
                "scopes",
                "enabled",
                "source",
            ];
            table(&cols, &rows);
        }
        Command::ClientsShow(_) | Command::ClientsCreate(_) => {
            for key in crate::admin::CLIENT_FIELDS.iter().chain(&["source"]) {
                println!("{key:<17} {}", s(v, key));
            }
            if let Some(secret) = v.get("client_secret").and_then(Value::as_str) {
                println!("{:<17} {secret}", "client_secret");
                println!("\nThe client secret is shown only this once: store it now.");
            }
        }
        Command::TokensList { .. } => {
            let rows = v
                .get("tokens")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let cols = [
                "id",
                "client_id",
                "username",
                "scope",
                "expires_at",
                "expired",
                "refreshes_left",
            ];
            table(&cols, &rows);
        }
        Command::TokensIssue { .. } => {
            for key in [
                "access_token",
                "token_type",
                "scope",
                "issued_at",
                "expires_at",
            ] {
                println!("{key:<13} {}", s(v, key));
            }
        }
        Command::Credentials(c) => super::credentials::print(c, v),
        Command::Scopes(c) => super::scopes::print(c, v),
        Command::ClientsEnable(id, enabled) => println!(
            "client {id} {}",
            if *enabled {
                "enabled: its unexpired tokens work again"
            } else {
                "disabled: its tokens are refused and it gets no new ones"
            }
        ),
        Command::ClientsDelete(id) => println!("client {id} deleted; its tokens are revoked"),
        Command::TokensRevoke(id) => println!("token {id} revoked (with its refresh token)"),
        Command::Explain { .. } => {
            let verdict = if v.get("allowed").and_then(Value::as_bool) == Some(true) {
                "ALLOWED"
            } else {
                "REFUSED"
            };
            println!(
                "{verdict} ({})  {} {}",
                s(v, "status"),
                s(v, "method"),
                s(v, "normalized_path")
            );
            let route = v.get("route").filter(|r| !r.is_null());
            match route {
                Some(r) => println!("route      {} ({})", s(r, "name"), s(r, "pattern")),
                None => println!("route      none"),
            }
            if let Some(by) = v.get("allowed_by").filter(|b| !b.is_null()) {
                println!(
                    "allowed by scope {} through {}",
                    s(by, "scope"),
                    s(by, "pattern")
                );
            }
            println!("reason     {}", s(v, "reason"));
        }
    }
}

/// Left-aligned columns with a header line.
pub(super) fn table(cols: &[&str], rows: &[Value]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| s(r, c)).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(cols.iter().map(|c| c.to_uppercase()).collect());
    for row in cells {
        line(row);
    }
}
