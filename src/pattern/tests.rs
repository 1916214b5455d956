use std::borrow::Cow;

use hyper::Method;

use super::*;

fn pat(s: &str) -> Pattern {
    Pattern::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

/// Deterministic splitmix64, so a failing generated case reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

// ---- SPEC §3 -------------------------------------------------------------------------------

#[test]
fn spec_table_rows_hold_for_reference_and_compiled_matchers() {
    let rows: &[(&str, &[&str], &[&str])] = &[
        (
            "/abc/def",
            &["/abc/def"],
            &["/abc/def/", "/abc/defg", "/abc", "/abc/def/x"],
        ),
        (
            "/abc/{id}",
            &["/abc/1", "/abc/x-y"],
            &["/abc", "/abc/", "/abc/1/2", "/abc/1/"],
        ),
        (
            "/abc/+",
            &["/abc/1", "/abc/x-y"],
            &["/abc", "/abc/", "/abc/1/2", "/abc/1/"],
        ),
        (
            "/abc/*",
            &["/abc/", "/abc/1", "/abc/1/2/3", "/abc/1/"],
            &["/abc", "/abcd", "/ab/c"],
        ),
        ("/*", &["/", "/a", "/a/", "/a/b/c", "/a/b/c/"], &[]),
        ("/abc/", &["/abc/"], &["/abc", "/abc/x"]),
        ("/", &["/"], &["/a", "/a/"]),
        ("/{a}/{b}", &["/x/y"], &["/x", "/x/", "/x/y/", "/x/y/z"]),
        ("/a/{id}/b", &["/a/1/b"], &["/a//b", "/a/b", "/a/1/b/"]),
    ];
    for &(p, yes, no) in rows {
        let pattern = pat(p);
        let matcher = Matcher::new([(pattern.clone(), ())]);
        for &path in yes {
            assert!(
                pattern.matches(&Method::GET, path),
                "{p} should match {path}"
            );
            assert!(
                matcher.any(&Method::GET, path, |_| true),
                "trie: {p} should match {path}"
            );
        }
        for &path in no {
            assert!(
                !pattern.matches(&Method::GET, path),
                "{p} must not match {path}"
            );
            assert!(
                !matcher.any(&Method::GET, path, |_| true),
                "trie: {p} must not match {path}"
            );
        }
    }
}

#[test]
fn method_lists_limit_the_methods_without_implicit_head() {
    let cases: &[(&str, Method, bool)] = &[
        ("GET /x", Method::GET, true),
        ("GET /x", Method::POST, false),
        ("GET /x", Method::HEAD, false),
        ("GET,HEAD /x", Method::HEAD, true),
        ("GET, HEAD /x", Method::HEAD, true),
        ("GET,HEAD /x", Method::DELETE, false),
        ("/x", Method::DELETE, true),
        ("PURGE /x", Method::from_bytes(b"PURGE").unwrap(), true),
    ];
    for (p, method, expected) in cases {
        let pattern = pat(p);
        assert_eq!(
            pattern.matches(method, "/x"),
            *expected,
            "{p} with {method}"
        );
        let matcher = Matcher::new([(pattern, ())]);
        assert_eq!(
            matcher.any(method, "/x", |_| true),
            *expected,
            "trie: {p} with {method}"
        );
    }
}

// ---- normalize -----------------------------------------------------------------------------

#[test]
fn normalize_table() {
    use PathError::*;
    let cases: &[(&str, Result<&str, PathError>)] = &[
        ("/abc/def", Ok("/abc/def")),
        ("/", Ok("/")),
        ("/abc/", Ok("/abc/")),
        ("/abc/../x", Ok("/x")),
        ("/abc/%2e%2e/x", Ok("/x")),
        ("/abc/%2E%2e/x", Ok("/x")),
        ("/abc/.%2e/x", Ok("/x")),
        ("/a/b/..", Ok("/a/")),
        ("/a/b/../", Ok("/a/")),
        ("/a/./b", Ok("/a/b")),
        ("/a/.", Ok("/a/")),
        ("/a/%2e", Ok("/a/")),
        ("/a/..", Ok("/")),
        ("/.", Ok("/")),
        ("/a/..b/...", Ok("/a/..b/...")),
        ("/..", Err(EscapesRoot)),
        ("/../a", Err(EscapesRoot)),
        ("/abc/../../x", Err(EscapesRoot)),
        ("/abc/%2e%2e/%2e%2e/x", Err(EscapesRoot)),
        ("/a//b", Ok("/a/b")),
        ("//", Ok("/")),
        ("///a///", Ok("/a/")),
        ("/a//../b", Ok("/b")),
        ("/a%2Fb", Err(EncodedSeparator)),
        ("/a%2fb", Err(EncodedSeparator)),
        ("/a%5Cb", Err(EncodedSeparator)),
        ("/a%5cb", Err(EncodedSeparator)),
        ("/a%00", Err(NulByte)),
        ("/a\0b", Err(NulByte)),
        ("/a\\b", Err(Backslash)),
        ("/a/..\\b", Err(Backslash)),
        ("/%7Euser", Ok("/~user")),
        ("/%7euser", Ok("/~user")),
        ("/%41%62%2D%5F%2E", Ok("/Ab-_.")),
        ("/a%20b", Ok("/a%20b")),
        ("/a%3a", Ok("/a%3A")),
        ("/a%25", Ok("/a%25")),
        ("/a%252e%252e", Ok("/a%252e%252e")),
        ("/a%zz", Err(BadPercentEncoding)),
        ("/a%4", Err(BadPercentEncoding)),
        ("/a%", Err(BadPercentEncoding)),
        ("/a%%41", Err(BadPercentEncoding)),
        ("relative", Err(NotAbsolute)),
        ("", Err(NotAbsolute)),
        ("*", Err(NotAbsolute)),
        ("/café", Ok("/caf%C3%A9")),
        ("/a\"b{c}|d", Ok("/a%22b%7Bc%7D%7Cd")),
        ("/a;b=c,d@e:f!$&'()*+", Ok("/a;b=c,d@e:f!$&'()*+")),
    ];
    for &(input, expected) in cases {
        let got = normalize(input);
        assert_eq!(
            got.as_deref().map_err(|e| *e),
            expected,
            "normalize({input:?})"
        );
    }
}

#[test]
fn normalize_borrows_when_nothing_changes() {
    for path in ["/abc/def", "/", "/abc/", "/a%20b/%C3%A9", "/a;b=1/~x"] {
        assert!(
            matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path),
            "{path}"
        );
    }
    for path in ["/a//b", "/a/./b", "/%7e", "/a%3a", "/é"] {
        assert!(matches!(normalize(path), Ok(Cow::Owned(_))), "{path}");
    }
}

