//! `[[credentials]]` → [`Credential`]s (SPEC §8), and the checks that tie them to routes and
//! to `[store] encryption_key`. Every problem is reported at its key, all at once.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use hyper::Uri;
use toml::Spanned;

use super::Validator;
use crate::config::raw::{RawCredential, Str};
use crate::outbound::{
    AuthMethod, Credential, OutboundGrant, RequestFormat, Secret, is_json_pointer,
};

/// Token-request parameters that Tollgate sets itself; `params` may not override them.
const RESERVED_PARAMS: [&str; 9] = [
    "grant_type",
    "client_id",
    "client_secret",
    "refresh_token",
    "username",
    "password",
    "code",
    "code_verifier",
    "redirect_uri",
];

impl Validator<'_> {
    pub(super) fn credentials(
        &mut self,
        raw: Vec<Spanned<RawCredential>>,
        base: &Path,
    ) -> Vec<Credential> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for c in raw {
            let c = c.into_inner();
            let name = self.string(&c.name);
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !name_ok {
                self.err(&c.name, "a credential name is 1 to 64 of A-Z a-z 0-9 - _ .");
            } else if !seen.insert(name.clone()) {
                self.err(&c.name, format!("duplicate credential name {name:?}"));
            }
            let grant_text = self.string(&c.grant);
            let grant = OutboundGrant::parse(&grant_text).unwrap_or_else(|| {
                self.err(&c.grant, format!("unknown grant {grant_text:?} (expected \"client_credentials\", \"refresh_token\", \"password\" or \"authorization_code\")"));
                OutboundGrant::ClientCredentials
            });
            // Keys that belong to one grant only: missing where needed, refused elsewhere.
            let belongs = [
                (
                    "refresh_token",
                    c.refresh_token.is_some(),
                    OutboundGrant::RefreshToken,
                ),
                ("username", c.username.is_some(), OutboundGrant::Password),
                ("password", c.password.is_some(), OutboundGrant::Password),
                (
                    "authorize_url",
                    c.authorize_url.is_some(),
                    OutboundGrant::AuthorizationCode,
                ),
            ];
            for (key, present, owner) in belongs {
                if present && grant != owner {
                    self.err(
                        &c.grant,
                        format!("`{key}` is only for grant = \"{}\"", owner.as_str()),
                    );
                } else if !present && grant == owner {
                    self.err(
                        &c.grant,
                        format!("grant = \"{}\" needs `{key}`", owner.as_str()),
                    );
                }
            }
            if let Some(p) = &c.per_user
                && grant != OutboundGrant::AuthorizationCode
            {
                self.err(p, "`per_user` is only for grant = \"authorization_code\"");
            }
            let token_url = self.provider_url(&c.token_url);
            let refresh_url = c.refresh_url.as_ref().and_then(|u| self.provider_url(u));
            let authorize_url = c.authorize_url.as_ref().and_then(|u| self.provider_url(u));
            let auth_method = match c.auth_method.as_ref().map(|m| (m, self.string(m))) {
                None => AuthMethod::Basic,
                Some((_, m)) if m == "basic" => AuthMethod::Basic,
                Some((_, m)) if m == "post" => AuthMethod::Post,
                Some((at, m)) => {
                    self.err(
                        at,
                        format!("unknown auth_method {m:?} (expected \"basic\" or \"post\")"),
                    );
                    AuthMethod::Basic
                }
            };
            let request_format = match c.request_format.as_ref().map(|f| (f, self.string(f))) {
                None => RequestFormat::Form,
                Some((_, f)) if f == "form" => RequestFormat::Form,
                Some((_, f)) if f == "json" => RequestFormat::Json,
                Some((at, f)) => {
                    self.err(
                        at,
                        format!("unknown request_format {f:?} (expected \"form\" or \"json\")"),
                    );
                    RequestFormat::Form
                }
            };
            let mut params = Vec::new();
            if let Some(table) = &c.params {
                for (k, v) in table.get_ref() {
                    if RESERVED_PARAMS.contains(&k.as_str()) {
                        self.err(
                            v,
                            format!("params may not set {k:?}: Tollgate sends it itself"),
                        );
                    }
                    params.push((k.clone(), self.string(v)));
                }
            }
            let pointer = |v: &mut Self, raw: &Option<Str>, default: &str| match raw {
                None => default.to_owned(),
                Some(p) => {
                    let s = v.string(p);
                    if !is_json_pointer(&s) {
                        v.err(p, format!("{s:?} is not a JSON pointer (RFC 6901, e.g. \"/data/access_token\")"));
                    }
                    s
                }
            };
            let access_token_path = pointer(self, &c.access_token_path, "/access_token");
            let refresh_token_path = pointer(self, &c.refresh_token_path, "/refresh_token");
            let expires_in_path = pointer(self, &c.expires_in_path, "/expires_in");
            let default_ttl = self.positive(&c.default_ttl, Duration::from_secs(3600));
            let refresh_before = self.duration_or(&c.refresh_before, Duration::from_secs(60));
            let timeout = self.positive(&c.timeout, Duration::from_secs(10));
            let ca_file = c.ca.as_ref().map(|ca| (ca, base.join(self.string(ca))));
            let tls = ca_file.as_ref().and_then(|(at, file)| {
                crate::config::tls::client_config(file)
                    .map_err(|e| self.err(*at, e))
                    .ok()
            });
            let secret =
                |v: &mut Self, raw: &Option<Str>| raw.as_ref().map(|s| Secret::new(v.string(s)));
            let credential = Credential {
                name,
                grant,
                token_url: token_url.unwrap_or_default(),
                refresh_url,
                authorize_url,
                client_id: self.string(&c.client_id),
                client_secret: secret(self, &c.client_secret),
                auth_method,
                scope: c.scope.as_ref().map(|s| self.string(s)),
                params,
                request_format,
                refresh_token: secret(self, &c.refresh_token),
                username: c.username.as_ref().map(|u| self.string(u)),
                password: secret(self, &c.password),
                per_user: c.per_user.as_ref().is_some_and(|p| *p.get_ref()),
                access_token_path,
                refresh_token_path,
                expires_in_path,
                default_ttl,
                refresh_before,
                timeout,
                tls,
                fingerprint: [0; 32],
            };
            let ca_text = ca_file.map(|(_, f)| f.display().to_string());
            out.push(credential.with_fingerprint(ca_text.as_deref()));
        }
        out
    }

    /// An absolute `http(s)://` URL without userinfo (which would end up in logs).
    fn provider_url(&mut self, raw: &Str) -> Option<Uri> {
        let s = self.string(raw);
        match s.parse::<Uri>() {
            Ok(u)
                if matches!(u.scheme_str(), Some("http" | "https"))
                    && u.authority().is_some_and(|a| !a.as_str().contains('@')) =>
            {
                Some(u)
            }
            _ => {
                self.err(raw, format!("invalid URL {s:?} (expected http:// or https://host/path, without user:password@)"));
                None
            }
        }
    }

    fn positive(&mut self, raw: &Option<Str>, default: Duration) -> Duration {
        let d = self.duration_or(raw, default);
        if d.is_zero()
            && let Some(r) = raw
        {
            self.err(r, "must be more than 0");
            return default;
        }
        d
    }

    /// `[store] encryption_key`: 32 bytes, base64 (standard or URL-safe, padding optional).
    pub(super) fn encryption_key(&mut self, raw: &Option<Str>) -> Option<crate::seal::SealKey> {
        let raw = raw.as_ref()?;
        let text = self.string(raw);
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let decoded = engines.iter().find_map(|e| e.decode(text.trim()).ok());
        match decoded.map(<[u8; 32]>::try_from) {
            Some(Ok(key)) => Some(crate::seal::SealKey(key)),
            Some(Err(v)) => {
                self.err(raw, format!("encryption_key must be 32 bytes, base64; this is {} bytes (make one with `head -c 32 /dev/urandom | base64`)", v.len()));
                None
            }
            None => {
                self.err(raw, "encryption_key must be 32 bytes, base64 (make one with `head -c 32 /dev/urandom | base64`)");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;
    use crate::outbound::{AuthMethod, OutboundGrant, RequestFormat};

    const HEAD: &str = r#"[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080"
[[scopes]]
name = "reports"
paths = ["/abc/*"]
"#;

    fn load(store: &str, rest: &str) -> Result<Config, Vec<String>> {
        let src = format!("{store}{HEAD}{rest}");
        let env = |name: &str| (name == "CRM_SECRET").then(|| "s3cret".to_owned());
        Config::from_str_with_env(Path::new("gw.toml"), &src, &env).map_err(|e| e.0)
    }

    const CRM: &str = r#"[[credentials]]
name = "crm"
token_url = "https://login.crm.example/oauth/token"
grant = "client_credentials"
client_id = "tollgate"
client_secret = "${CRM_SECRET}"
"#;

    #[test]
    fn a_full_credential_loads_with_its_defaults() {
        let c = load("", CRM).expect("valid");
        let crm = &c.credentials[0];
        assert_eq!(crm.grant, OutboundGrant::ClientCredentials);
        assert_eq!(crm.auth_method, AuthMethod::Basic);
        assert_eq!(crm.request_format, RequestFormat::Form);
        assert_eq!(crm.access_token_path, "/access_token");
        assert_eq!(crm.default_ttl.as_secs(), 3600);
        assert_eq!(crm.refresh_before.as_secs(), 60);
        assert_eq!(crm.timeout.as_secs(), 10);
        assert_eq!(
            crm.client_secret.as_ref().map(|s| s.expose()),
            Some("s3cret")
        );
        assert!(
            !format!("{crm:?}").contains("s3cret"),
            "Debug shows the secret"
        );
        assert!(c.summary().contains("credential crm"), "{}", c.summary());
        // The fingerprint follows every setting, the secret included.
        let other = load("", &CRM.replace("${CRM_SECRET}", "other")).expect("valid");
        assert_ne!(crm.fingerprint, other.credentials[0].fingerprint);
        let same = load("", CRM).expect("valid");
        assert_eq!(crm.fingerprint, same.credentials[0].fingerprint);
    }

    /// Each row: what to append or change, and the error it must produce (with position).
    #[test]
    fn every_mistake_is_reported_at_its_key() {
        let redis = "[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n";
        let table: &[(&str, String, &str)] = &[
            (
                "",
                CRM.replace("client_credentials", "magic"),
                "10:9: unknown grant \"magic\"",
            ),
            (
                "",
                CRM.replace("https://login", "ftp://login"),
                "9:13: invalid URL",
            ),
            (
                "",
                CRM.replace("https://login", "https://u:p@login"),
                "without user:password@",
            ),
            (
                "",
                format!("{CRM}refresh_token = \"x\"\n"),
                "10:9: `refresh_token` is only for grant = \"refresh_token\"",
            ),
            (
                "",
                CRM.replace("client_credentials", "refresh_token"),
                "grant = \"refresh_token\" needs `refresh_token`",
            ),
            (
                "",
                CRM.replace("client_credentials", "password"),
                "grant = \"password\" needs `username`",
            ),
            (
                "",
                CRM.replace("client_credentials", "authorization_code"),
                "needs `authorize_url`",
            ),
            (
                "",
                format!("{CRM}per_user = true\n"),
                "13:12: `per_user` is only for grant = \"authorization_code\"",
            ),
            (
                "",
                format!("{CRM}access_token_path = \"data.token\"\n"),
                "13:21: \"data.token\" is not a JSON pointer",
            ),
            (
                "",
                format!("{CRM}auth_method = \"digest\"\n"),
                "unknown auth_method \"digest\"",
            ),
            (
                "",
                format!("{CRM}request_format = \"xml\"\n"),
                "unknown request_format \"xml\"",
            ),
            (
                "",
                format!("{CRM}params = {{ grant_type = \"x\" }}\n"),
                "params may not set \"grant_type\"",
            ),
            (
                "",
                format!("{CRM}timeout = \"0s\"\n"),
                "13:11: must be more than 0",
            ),
            (
                "",
                format!("{CRM}ca = \"/nonexistent/ca.pem\"\n"),
                "13:6: cannot read CA file",
            ),
            (
                "",
                format!("{CRM}{CRM}"),
                "14:8: duplicate credential name \"crm\"",
            ),
            ("", format!("{CRM}bogus = 1\n"), "unknown field `bogus`"),
            (
                redis,
                CRM.to_owned(),
                "2:11: [store] encryption_key is required",
            ),
            (
                "[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nencryption_key = \"c2hvcnQ=\"\n",
                CRM.to_owned(),
                "4:18: encryption_key must be 32 bytes, base64; this is 5 bytes",
            ),
            (
                "",
                format!(
                    "{CRM}[[routes]]\nname = \"r\"\npath = \"/abc/*\"\nupstreams = [\"http://127.0.0.1:9\"]\ncredential = \"nope\"\n"
                ),
                "unknown credential \"nope\"",
            ),
            (
                "",
                format!(
                    "{CRM}[[routes]]\nname = \"r\"\npath = \"/abc/*\"\nupstreams = [\"http://127.0.0.1:9\"]\ncredential = \"crm\"\nforward_authorization = true\n"
                ),
                "forward_authorization = true cannot apply",
            ),
        ];
        for (store, rest, expected) in table {
            let errors = load(store, rest).expect_err(expected);
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "expected {expected:?} in {errors:#?}"
            );
        }
    }

    #[test]
    fn a_per_user_credential_needs_a_bearer_route_and_a_good_key_loads() {
        let code = CRM.replace("client_credentials", "authorization_code")
            + "authorize_url = \"https://login.crm.example/authorize\"\nper_user = true\n";
        let public = format!(
            "{code}[[routes]]\nname = \"r\"\npath = \"/abc/*\"\nupstreams = [\"http://127.0.0.1:9\"]\nauth = \"none\"\ncredential = \"crm\"\n"
        );
        let errors = load("", &public).expect_err("per_user on a public route");
        assert!(
            errors.iter().any(|e| e.contains("is per_user")),
            "{errors:?}"
        );
        let redis = "[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nencryption_key = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\n";
        let c = load(redis, &code).expect("valid");
        assert!(c.credentials[0].per_user);
        assert!(c.store.encryption_key.is_some());
        assert!(
            !format!("{:?}", c.store).contains("48, 49"),
            "Debug shows the key"
        );
    }
}
