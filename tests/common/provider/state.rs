//! The token provider's bookkeeping: what it issued (access tokens, refresh tokens,
//! authorization codes), what it was asked, and the RFC 6749 §4 grant rules applied to one
//! token request in `Normal` mode.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    ApiRequest, Mode, PROVIDER_CLIENT_ID, PROVIDER_CLIENT_SECRET, PROVIDER_PASSWORD, PROVIDER_USER,
    Shape, TokenRequest,
};
use crate::common::random_token;

/// Lifetime when `expires_in` is omitted or not a number (what a client would assume is up to
/// the client; the provider's own tokens need some lifetime).
const DEFAULT_LIFETIME_SECS: f64 = 3600.0;
/// Caps absurd `expires_in` values so `Instant + lifetime` cannot overflow.
const MAX_LIFETIME_SECS: f64 = 10.0 * 365.0 * 86_400.0;

pub(super) struct AccessToken {
    pub token: String,
    pub user: Option<String>,
    pub expires: Instant,
    pub revoked: bool,
}

pub(super) struct RefreshToken {
    pub token: String,
    pub user: Option<String>,
    pub live: bool,
}

/// An authorization code from `/authorize/decide`, waiting for its one exchange.
pub(super) struct Code {
    pub redirect_uri: String,
    pub challenge: String,
    pub scope: Option<String>,
    pub user: String,
}

/// What a successful grant issued.
pub(super) struct Issued {
    pub access: String,
    pub refresh: Option<String>,
    pub scope: Option<String>,
}

pub(super) struct State {
    pub mode: Mode,
    /// Modes for the next token requests, one each, before `mode` applies again.
    pub next_modes: VecDeque<Mode>,
    pub expires_in: Option<Value>,
    pub shape: Shape,
    pub refresh_on_client_credentials: bool,
    pub api_always_401: bool,
    pub token_requests: Vec<TokenRequest>,
    pub in_flight: usize,
    pub max_in_flight: usize,
    pub access: Vec<AccessToken>,
    pub refresh: Vec<RefreshToken>,
    pub codes: HashMap<String, Code>,
    pub authorize_requests: Vec<BTreeMap<String, String>>,
    pub api_requests: Vec<ApiRequest>,
}

impl State {
    pub fn new() -> State {
        State {
            mode: Mode::Normal,
            next_modes: VecDeque::new(),
            expires_in: Some(Value::from(3600)),
            shape: Shape::Flat,
            refresh_on_client_credentials: false,
            api_always_401: false,
            token_requests: Vec::new(),
            in_flight: 0,
            max_in_flight: 0,
            access: Vec::new(),
            refresh: Vec::new(),
            codes: HashMap::new(),
            authorize_requests: Vec::new(),
            api_requests: Vec::new(),
        }
    }

    /// Applies the grant rules to `req`; `Err` is the RFC 6749 §5.2 error code.
    pub fn grant(&mut self, req: &TokenRequest) -> Result<Issued, &'static str> {
        if !client_authenticated(req) {
            return Err("invalid_client");
        }
        let scope = req.param("scope").map(str::to_owned);
        match req.param("grant_type") {
            Some("client_credentials") => {
                let with_refresh = self.refresh_on_client_credentials;
                Ok(self.issue(None, with_refresh, scope))
            }
            Some("password") => {
                if req.param("username") == Some(PROVIDER_USER)
                    && req.param("password") == Some(PROVIDER_PASSWORD)
                {
                    Ok(self.issue(Some(PROVIDER_USER.to_owned()), true, scope))
                } else {
                    Err("invalid_grant")
                }
            }
            Some("refresh_token") => {
                let presented = req.param("refresh_token").ok_or("invalid_request")?;
                let entry = self
                    .refresh
                    .iter_mut()
                    .find(|r| r.live && r.token == presented)
                    .ok_or("invalid_grant")?;
                // Rotation: the presented token is spent whatever happens next.
                entry.live = false;
                let user = entry.user.clone();
                Ok(self.issue(user, true, scope))
            }
            Some("authorization_code") => {
                let code = req.param("code").ok_or("invalid_request")?;
                // Single use: any attempt spends the code, as a strict provider does.
                let grant = self.codes.remove(code).ok_or("invalid_grant")?;
                let verifier = req.param("code_verifier").unwrap_or_default();
                if req.param("redirect_uri") != Some(grant.redirect_uri.as_str())
                    || s256(verifier) != grant.challenge
                {
                    return Err("invalid_grant");
                }
                Ok(self.issue(Some(grant.user), true, scope.or(grant.scope)))
            }
            Some(_) => Err("unsupported_grant_type"),
            None => Err("invalid_request"),
        }
    }

    /// A new access token (and refresh token if asked) valid for the current `expires_in`.
    pub fn issue(
        &mut self,
        user: Option<String>,
        with_refresh: bool,
        scope: Option<String>,
    ) -> Issued {
        let access = random_token();
        self.access.push(AccessToken {
            token: access.clone(),
            user: user.clone(),
            expires: Instant::now() + lifetime(self.expires_in.as_ref()),
            revoked: false,
        });
        let refresh = with_refresh.then(|| self.new_refresh_token(user));
        Issued {
            access,
            refresh,
            scope,
        }
    }

    pub fn new_refresh_token(&mut self, user: Option<String>) -> String {
        let token = random_token();
        self.refresh.push(RefreshToken {
            token: token.clone(),
            user,
            live: true,
        });
        token
    }

    /// The access token `token` if it is currently valid.
    pub fn valid_access(&self, token: &str) -> Option<&AccessToken> {
        let now = Instant::now();
        self.access
            .iter()
            .find(|a| a.token == token && !a.revoked && a.expires > now)
    }
}

/// HTTP Basic (id and secret form-decoded already) or `client_id` + `client_secret` in the
/// body, RFC 6749 §2.3.1. Basic wins when both are there.
fn client_authenticated(req: &TokenRequest) -> bool {
    match &req.basic {
        Some((id, secret)) => id == PROVIDER_CLIENT_ID && secret == PROVIDER_CLIENT_SECRET,
        None => {
            req.param("client_id") == Some(PROVIDER_CLIENT_ID)
                && req.param("client_secret") == Some(PROVIDER_CLIENT_SECRET)
        }
    }
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub(super) fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// How long a token lives given what the provider says in `expires_in`: its numeric value
/// (number or numeric string; zero or negative = already expired), else the default.
pub(super) fn lifetime(expires_in: Option<&Value>) -> Duration {
    let secs = match expires_in {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|secs| secs.is_finite())
    .unwrap_or(DEFAULT_LIFETIME_SECS);
    Duration::from_secs_f64(secs.clamp(0.0, MAX_LIFETIME_SECS))
}