#[test]
fn normalize_is_idempotent_and_yields_canonical_paths() {
    const TOKENS: &[&str] = &[
        "/", "/", "/", "a", "b", ".", "..", "%2e", "%2E", "%41", "%7e", "%7E", "%20", "%3a", "é",
        "{", "~", "//", "%2f", "%5c", "%00", "\\", "%x",
    ];
    const BAD: &[&str] = &["%2f", "%5c", "%00", "\\", "%x"];
    let mut rng = Rng(7);
    for _ in 0..20_000 {
        let mut input = String::from("/");
        for _ in 0..rng.below(10) {
            input.push_str(rng.pick(TOKENS));
        }
        let has_bad = BAD.iter().any(|b| input.contains(b));
        match normalize(&input) {
            Ok(out) => {
                assert!(!has_bad, "{input:?} should be refused, got {out:?}");
                if let Cow::Owned(o) = &out {
                    assert_ne!(*o, input, "{input:?} is canonical but was copied");
                }
                assert!(
                    matches!(normalize(&out), Ok(Cow::Borrowed(again)) if again == out),
                    "not idempotent: {input:?} -> {out:?}"
                );
                assert!(
                    out.is_ascii() && out.starts_with('/') && !out.contains("//"),
                    "{out:?}"
                );
                for seg in out.split('/') {
                    assert!(seg != "." && seg != "..", "dot segment left in {out:?}");
                }
            }
            Err(PathError::EscapesRoot) => assert!(!has_bad, "{input:?}"),
            Err(e) => assert!(has_bad, "{input:?} refused with {e}"),
        }
    }
}

