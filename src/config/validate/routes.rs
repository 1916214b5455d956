//! `[[routes]]` → [`Route`]s: patterns, hosts, upstreams, auth and credentials, and whether
//! any scope can reach them.

use super::*;

impl Validator<'_> {
    pub(super) fn routes(
        &mut self,
        raw: Vec<Spanned<RawRoute>>,
        scopes: &[Scope],
        base: &Path,
        credentials: &[crate::outbound::Credential],
    ) -> Vec<Route> {
        let mut names = HashSet::new();
        let mut places: HashMap<(Option<String>, String), String> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        // Where each route of `out` has its path, for the warnings below.
        let mut path_spans = Vec::with_capacity(raw.len());
        for r in raw {
            let r = r.into_inner();
            let name = self.string(&r.name);
            if name.is_empty() {
                self.err(&r.name, "route name must not be empty");
            } else if !names.insert(name.clone()) {
                self.err(&r.name, format!("duplicate route name {name:?}"));
            }
            let pattern = self.pattern(&r.path);
            let host = r.host.as_ref().map(|h| {
                let host = self.string(h).to_ascii_lowercase();
                if host.is_empty() || host.contains(['/', ':', ' ']) {
                    self.err(h, "host must be a bare host name like \"api.example.com\" (no scheme, port or path)");
                }
                host
            });
            if let Some(p) = &pattern
                && let Some(other) =
                    places.insert((host.clone(), p.as_str().to_owned()), name.clone())
            {
                self.err(
                    &r.path,
                    format!("route {other:?} already has path {:?}", p.as_str()),
                );
            }
            let upstreams = self.upstreams(&r.upstreams);
            let auth = match r.auth.as_ref().map(|a| (a, self.string(a))) {
                None => RouteAuth::Bearer,
                Some((_, a)) if a == "bearer" => RouteAuth::Bearer,
                Some((_, a)) if a == "none" => RouteAuth::None,
                Some((span, other)) => {
                    self.err(
                        span,
                        format!("unknown auth {other:?} (expected \"bearer\" or \"none\")"),
                    );
                    RouteAuth::Bearer
                }
            };
            let strip_prefix = r.strip_prefix.as_ref().map(|s| {
                let prefix = self.string(s);
                let fits = pattern.as_ref().is_none_or(|p| is_segment_prefix(&prefix, p.literal_prefix()));
                if !prefix.starts_with('/') || prefix.ends_with('/') || !fits {
                    self.err(s, "strip_prefix must be leading whole segments of the route's path, like \"/abc\" for \"/abc/*\"");
                }
                prefix
            });
            let timeout = self.duration_or(&r.timeout, Duration::from_secs(30));
            if timeout.is_zero()
                && let Some(t) = &r.timeout
            {
                self.err(t, "timeout must be more than 0");
            }
            let credential = r.credential.as_ref().and_then(|c| {
                let c_name = self.string(c);
                match credentials.iter().find(|k| k.name == c_name) {
                    None if credentials.is_empty() => self.err(
                        c,
                        format!("unknown credential {c_name:?} (no [[credentials]] are declared)"),
                    ),
                    None => self.err(c, format!("unknown credential {c_name:?}")),
                    Some(k) if k.per_user && auth != RouteAuth::Bearer => self.err(
                        c,
                        format!("credential {c_name:?} is per_user: its route needs auth = \"bearer\" (the caller's user picks the upstream token)"),
                    ),
                    Some(_) if r.forward_authorization.as_ref().is_some_and(|f| *f.get_ref()) => {
                        self.err(
                            c,
                            "a route with a credential sends the credential's token upstream; forward_authorization = true cannot apply",
                        )
                    }
                    Some(_) => return Some(c_name),
                }
                None
            });
            let upstream_ca = r.upstream_ca.as_ref().and_then(|ca| {
                let file = base.join(self.string(ca));
                super::tls::client_config(&file)
                    .map_err(|e| self.err(ca, e))
                    .ok()
            });
            let Some(pattern) = pattern else { continue };
            path_spans.push(r.path.span());
            out.push(Route {
                name,
                pattern,
                host,
                upstreams,
                auth,
                strip_prefix,
                timeout,
                forward_authorization: r
                    .forward_authorization
                    .as_ref()
                    .is_some_and(|f| *f.get_ref()),
                upstream_ca,
                credential,
            });
        }
        // A warning, not an error: scopes may come later, by a reload or through the admin
        // API (SPEC §2), and the route then works without a restart.
        for i in unreachable_routes(&out, scopes) {
            self.d
                .warning(path_spans[i].clone(), unreachable_warning(&out[i]));
        }
        out
    }

    pub(super) fn upstreams(&mut self, list: &StrList) -> Vec<Uri> {
        if list.get_ref().is_empty() {
            self.d
                .error(list.span(), "a route needs at least one upstream");
        }
        let mut out = Vec::new();
        for u in list.get_ref() {
            let s = self.string(u);
            match s.parse::<Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.authority().is_some() =>
                {
                    if uri.query().is_some() {
                        self.err(u, "an upstream URL cannot have a query string");
                    } else if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                        // It would be logged, and sent in `Host`; credentials for an upstream
                        // belong in a header the upstream checks, not in the URL.
                        self.err(u, "an upstream URL cannot carry user:password@");
                    } else {
                        out.push(uri);
                    }
                }
                _ => self.err(
                    u,
                    format!(
                        "invalid upstream URL {:?} (expected http://host:port)",
                        redact_url(&s)
                    ),
                ),
            }
        }
        out
    }
}

/// The indexes of the `auth = "bearer"` routes none of whose paths any of `scopes` covers:
/// no token can ever be let through them. Scopes from the store join the file's in
/// `scopes` when a caller knows them.
pub fn unreachable_routes(routes: &[Route], scopes: &[Scope]) -> Vec<usize> {
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.auth == RouteAuth::Bearer)
        .filter(|(_, r)| {
            !scopes
                .iter()
                .flat_map(|s| &s.patterns)
                .any(|sp| sp.overlaps(&r.pattern))
        })
        .map(|(i, _)| i)
        .collect()
}

/// What to say about a route [`unreachable_routes`] found (without the file position).
pub fn unreachable_warning(route: &Route) -> String {
    format!(
        "route {:?} is unreachable: auth = \"bearer\" but no scope covers any path of {:?}",
        route.name,
        route.pattern.as_str()
    )
}

/// Is `prefix` made of whole leading segments of `path` (`/abc` of `/abc/def`, not of `/abcd`)?
fn is_segment_prefix(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}
