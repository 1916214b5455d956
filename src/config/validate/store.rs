//! `[store]` → [`StoreConfig`]: the backend, its URL, prefix, cache and sealing key.

use super::*;

impl Validator<'_> {
    pub(super) fn store(&mut self, raw: Option<super::raw::RawStore>, base: &Path) -> StoreConfig {
        let Some(raw) = raw else {
            return StoreConfig {
                backend: Backend::Memory,
                prefix: "tollgate:".to_owned(),
                cache_ttl: Duration::from_secs(30),
                cache_capacity: DEFAULT_CACHE_CAPACITY,
                encryption_key: None,
            };
        };
        let backend = match self.string(&raw.backend).as_str() {
            "memory" => {
                for (key, present) in [("url", raw.url.is_some()), ("urls", raw.urls.is_some())] {
                    if present {
                        self.err(
                            &raw.backend,
                            format!("`{key}` is only used with backend = \"redis\""),
                        );
                    }
                }
                if let Some(ca) = &raw.ca {
                    self.err(
                        ca,
                        "`ca` is only used with backend = \"redis\" and rediss://",
                    );
                }
                Backend::Memory
            }
            "redis" => Backend::Redis(self.redis(&raw, base)),
            other => {
                self.err(
                    &raw.backend,
                    format!("unknown store backend {other:?} (expected \"memory\" or \"redis\")"),
                );
                Backend::Memory
            }
        };
        let prefix = raw
            .prefix
            .as_ref()
            .map_or_else(|| "tollgate:".to_owned(), |p| self.string(p));
        // Keys carry Redis Cluster hash tags after the prefix; a brace in the prefix would
        // become the tag of every key and put the whole store in one slot.
        if let Some(p) = &raw.prefix
            && prefix.contains(['{', '}'])
        {
            self.err(
                p,
                "prefix may not contain `{` or `}` (they are Redis Cluster hash tags)",
            );
        }
        let cache_ttl = self.duration_or(&raw.cache_ttl, Duration::from_secs(30));
        let cache_capacity = match &raw.cache_capacity {
            Some(n) if *n.get_ref() < 0 => {
                self.d
                    .error(n.span(), "cache_capacity must be 0 (no cache) or more");
                0
            }
            Some(n) => *n.get_ref() as usize,
            None => DEFAULT_CACHE_CAPACITY,
        };
        let encryption_key = self.encryption_key(&raw.encryption_key);
        StoreConfig {
            backend,
            prefix,
            cache_ttl,
            cache_capacity,
            encryption_key,
        }
    }
}