// ---- Pattern parsing -----------------------------------------------------------------------

#[test]
fn pattern_parse_accepts_and_canonicalises() {
    let p = pat("  GET, HEAD  /reports/{id}  ");
    assert_eq!(p.as_str(), "GET, HEAD  /reports/{id}");
    assert_eq!(p.methods(), Some(&[Method::GET, Method::HEAD][..]));
    assert_eq!(pat("GET,GET /x").methods(), Some(&[Method::GET][..]));
    assert_eq!(pat("/x").methods(), None);
    assert_eq!("/abc/*".parse::<Pattern>(), Ok(pat("/abc/*")));
    assert_eq!(pat("GET /x").to_string(), "GET /x");

    let prefixes = [
        ("/abc/*", "/abc"),
        ("/a/{id}/b", "/a"),
        ("/*", ""),
        ("/{id}", ""),
        ("/abc/def", "/abc/def"),
        ("/abc/", "/abc/"),
        ("/", "/"),
        ("/%7Euser/+", "/~user"),
        ("/café/*", "/caf%C3%A9"),
    ];
    for (p, prefix) in prefixes {
        assert_eq!(pat(p).literal_prefix(), prefix, "{p}");
    }

    // Literals are compared in canonical form, so any spelling of the same path matches.
    let p = pat("/%7euser/caf%c3%a9/a%3a");
    for raw in ["/~user/café/a%3a", "/%7Euser/caf%C3%A9/a%3A"] {
        assert!(p.matches(&Method::GET, &normalize(raw).unwrap()), "{raw}");
    }
    // An escaped reserved character is not the same as the raw one (RFC 3986 §6.2.2.2).
    assert!(!p.matches(&Method::GET, &normalize("/~user/café/a:").unwrap()));
    assert!(pat("/café").matches(&Method::GET, &normalize("/caf%c3%a9").unwrap()));
}

#[test]
fn pattern_parse_errors() {
    use PatternError::*;
    let bad = |s: &str| BadSegment(s.to_owned());
    let cases: Vec<(&str, PatternError)> = vec![
        ("", Empty),
        ("   ", Empty),
        ("abc", NotAbsolute),
        ("GET abc", NotAbsolute),
        ("GET", NotAbsolute),
        ("get /x", BadMethod("get".into())),
        ("Get /x", BadMethod("Get".into())),
        ("GET, /x", BadMethod("".into())),
        ("GET HEAD /x", BadMethod("GET HEAD".into())),
        ("GET;HEAD /x", BadMethod("GET;HEAD".into())),
        ("/a//b", EmptySegment),
        ("//", EmptySegment),
        ("/a/./b", DotSegment),
        ("/a/..", DotSegment),
        ("/a/%2e%2E", DotSegment),
        ("/*/a", WildcardNotLast),
        ("/a/*/", WildcardNotLast),
        ("/{id", bad("{id")),
        ("/id}", bad("id}")),
        ("/{}", bad("{}")),
        ("/a*b", bad("a*b")),
        ("/**", bad("**")),
        ("/{a}{b}", bad("{a}{b}")),
        ("/{id}x", bad("{id}x")),
        ("/x{id}", bad("x{id}")),
        ("/{a.b}", bad("{a.b}")),
        ("/a?x=1", bad("a?x=1")),
        ("/a#f", bad("a#f")),
        ("/a%2Fb", Path(PathError::EncodedSeparator)),
        ("/a%5cb", Path(PathError::EncodedSeparator)),
        ("/a\\b", Path(PathError::Backslash)),
        ("/a%zz", Path(PathError::BadPercentEncoding)),
        ("/a%00", Path(PathError::NulByte)),
    ];
    for (input, expected) in cases {
        assert_eq!(Pattern::parse(input), Err(expected), "{input:?}");
    }
}

// ---- Matcher -------------------------------------------------------------------------------

