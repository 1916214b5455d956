//! The authorization-code flow's form parsing (`src/oauth/authorize.rs`, `consent.rs`): the
//! authorization request's query (`response_type`, `scope`, PKCE) and the consent page's
//! decision form (`scope` once per ticked box, every other field once).
//!
//! Properties: no panic. An accepted authorization request is implicit iff it asked for
//! `response_type=token`, has a non-empty, duplicate-free scope list within the client's, and
//! carries a PKCE challenge only if it is a well-formed S256 one, always for a public client's
//! code flow, never for implicit. A decision form is refused iff a field other than `scope`
//! repeats; otherwise its ticked scopes are every `scope` value in order, and every other field
//! reads back as sent.
//!
//! Input: byte 0 bit 0 = consent form (else authorization query), bit 1 = the client is public;
//! the rest is the query string or form body.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate::fuzzing::{
    Client, ClientType, Config, DecisionForm, Params, is_s256_challenge, pairs,
    validate_authorization,
};

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080"

[[scopes]]
name = "reports"
paths = ["/abc/*"]

[[scopes]]
name = "secret"
paths = ["/secret/*"]

[[clients]]
client_id = "web"
secret_hash = "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0$2kKJy8eJ1/nAEUlqrsYqGomF1P8fzJ6yL4w6ZwhbZUY"
redirect_uris = ["http://127.0.0.1:3000/cb"]
grants = ["authorization_code", "implicit", "refresh_token"]
scopes = ["reports", "secret"]

[[clients]]
client_id = "spa"
type = "public"
redirect_uris = ["http://127.0.0.1:3000/cb"]
grants = ["authorization_code", "implicit"]
scopes = ["reports"]
"#;

fn clients() -> &'static (Client, Client) {
    static CLIENTS: OnceLock<(Client, Client)> = OnceLock::new();
    CLIENTS.get_or_init(|| {
        let config = Config::from_str_with_env(Path::new("fuzz.toml"), CONFIG, &|_| None)
            .unwrap_or_else(|e| panic!("the target's own config: {e}"));
        let get = |id: &str| config.client(id).cloned().expect("client");
        (get("web"), get("spa"))
    })
}

fn authorization_request(client: &Client, query: &[u8]) {
    let Ok(params) = Params::parse(query) else {
        return;
    };
    let Ok((implicit, scopes, challenge)) = validate_authorization(client, &params) else {
        return;
    };
    assert_eq!(implicit, params.get("response_type") == Some("token"));
    assert!(implicit || params.get("response_type") == Some("code"));
    assert!(!scopes.is_empty());
    for (i, s) in scopes.iter().enumerate() {
        assert!(client.scopes.contains(s), "{s:?} is not the client's");
        assert!(!scopes[..i].contains(s), "{s:?} twice");
    }
    match &challenge {
        Some(c) => {
            assert!(!implicit && is_s256_challenge(c));
            assert_eq!(params.get("code_challenge_method"), Some("S256"));
            assert_eq!(params.get("code_challenge"), Some(c.as_str()));
        }
        None => assert!(implicit || client.kind == ClientType::Confidential),
    }
}

fn decision_form(body: &[u8]) {
    let decoded = pairs(body);
    let repeated = decoded
        .iter()
        .enumerate()
        .any(|(i, (k, _))| k != "scope" && decoded[..i].iter().any(|(seen, _)| seen == k));
    let form = match DecisionForm::parse(decoded.clone()) {
        Ok(f) => f,
        Err(e) => {
            assert!(repeated, "refused without a repeated field: {e}");
            return;
        }
    };
    assert!(!repeated, "a repeated field was accepted");
    let scopes: Vec<&str> = decoded
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(form.ticked, scopes);
    for (k, v) in decoded.iter().filter(|(k, _)| k != "scope") {
        assert_eq!(
            form.params.get(k),
            (!v.is_empty()).then_some(v.as_str()),
            "{k}"
        );
    }
    assert_eq!(form.params.get("scope"), None);
}

fuzz_target!(|data: &[u8]| {
    let [flags, rest @ ..] = data else {
        return;
    };
    let (web, spa) = clients();
    if flags & 1 == 1 {
        decision_form(rest);
    } else {
        authorization_request(if flags & 2 == 2 { spa } else { web }, rest);
    }
});