impl Validator<'_> {
    /// `url`/`urls`, `mode` and `ca` of a Redis store.
    fn redis(&mut self, raw: &super::raw::RawStore, base: &Path) -> RedisConfig {
        let cluster = match raw.mode.as_ref().map(|m| (m, self.string(m))) {
            None => false,
            Some((_, mode)) if mode == "standalone" => false,
            Some((_, mode)) if mode == "cluster" => true,
            Some((at, other)) => {
                self.err(
                    at,
                    format!("unknown mode {other:?} (expected \"standalone\" or \"cluster\")"),
                );
                false
            }
        };
        let urls: Vec<(String, std::ops::Range<usize>)> = match (&raw.url, &raw.urls) {
            (Some(url), None) => vec![(self.string(url), url.span())],
            (None, Some(urls)) if urls.get_ref().is_empty() => {
                self.d.error(urls.span(), "`urls` lists no server");
                Vec::new()
            }
            (None, Some(urls)) if urls.get_ref().len() > 1 && !cluster => {
                self.d.error(
                    urls.span(),
                    "several `urls` need mode = \"cluster\"; use `url` for one server",
                );
                Vec::new()
            }
            (None, Some(urls)) => urls
                .get_ref()
                .iter()
                .map(|u| (self.string(u), u.span()))
                .collect(),
            (Some(url), Some(_)) => {
                self.err(url, "set either `url` or `urls`, not both");
                Vec::new()
            }
            (None, None) => {
                let needs = if cluster {
                    "`urls` (the seed nodes)"
                } else {
                    "`url`"
                };
                self.err(&raw.backend, format!("backend = \"redis\" needs {needs}"));
                Vec::new()
            }
        };
        let mut tls = None;
        for (url, span) in &urls {
            let this_tls = if url.starts_with("rediss://") {
                true
            } else if url.starts_with("redis://") {
                false
            } else {
                self.d.error(
                    span.clone(),
                    "Redis URL must start with redis:// or rediss://",
                );
                continue;
            };
            if let Err(e) = redis::Client::open(url.as_str()) {
                self.d
                    .error(span.clone(), format!("invalid Redis URL: {e}"));
            }
            match tls {
                Some(earlier) if earlier != this_tls => self.d.error(
                    span.clone(),
                    "mix of redis:// and rediss:// seeds; use one for all",
                ),
                _ => tls = Some(this_tls),
            }
        }
        let ca = raw.ca.as_ref().and_then(|at| {
            if tls == Some(false) {
                self.err(at, "`ca` needs rediss:// (TLS) URLs");
                return None;
            }
            let file = base.join(self.string(at));
            match crate::config::tls::client_config(&file) {
                Err(e) => {
                    self.err(at, e);
                    None
                }
                Ok(_) => std::fs::read(&file)
                    .map_err(|e| {
                        self.err(at, format!("cannot read CA file {}: {e}", file.display()))
                    })
                    .ok(),
            }
        });
        RedisConfig {
            urls: urls.into_iter().map(|(u, _)| u).collect(),
            cluster,
            ca,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Backend, Config, RedisConfig};

    const REST: &str = r#"[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080"
"#;

    fn load(store: &str) -> Result<Config, Vec<String>> {
        let src = format!("[store]\n{store}\n{REST}");
        Config::from_str_with_env(Path::new("gw.toml"), &src, &|_| None).map_err(|e| e.0)
    }

    fn redis(store: &str) -> RedisConfig {
        match load(store).expect("loads").store.backend {
            Backend::Redis(r) => r,
            Backend::Memory => panic!("memory store"),
        }
    }

    fn error(store: &str) -> String {
        load(store).expect_err("refused").join("\n")
    }

    #[test]
    fn a_cluster_is_its_seed_nodes() {
        let r = redis(
            "backend = \"redis\"\nmode = \"cluster\"\nurls = [\"redis://10.0.0.1:7000\", \"redis://10.0.0.2:7000\"]",
        );
        assert!(r.cluster);
        assert_eq!(r.urls, ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]);
        // One seed is enough (the client learns the rest), given as `url` or `urls`.
        assert!(redis("backend = \"redis\"\nmode = \"cluster\"\nurl = \"redis://h:7000\"").cluster);
        assert!(!redis("backend = \"redis\"\nurl = \"rediss://h:6380/0\"").cluster);
    }

    #[test]
    fn cluster_and_tls_mistakes_are_located() {
        assert_eq!(
            error("backend = \"redis\"\nurls = [\"redis://a:1\", \"redis://b:1\"]"),
            "gw.toml:3:8: several `urls` need mode = \"cluster\"; use `url` for one server"
        );
        assert_eq!(
            error("backend = \"redis\"\nmode = \"cluster\""),
            "gw.toml:2:11: backend = \"redis\" needs `urls` (the seed nodes)"
        );
        assert_eq!(
            error("backend = \"redis\"\nmode = \"sentinel\"\nurl = \"redis://a:1\""),
            "gw.toml:3:8: unknown mode \"sentinel\" (expected \"standalone\" or \"cluster\")"
        );
        assert_eq!(
            error(
                "backend = \"redis\"\nmode = \"cluster\"\nurls = [\"redis://a:1\", \"rediss://b:1\"]"
            ),
            "gw.toml:4:24: mix of redis:// and rediss:// seeds; use one for all"
        );
        assert_eq!(
            error("backend = \"redis\"\nurl = \"redis://a:1\"\nca = \"ca.pem\""),
            "gw.toml:4:6: `ca` needs rediss:// (TLS) URLs"
        );
        assert_eq!(
            error("backend = \"redis\"\nurl = \"http://a:1\""),
            "gw.toml:3:7: Redis URL must start with redis:// or rediss://"
        );
        assert_eq!(
            error("backend = \"redis\"\nurl = \"redis://a:1\"\nprefix = \"tg{x}:\""),
            "gw.toml:4:10: prefix may not contain `{` or `}` (they are Redis Cluster hash tags)"
        );
        let missing =
            error("backend = \"redis\"\nurl = \"rediss://a:1\"\nca = \"/nonexistent/ca.pem\"");
        assert!(
            missing.starts_with("gw.toml:4:6: cannot read CA file /nonexistent/ca.pem"),
            "{missing}"
        );
    }
}
