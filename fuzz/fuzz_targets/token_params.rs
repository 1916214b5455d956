//! The token endpoint's request parsing (`src/oauth/params.rs`, `code.rs`, `issue.rs`): the
//! form body, the client's credentials (HTTP Basic or the body), the grant type, the scope
//! list and the PKCE verifier.
//!
//! Properties: no panic; decoding is lossless (the decoded pairs, encoded again, decode to the
//! same pairs); a body is refused iff a name repeats, and otherwise every parameter reads back
//! as sent (empty = absent); the client is taken from exactly one place and never with an
//! empty id; a granted scope list is non-empty, without duplicates and within what the client
//! may have; a verifier matches its own S256 challenge iff it is well formed.
//!
//! Input: the `Authorization` header value, a newline, then the form body.

#![no_main]

use base64::Engine;
use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use tollgate::fuzzing::{
    ClientCredentials, Grant, Params, client_credentials, is_s256_challenge, pairs, pkce_matches,
    resolve_scopes,
};

const ALLOWED: [&str; 3] = ["reports", "secret", "a:b"];

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };

    let decoded = pairs(body);
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&decoded)
        .finish();
    assert_eq!(pairs(encoded.as_bytes()), decoded, "lossy: {encoded:?}");

    let repeated = decoded
        .iter()
        .enumerate()
        .any(|(i, (k, _))| decoded[..i].iter().any(|(seen, _)| seen == k));
    let params = match Params::parse(body) {
        Ok(p) => p,
        Err(e) => {
            assert!(repeated, "refused without a repeated name: {e}");
            assert_eq!(e.code, "invalid_request");
            return;
        }
    };
    assert!(!repeated, "a repeated name was accepted");
    for (k, v) in &decoded {
        assert_eq!(params.get(k), (!v.is_empty()).then_some(v.as_str()), "{k}");
    }

    let mut headers = HeaderMap::new();
    let basic_sent = match HeaderValue::from_bytes(header) {
        Ok(v) if !header.is_empty() => {
            let sent = v
                .to_str()
                .ok()
                .and_then(|s| s.split(' ').next())
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic"));
            headers.insert(AUTHORIZATION, v);
            sent
        }
        _ => false,
    };
    let (body_id, body_secret) = (params.get("client_id"), params.get("client_secret"));
    match client_credentials(&headers, &params) {
        Ok(ClientCredentials::Basic { id, .. }) => {
            assert!(basic_sent && !id.is_empty() && body_secret.is_none());
            assert!(body_id.is_none_or(|b| b == id));
        }
        Ok(ClientCredentials::Body { id, secret }) => {
            assert!(!basic_sent);
            assert_eq!(Some(id.as_str()), body_id);
            assert_eq!(secret.as_deref(), body_secret);
        }
        Ok(ClientCredentials::None) => {
            assert!(!basic_sent && body_id.is_none() && body_secret.is_none());
        }
        Err(_) => {}
    }

    if let Some(g) = params.get("grant_type").and_then(Grant::parse) {
        assert_eq!(Some(g.as_str()), params.get("grant_type"));
    }

    let allowed: Vec<String> = ALLOWED.iter().map(|s| s.to_string()).collect();
    if let Ok(scopes) = resolve_scopes(params.get("scope"), &allowed) {
        assert!(!scopes.is_empty());
        for (i, s) in scopes.iter().enumerate() {
            assert!(allowed.contains(s), "{s:?} was never allowed");
            assert!(!scopes[..i].contains(s), "{s:?} twice");
        }
        if let Some(asked) = params.get("scope") {
            for s in asked.split(' ').filter(|s| !s.is_empty()) {
                assert!(scopes.iter().any(|g| g == s), "{s:?} asked, not granted");
            }
        }
    }

    if let Some(verifier) = params.get("code_verifier") {
        let own = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        let well_formed = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        assert!(is_s256_challenge(&own));
        assert_eq!(pkce_matches(verifier, &own), well_formed, "{verifier:?}");
        if let Some(challenge) = params.get("code_challenge")
            && pkce_matches(verifier, challenge)
        {
            assert!(is_s256_challenge(challenge) && challenge == own);
        }
    }
});
