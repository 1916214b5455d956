//! `tollgate scopes list | show NAME | create NAME --path P… | update NAME … | delete NAME`:
//! the scopes in force (SPEC §9) through `/admin/scopes`. File scopes are listed and shown;
//! only store scopes change here.

use hyper::Method;
use serde_json::{Map, Value};

/// The `scopes` verbs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ScopesCommand {
    /// List every scope (file and store) with its paths.
    List,
    /// Show one scope.
    Show { name: String },
    /// Create a scope in the store; it takes effect on every node within a second.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// A path pattern (`[METHODS ]PATH`, SPEC §3); repeat for several.
        #[arg(long = "path", required = true)]
        paths: Vec<String>,
    },
    /// Change a store scope's description or paths (`--path` replaces them all).
    Update {
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long = "path")]
        paths: Vec<String>,
    },
    /// Delete a store scope; refused while a client lists it or a live token carries it.
    Delete { name: String },
}

/// The admin API call for `cmd`: method, path, body.
pub fn request(cmd: &ScopesCommand) -> (Method, String, Option<Value>) {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let body = |name: Option<&str>, description: &Option<String>, paths: &[String]| {
        let mut f = Map::new();
        if let Some(n) = name {
            f.insert("name".into(), n.into());
        }
        if let Some(d) = description {
            f.insert("description".into(), d.clone().into());
        }
        if !paths.is_empty() {
            f.insert("paths".into(), paths.to_vec().into());
        }
        Some(Value::Object(f))
    };
    match cmd {
        ScopesCommand::List => (Method::GET, "/admin/scopes".into(), None),
        ScopesCommand::Show { name } => (Method::GET, format!("/admin/scopes/{}", enc(name)), None),
        ScopesCommand::Create {
            name,
            description,
            paths,
        } => (
            Method::POST,
            "/admin/scopes".into(),
            body(Some(name), description, paths),
        ),
        ScopesCommand::Update {
            name,
            description,
            paths,
        } => (
            Method::PATCH,
            format!("/admin/scopes/{}", enc(name)),
            body(None, description, paths),
        ),
        ScopesCommand::Delete { name } => {
            (Method::DELETE, format!("/admin/scopes/{}", enc(name)), None)
        }
    }
}

/// What a person reads.
pub fn print(cmd: &ScopesCommand, v: &Value) {
    match cmd {
        ScopesCommand::List => {
            let rows = v
                .get("scopes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            super::print::table(&["name", "source", "paths", "description"], &rows);
        }
        ScopesCommand::Show { .. }
        | ScopesCommand::Create { .. }
        | ScopesCommand::Update { .. } => {
            for key in ["name", "source", "paths", "description"] {
                println!("{key:<12} {}", super::print::s(v, key));
            }
        }
        ScopesCommand::Delete { name } => println!("scope {name} deleted"),
    }
}