fn matcher_of(patterns: &[&str]) -> Matcher<usize> {
    Matcher::new(patterns.iter().enumerate().map(|(i, p)| (pat(p), i)))
}

fn texts<T>(found: &[(&Pattern, &T)]) -> Vec<String> {
    found.iter().map(|(p, _)| p.as_str().to_owned()).collect()
}

#[test]
fn matcher_backtracks_across_literal_param_and_wildcard_branches() {
    let m = matcher_of(&["/a/b/c", "/a/{x}/d", "/a/*", "/{y}/b/d"]);
    let found = m.matching(&Method::GET, "/a/b/d");
    assert_eq!(texts(&found), ["/a/{x}/d", "/a/*", "/{y}/b/d"]);
    assert_eq!(m.best(&Method::GET, "/a/b/d").map(|(_, v)| *v), Some(1));
    assert!(m.matching(&Method::GET, "/b/c/d").is_empty());
}

#[test]
fn best_picks_the_most_specific_pattern() {
    let cases: &[(&[&str], Method, &str, Option<&str>)] = &[
        (
            &["/*", "/abc/*", "/abc/def"],
            Method::GET,
            "/abc/def",
            Some("/abc/def"),
        ),
        (
            &["/*", "/abc/*", "/abc/def"],
            Method::GET,
            "/abc/x",
            Some("/abc/*"),
        ),
        (
            &["/*", "/abc/*", "/abc/def"],
            Method::GET,
            "/zzz",
            Some("/*"),
        ),
        (
            &["/*", "/abc/*", "/abc/def"],
            Method::GET,
            "/abc",
            Some("/*"),
        ),
        (
            &["/abc/*", "/abc/{id}"],
            Method::GET,
            "/abc/x",
            Some("/abc/{id}"),
        ),
        (&["/abc/*", "/abc/"], Method::GET, "/abc/", Some("/abc/")),
        (&["/*", "/"], Method::GET, "/", Some("/")),
        (
            &["/a/*", "/a/{id}/*"],
            Method::GET,
            "/a/b/c",
            Some("/a/{id}/*"),
        ),
        (
            &["/abc/{id}/ghi", "/abc/def/*"],
            Method::GET,
            "/abc/def/ghi",
            Some("/abc/def/*"),
        ),
        (&["/x", "GET /x"], Method::GET, "/x", Some("GET /x")),
        (&["/x", "GET /x"], Method::POST, "/x", Some("/x")),
        (&["GET /x"], Method::POST, "/x", None),
        (&[], Method::GET, "/x", None),
    ];
    for &(patterns, ref method, path, expected) in cases {
        let m = matcher_of(patterns);
        let best = m.best(method, path).map(|(p, _)| p.as_str());
        assert_eq!(best, expected, "{patterns:?} {method} {path}");
    }
    // Equal rank: the entry inserted first wins, and is listed first.
    let m = Matcher::new([(pat("/x"), "first"), (pat("/x"), "second")]);
    assert_eq!(m.best(&Method::GET, "/x").map(|(_, v)| *v), Some("first"));
    let order: Vec<_> = m
        .matching(&Method::GET, "/x")
        .iter()
        .map(|(_, v)| **v)
        .collect();
    assert_eq!(order, ["first", "second"]);
}

#[test]
fn matching_lists_most_specific_first() {
    let m = matcher_of(&["/*", "/abc/def", "/abc/*", "GET /abc/*", "/{x}/def"]);
    let found = m.matching(&Method::GET, "/abc/def");
    assert_eq!(
        texts(&found),
        ["/abc/def", "GET /abc/*", "/abc/*", "/{x}/def", "/*"]
    );
}

#[test]
fn any_stops_at_the_first_accepted_entry() {
    let m = matcher_of(&["/*", "/abc/*", "/abc/def"]);
    let mut calls = 0;
    assert!(m.any(&Method::GET, "/abc/def", |_| {
        calls += 1;
        true
    }));
    assert_eq!(calls, 1);
    calls = 0;
    assert!(!m.any(&Method::GET, "/abc/def", |_| {
        calls += 1;
        false
    }));
    assert_eq!(calls, 3);
    assert!(m.any(&Method::GET, "/abc/def", |v| *v == 0));
    assert!(!m.any(&Method::GET, "/zzz", |v| *v == 1));
}

