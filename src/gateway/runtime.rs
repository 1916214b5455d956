//! A config compiled for serving: the route table and each route's upstreams, with the
//! registry's rules beside them.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::Method;

use crate::config::{Config, Route};
use crate::pattern::Matcher;
use crate::proxy::Upstreams;
use crate::registry::{Freshness, Rules, Snapshot};

/// A config compiled for serving: matchers built, upstream cursors ready. Swapped whole on
/// reload; a request keeps the one it started with.
///
/// A registry change (a scope or client changed through the admin API, on any node) swaps in
/// a runtime that shares the config, routes and upstreams (with their health) of the one
/// before and has new [`Rules`].
pub struct Runtime {
    pub config: Arc<Config>,
    pub(super) routes: Arc<RouteTable>,
    /// The scopes in force (file and store) and the disabled clients.
    pub rules: Rules,
    upstreams: Arc<[Upstreams]>,
}

impl Runtime {
    pub fn new(config: Config, snapshot: &Snapshot, freshness: Arc<Freshness>) -> Runtime {
        Runtime {
            routes: Arc::new(RouteTable::new(&config.routes)),
            rules: Rules::new(&config, snapshot, freshness),
            upstreams: config
                .routes
                .iter()
                .map(|r| Upstreams::new(&r.upstreams, r.upstream_ca.as_ref()))
                .collect(),
            config: Arc::new(config),
        }
    }

    /// This runtime with the registry as `snapshot` says.
    pub(super) fn with_registry(&self, snapshot: &Snapshot, freshness: Arc<Freshness>) -> Runtime {
        Runtime {
            config: Arc::clone(&self.config),
            routes: Arc::clone(&self.routes),
            rules: Rules::new(&self.config, snapshot, freshness),
            upstreams: Arc::clone(&self.upstreams),
        }
    }

    /// The bearer routes no scope in force (file or store) covers.
    pub(super) fn unreachable(&self) -> Vec<usize> {
        let scopes: Vec<_> = self.rules.all().iter().map(|(s, _)| s.clone()).collect();
        crate::config::unreachable_routes(&self.config.routes, &scopes)
    }

    /// The route serving `method` + normalised `path` on `host`.
    pub fn route(&self, host: Option<&str>, method: &Method, path: &str) -> Option<&Route> {
        self.routes
            .find(host, method, path)
            .map(|i| &self.config.routes[i])
    }

    /// Like [`Runtime::route`], with the route's upstreams.
    pub(super) fn route_with_upstreams(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
    ) -> Option<(&Route, &Upstreams)> {
        let i = self.routes.find(host, method, path)?;
        Some((&self.config.routes[i], &self.upstreams[i]))
    }
}

/// Routes compiled per host: the most specific pattern wins (longest literal prefix, then
/// literal over `{id}` over `*`), and on a tie a route bound to the request's host beats one
/// that is not.
pub(super) struct RouteTable {
    any_host: Matcher<usize>,
    by_host: HashMap<String, Matcher<usize>>,
}

impl RouteTable {
    pub(super) fn new(routes: &[Route]) -> RouteTable {
        let mut by_host: HashMap<String, Vec<_>> = HashMap::new();
        let mut any = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            match &r.host {
                Some(h) => by_host
                    .entry(h.clone())
                    .or_default()
                    .push((r.pattern.clone(), i)),
                None => any.push((r.pattern.clone(), i)),
            }
        }
        RouteTable {
            any_host: Matcher::new(any),
            by_host: by_host
                .into_iter()
                .map(|(h, e)| (h, Matcher::new(e)))
                .collect(),
        }
    }

    pub(super) fn has_hosts(&self) -> bool {
        !self.by_host.is_empty()
    }

    pub(super) fn find(&self, host: Option<&str>, method: &Method, path: &str) -> Option<usize> {
        let general = self.any_host.best(method, path);
        let specific = host
            .filter(|_| !self.by_host.is_empty())
            .and_then(|h| self.by_host.get(h))
            .and_then(|m| m.best(method, path));
        match (specific, general) {
            (Some((hp, &hi)), Some((gp, &gi))) => {
                // Each table's best is already its most specific; between the two, the
                // README's order: prefix length, then literal over `{id}` over `*`, and only
                // on a tie of both the host-bound route.
                let host_wins = hp.path_precedence() >= gp.path_precedence();
                Some(if host_wins { hi } else { gi })
            }
            (Some((_, &i)), None) | (None, Some((_, &i))) => Some(i),
            (None, None) => None,
        }
    }
}
