//! `[store]` → [`StoreConfig`]: the backend, its URL, prefix, cache and sealing key.

use super::*;

impl Validator<'_> {
    pub(super) fn store(&mut self, raw: Option<super::raw::RawStore>) -> StoreConfig {
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
                Backend::Memory
            }
            "redis" => {
                if let Some(mode) = &raw.mode {
                    match self.string(mode).as_str() {
                        "standalone" => {}
                        "cluster" => self.err(
                            mode,
                            "mode = \"cluster\" is not supported by this build yet; use one Redis server",
                        ),
                        other => self.err(
                            mode,
                            format!("unknown mode {other:?} (expected \"standalone\" or \"cluster\")"),
                        ),
                    }
                }
                let url = match (&raw.url, &raw.urls) {
                    (Some(url), None) => Some((self.string(url), url.span())),
                    (None, Some(urls)) if urls.get_ref().len() == 1 => {
                        let u = &urls.get_ref()[0];
                        Some((self.string(u), u.span()))
                    }
                    (None, Some(urls)) => {
                        self.d.error(
                            urls.span(),
                            "several `urls` need mode = \"cluster\"; use `url` for one server",
                        );
                        None
                    }
                    (Some(url), Some(_)) => {
                        self.err(url, "set either `url` or `urls`, not both");
                        None
                    }
                    (None, None) => {
                        self.err(&raw.backend, "backend = \"redis\" needs `url`");
                        None
                    }
                };
                let url = url.map(|(url, span)| {
                    if url.starts_with("rediss://") {
                        self.d.error(
                            span,
                            "rediss:// (TLS to Redis) is not supported by this build yet",
                        );
                    } else if !url.starts_with("redis://") {
                        self.d.error(span, "Redis URL must start with redis://");
                    } else if let Err(e) = redis::Client::open(url.as_str()) {
                        self.d.error(span, format!("invalid Redis URL: {e}"));
                    }
                    url
                });
                Backend::Redis {
                    url: url.unwrap_or_default(),
                }
            }
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
