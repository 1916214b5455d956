//! `tollgate credentials list | refresh NAME | authorize NAME | disconnect NAME [--username U]`:
//! the outbound credentials (SPEC §8) through `/admin/credentials`.

use hyper::Method;
use serde_json::Value;

/// The `credentials` verbs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CredentialsCommand {
    /// List the credentials with their status (never a token or secret).
    List,
    /// Make a new token request now, whatever the backoff says.
    Refresh { name: String },
    /// Print the provider URL an operator opens to connect a shared authorization-code
    /// credential.
    Authorize { name: String },
    /// Forget a credential's stored tokens (one user's with --username).
    Disconnect {
        name: String,
        #[arg(long)]
        username: Option<String>,
    },
}

/// The admin API call for `cmd`: method, path.
pub fn request(cmd: &CredentialsCommand) -> (Method, String) {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    match cmd {
        CredentialsCommand::List => (Method::GET, "/admin/credentials".into()),
        CredentialsCommand::Refresh { name } => (
            Method::POST,
            format!("/admin/credentials/{}/refresh", enc(name)),
        ),
        CredentialsCommand::Authorize { name } => (
            Method::POST,
            format!("/admin/credentials/{}/authorize", enc(name)),
        ),
        CredentialsCommand::Disconnect { name, username } => {
            let query = username
                .as_deref()
                .map(|u| format!("?username={}", enc(u)))
                .unwrap_or_default();
            (
                Method::DELETE,
                format!("/admin/credentials/{}/tokens{query}", enc(name)),
            )
        }
    }
}

/// What a person reads.
pub fn print(cmd: &CredentialsCommand, v: &Value) {
    match cmd {
        CredentialsCommand::List => {
            let rows = v
                .get("credentials")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let cols = [
                "name",
                "grant",
                "status",
                "expires_at",
                "last_refresh_at",
                "connected_users",
                "last_error",
            ];
            super::print::table(&cols, &rows);
        }
        CredentialsCommand::Refresh { name } => {
            println!(
                "credential {name}: {} (expires {})",
                super::print::s(v, "status"),
                super::print::s(v, "expires_at")
            );
        }
        CredentialsCommand::Authorize { .. } => {
            println!("Open this URL in a browser and consent at the provider:");
            println!("{}", super::print::s(v, "authorize_url"));
        }
        CredentialsCommand::Disconnect { name, username } => match username {
            Some(u) => println!("credential {name}: the tokens of {u} are forgotten"),
            None => println!("credential {name}: its stored tokens are forgotten"),
        },
    }
}