#[test]
fn matcher_refuses_paths_that_are_not_absolute() {
    let m = matcher_of(&["/*"]);
    assert_eq!((m.len(), m.is_empty()), (1, false));
    assert!(Matcher::<()>::new([]).is_empty());
    for path in ["", "abc", "*"] {
        assert!(!m.any(&Method::GET, path, |_| true), "{path:?}");
        assert!(m.best(&Method::GET, path).is_none());
        assert!(!pat("/*").matches(&Method::GET, path));
    }
}

/// Brute-force precedence, written from the documented rules rather than from `Rank`.
fn brute_best(patterns: &[Pattern], method: &Method, path: &str) -> Option<usize> {
    let key = |p: &Pattern| {
        let text = p.as_str().rsplit(' ').next().unwrap_or_default();
        let kind = if text.ends_with("/*") {
            0
        } else if text.contains('{') || text.split('/').any(|s| s == "+") {
            1
        } else {
            2
        };
        let segments = text.matches('/').count();
        (
            p.literal_prefix().len(),
            kind,
            segments,
            p.methods().is_some(),
        )
    };
    let matching = (0..patterns.len()).filter(|&i| patterns[i].matches(method, path));
    // `max_by_key` keeps the last maximum; iterate backwards so the first inserted wins.
    matching.rev().max_by_key(|&i| key(&patterns[i]))
}

#[test]
fn compiled_matcher_agrees_with_reference_matcher() {
    const SEGS: &[&str] = &["a", "b", "c", "{x}", "+"];
    const ENDS: &[&str] = &["", "", "/", "/*"];
    const METHODS: &[&str] = &["", "", "GET ", "GET,HEAD ", "POST "];
    const PATH_SEGS: &[&str] = &["a", "b", "c", "d"];
    let methods = [Method::GET, Method::HEAD, Method::POST];
    for seed in 1..=4 {
        let mut rng = Rng(seed);
        let mut patterns = Vec::new();
        for _ in 0..250 {
            let mut path = String::new();
            for _ in 0..rng.below(5) {
                path.push('/');
                path.push_str(rng.pick(SEGS));
            }
            match rng.pick(ENDS) {
                "" if path.is_empty() => path.push('/'),
                end => path.push_str(end),
            }
            patterns.push(pat(&format!("{}{path}", rng.pick(METHODS))));
        }
        let m = Matcher::new(patterns.iter().cloned().enumerate().map(|(i, p)| (p, i)));
        assert_eq!(m.len(), patterns.len());
        for _ in 0..1500 {
            let mut path = String::new();
            for _ in 0..rng.below(6) {
                path.push('/');
                path.push_str(rng.pick(PATH_SEGS));
            }
            if path.is_empty() || rng.below(4) == 0 {
                path.push('/');
            }
            assert!(matches!(normalize(&path), Ok(Cow::Borrowed(_))), "{path}");
            for method in &methods {
                let expected: Vec<usize> = (0..patterns.len())
                    .filter(|&i| patterns[i].matches(method, &path))
                    .collect();
                let found = m.matching(method, &path);
                let mut got: Vec<usize> = found.iter().map(|(_, v)| **v).collect();
                let first = got.first().copied();
                got.sort_unstable();
                assert_eq!(got, expected, "seed {seed}: {method} {path}");
                let best = m.best(method, &path).map(|(_, v)| *v);
                assert_eq!(
                    best,
                    brute_best(&patterns, method, &path),
                    "seed {seed}: {method} {path}"
                );
                assert_eq!(first, best, "matching() must list best() first");
                let odd = expected.iter().any(|i| i % 2 == 1);
                assert_eq!(m.any(method, &path, |v| v % 2 == 1), odd, "{method} {path}");
            }
        }
    }
}

