//! What the `cargo fuzz` targets in `fuzz/` drive (fuzz/README.md): the parsers of request
//! paths, OAuth forms, Basic credentials, `gateway.toml` and providers' token responses,
//! re-exported from the modules that own them. Not an API: hidden, and changes with them.

use std::time::Duration;

use hyper::Uri;

pub use crate::config::{Client, ClientType, Config, Grant};
pub use crate::error::OAuthError;
pub use crate::oauth::authorize::{MAX_STATE_BYTES, Refusal, validate as validate_authorization};
pub use crate::oauth::code::{is_s256_challenge, pkce_matches};
pub use crate::oauth::consent::DecisionForm;
pub use crate::oauth::issue::resolve_scopes;
pub use crate::oauth::params::{ClientCredentials, Params, client_credentials, pairs, parse_basic};
pub use crate::outbound::fetch::{FetchError, Fetched, answer as token_answer, basic};
pub use crate::outbound::{AuthMethod, Credential, OutboundGrant, RequestFormat, is_json_pointer};
pub use crate::pattern::{Matcher, PathError, Pattern, normalize, strip_prefix};

/// A client-credentials [`Credential`] reading the provider's answer through these RFC 6901
/// pointers; every other setting is a `[[credentials]]` entry's default.
pub fn credential(
    access: &str,
    refresh: &str,
    expires_in: &str,
    default_ttl: Duration,
) -> Credential {
    Credential {
        name: "fuzz".into(),
        grant: OutboundGrant::ClientCredentials,
        token_url: Uri::from_static("http://127.0.0.1/token"),
        refresh_url: None,
        authorize_url: None,
        client_id: "fuzz".into(),
        client_secret: None,
        auth_method: AuthMethod::Basic,
        scope: None,
        params: Vec::new(),
        request_format: RequestFormat::Form,
        refresh_token: None,
        username: None,
        password: None,
        per_user: false,
        access_token_path: access.into(),
        refresh_token_path: refresh.into(),
        expires_in_path: expires_in.into(),
        default_ttl,
        refresh_before: Duration::from_secs(60),
        timeout: Duration::from_secs(10),
        tls: None,
        fingerprint: [0; 32],
    }
}
