//! `tollgate clients …` and `tollgate tokens …`: the verbs as clap parses them, turned into the
//! admin API calls of [`Command`].

use super::Command;

#[derive(Debug, Clone, clap::Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing would only add noise
pub enum ClientsCommand {
    /// List every client (file and admin-created).
    List,
    /// Show one client.
    Show { client_id: String },
    /// Register a client; a confidential client's secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// confidential | public
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long = "grant")]
        grants: Vec<String>,
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// e.g. 10m, or never
        #[arg(long)]
        access_token_ttl: Option<String>,
        /// N, or unlimited
        #[arg(long)]
        refresh_count: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
    },
    /// Delete a client and revoke its tokens.
    Delete { client_id: String },
    /// Disable a store client: its tokens are refused and it gets no new ones (SPEC §9).
    Disable { client_id: String },
    /// Enable a disabled store client again: its unexpired tokens work again.
    Enable { client_id: String },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokensCommand {
    /// List access tokens, optionally of one client or user.
    List {
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long)]
        username: Option<String>,
    },
    /// Issue an access token for a client.
    Issue {
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        days: Option<u64>,
    },
    /// Revoke a token (by the id `tokens list` shows) and its refresh token.
    Revoke { id: String },
}

impl From<ClientsCommand> for Command {
    fn from(c: ClientsCommand) -> Command {
        match c {
            ClientsCommand::List => Command::ClientsList,
            ClientsCommand::Show { client_id } => Command::ClientsShow(client_id),
            ClientsCommand::Delete { client_id } => Command::ClientsDelete(client_id),
            ClientsCommand::Disable { client_id } => Command::ClientsEnable(client_id, false),
            ClientsCommand::Enable { client_id } => Command::ClientsEnable(client_id, true),
            ClientsCommand::Create {
                name,
                version,
                description,
                kind,
                grants,
                scopes,
                redirect_uris,
                access_token_ttl,
                refresh_count,
                client_id,
            } => {
                let mut f = serde_json::Map::new();
                f.insert("name".into(), name.into());
                let strings = [
                    ("version", version),
                    ("description", description),
                    ("type", kind),
                    ("access_token_ttl", access_token_ttl),
                    ("client_id", client_id),
                ];
                for (key, value) in strings {
                    if let Some(v) = value {
                        f.insert(key.into(), v.into());
                    }
                }
                for (key, list) in [
                    ("grants", grants),
                    ("scopes", scopes),
                    ("redirect_uris", redirect_uris),
                ] {
                    if !list.is_empty() {
                        f.insert(key.into(), list.into());
                    }
                }
                if let Some(n) = refresh_count {
                    let value = n.parse::<u64>().map_or_else(|_| n.into(), Into::into);
                    f.insert("refresh_count".into(), value);
                }
                Command::ClientsCreate(f)
            }
        }
    }
}

impl From<TokensCommand> for Command {
    fn from(t: TokensCommand) -> Command {
        match t {
            TokensCommand::List {
                client_id,
                username,
            } => Command::TokensList {
                client_id,
                username,
            },
            TokensCommand::Issue {
                client_id,
                scope,
                days,
            } => Command::TokensIssue {
                client_id,
                scope,
                days,
            },
            TokensCommand::Revoke { id } => Command::TokensRevoke(id),
        }
    }
}