#[test]
fn large_matcher_stays_correct() {
    let n = 100_000;
    let entries = (0..n).map(|i| {
        let p = match i % 3 {
            0 => format!("/svc{i}/*"),
            1 => format!("GET /svc{i}/items/{{id}}"),
            _ => format!("/svc{i}/exact"),
        };
        (pat(&p), i)
    });
    let m = Matcher::new(entries);
    assert_eq!(m.len(), n);
    assert_eq!(
        m.best(&Method::GET, "/svc300/x/y").map(|(_, v)| *v),
        Some(300)
    );
    assert_eq!(
        m.best(&Method::GET, "/svc301/items/9").map(|(_, v)| *v),
        Some(301)
    );
    assert!(m.best(&Method::POST, "/svc301/items/9").is_none());
    assert_eq!(
        m.best(&Method::GET, "/svc99998/exact").map(|(_, v)| *v),
        Some(99998)
    );
    assert!(m.best(&Method::GET, "/svc99998/exact/").is_none());
    assert!(m.best(&Method::GET, "/svc100000/x").is_none());
}

#[test]
fn overlaps_table() {
    let cases = [
        ("/abc/*", "/abc/def", true),
        ("/abc/*", "/abc/", true),
        ("/abc/*", "/abc", false),
        ("/abc/*", "/*", true),
        ("/*", "/", true),
        ("/x/{id}", "/x/", false),
        ("/x/{id}", "/x/+", true),
        ("/x/{id}", "/x/7", true),
        ("/x/{id}", "/x/7/8", false),
        ("/{a}/b", "/a/{b}", true),
        ("/a/b", "/a/c", false),
        ("GET /x", "POST /x", false),
        ("GET,HEAD /x", "HEAD /x", true),
        ("GET /x", "/x", true),
    ];
    for (a, b, expected) in cases {
        assert_eq!(pat(a).overlaps(&pat(b)), expected, "{a} vs {b}");
        assert_eq!(pat(b).overlaps(&pat(a)), expected, "{b} vs {a}");
    }
}

#[test]
fn overlaps_agrees_with_a_search_for_a_common_request() {
    const SEGS: &[&str] = &["a", "b", "{x}", "+"];
    const ENDS: &[&str] = &["", "/", "/*"];
    const METHODS: &[&str] = &["", "GET ", "GET,HEAD ", "POST "];
    // Every path of up to 4 segments over {a, b, c}, with and without a trailing slash: long
    // enough to hold a common match of any two patterns generated below, if there is one.
    let mut paths = vec![String::new()];
    for depth in 0..4 {
        let start = paths.len() - 3usize.pow(depth);
        for i in start..paths.len() {
            for seg in ["a", "b", "c"] {
                let next = format!("{}/{seg}", paths[i]);
                paths.push(next);
            }
        }
    }
    let paths: Vec<String> = paths
        .iter()
        .flat_map(|p| [p.clone(), format!("{p}/")])
        .filter(|p| !p.is_empty())
        .collect();
    let methods = [Method::GET, Method::HEAD, Method::POST, Method::PUT];
    let mut rng = Rng(11);
    let patterns: Vec<Pattern> = (0..80)
        .map(|_| {
            let mut path = String::new();
            for _ in 0..rng.below(3) {
                path.push('/');
                path.push_str(rng.pick(SEGS));
            }
            match rng.pick(ENDS) {
                "" if path.is_empty() => path.push('/'),
                end => path.push_str(end),
            }
            pat(&format!("{}{path}", rng.pick(METHODS)))
        })
        .collect();
    let hits: Vec<Vec<bool>> = patterns
        .iter()
        .map(|p| {
            let requests = methods
                .iter()
                .flat_map(|m| paths.iter().map(move |path| (m, path)));
            requests.map(|(m, path)| p.matches(m, path)).collect()
        })
        .collect();
    for (i, p) in patterns.iter().enumerate() {
        for (j, q) in patterns.iter().enumerate() {
            let common = hits[i].iter().zip(&hits[j]).any(|(x, y)| *x && *y);
            assert_eq!(p.overlaps(q), common, "{p} vs {q}");
        }
    }
}
