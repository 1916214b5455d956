//! Request-path normalisation and pattern matching (`src/pattern*`), as the gateway uses them:
//! normalise, match routes and scopes, strip the route's prefix, forward.
//!
//! Properties: no panic; the normalised path is canonical (normalising it again changes
//! nothing and allocates nothing), ASCII, holds no `//`, no dot segment and no segment a
//! servlet container would read as one (`..;`); the compiled matcher finds exactly the patterns
//! the reference matcher does; two patterns that match one request overlap; and the path the
//! upstream receives after `strip_prefix` is canonical too and, with the prefix put back, is
//! the path that was matched, so every pattern answers the same for both.
//!
//! Input: byte 0 = method (bits 0-2) and how many segments of the first pattern's literal
//! prefix the route strips (bits 3-4, 0 = none); then UTF-8 lines: the raw request path, then
//! up to 8 patterns (the first is the route).

#![no_main]

use std::borrow::Cow;

use hyper::Method;
use libfuzzer_sys::fuzz_target;
use tollgate::fuzzing::{Matcher, Pattern, normalize, strip_prefix};

const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "DELETE", "OPTIONS", "PURGE"];

/// What a servlet container makes a dot segment of: decode `%2e` and `%3b`, cut at the first
/// `;`, then `.` or `..` (written independently of the normaliser).
fn servlet_dot(seg: &str) -> bool {
    let decoded = seg.replace("%2E", ".").replace("%3B", ";");
    let name = decoded.split(';').next().unwrap_or("");
    name == "." || name == ".."
}

fn assert_canonical(path: &str, what: &str) {
    assert!(
        matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path),
        "{what} {path:?} is not canonical: {:?}",
        normalize(path)
    );
    assert!(path.is_ascii() && path.starts_with('/'), "{what} {path:?}");
    assert!(!path.contains("//"), "{what} {path:?} has an empty segment");
    for seg in path.split('/') {
        assert!(
            seg != "." && seg != "..",
            "{what} {path:?} has a dot segment"
        );
        assert!(
            !servlet_dot(seg),
            "{what} {path:?} has a servlet dot segment"
        );
        assert!(!seg.contains(['\\', '\0']), "{what} {path:?}");
    }
}

/// The leading `n` segments of `literal` (a pattern's literal prefix), if that is a valid
/// `strip_prefix` (what the config accepts: starts with '/', does not end with one).
fn prefix_of(literal: &str, n: usize) -> Option<String> {
    if n == 0 {
        return None;
    }
    let segs: Vec<&str> = literal.split('/').skip(1).take(n).collect();
    if segs.len() < n || segs.iter().any(|s| s.is_empty()) {
        return None;
    }
    Some(segs.iter().map(|s| format!("/{s}")).collect())
}

fuzz_target!(|data: &[u8]| {
    let [flags, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut lines = text.split('\n');
    let raw = lines.next().unwrap_or("");
    let patterns: Vec<Pattern> = lines
        .take(8)
        .filter_map(|l| Pattern::parse(l).ok())
        .collect();
    let Ok(method) = Method::from_bytes(METHODS[usize::from(flags & 7) % METHODS.len()].as_bytes())
    else {
        return;
    };

    for p in &patterns {
        let lit = p.literal_prefix();
        if !lit.is_empty() {
            assert_canonical(lit, "literal prefix of a pattern");
        }
    }

    let Ok(path) = normalize(raw) else {
        return;
    };
    if let Cow::Owned(copy) = &path {
        assert_ne!(copy, raw, "{raw:?} is canonical but was copied");
    }
    assert_canonical(&path, "normalised path");

    let reference: Vec<usize> = (0..patterns.len())
        .filter(|&i| patterns[i].matches(&method, &path))
        .collect();
    let matcher = Matcher::new(patterns.iter().cloned().zip(0usize..));
    let mut compiled: Vec<usize> = matcher
        .matching(&method, &path)
        .into_iter()
        .map(|(_, &i)| i)
        .collect();
    compiled.sort_unstable();
    assert_eq!(
        reference, compiled,
        "compiled matcher disagrees on {path:?}"
    );
    assert_eq!(matcher.any(&method, &path, |_| true), !reference.is_empty());
    assert_eq!(
        matcher.best(&method, &path).is_some(),
        !reference.is_empty()
    );
    for &i in &reference {
        for &j in &reference {
            assert!(
                patterns[i].overlaps(&patterns[j]),
                "{} and {} both match {method} {path:?} but do not overlap",
                patterns[i],
                patterns[j]
            );
        }
    }

    // The first pattern is the route; what does its upstream receive?
    let Some(route) = patterns.first().filter(|r| r.matches(&method, &path)) else {
        return;
    };
    let prefix = prefix_of(route.literal_prefix(), usize::from(flags >> 3 & 3));
    let forwarded = match &prefix {
        Some(p) => strip_prefix(&path, p),
        None => &path,
    };
    assert_canonical(forwarded, "forwarded path");
    let seen = match &prefix {
        Some(p) if forwarded == "/" && *path == **p => path.to_string(),
        Some(p) => format!("{p}{forwarded}"),
        None => forwarded.to_owned(),
    };
    assert_eq!(seen, *path, "prefix {prefix:?}: forwarded {forwarded:?}");
    for p in &patterns {
        assert_eq!(p.matches(&method, &path), p.matches(&method, &seen), "{p}");
    }
});
