//! The compiled matcher: precedence, backtracking, agreement with the reference matcher and
//! with a brute-force reading of the rules, large sets, and overlap detection.

use hyper::Method;

use super::*;

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
