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
        // SPEC §3: dot segments with `;` parameters, as servlet containers read them.
        ("/abc/..;/private/x", Err(DotWithParameters)),
        ("/abc/..;", Err(DotWithParameters)),
        ("/abc/..;/", Err(DotWithParameters)),
        ("/..;", Err(DotWithParameters)),
        ("/abc/..;x/y", Err(DotWithParameters)),
        ("/abc/..;a=1;b=2/y", Err(DotWithParameters)),
        ("/abc/.;jsessionid=1", Err(DotWithParameters)),
        ("/abc/.;/x", Err(DotWithParameters)),
        ("/abc/%2e%2e;/x", Err(DotWithParameters)),
        ("/abc/%2E.;x", Err(DotWithParameters)),
        ("/abc/.%2e;", Err(DotWithParameters)),
        ("/abc/%2e;x", Err(DotWithParameters)),
        ("/abc/..%3B/x", Err(DotWithParameters)),
        ("/abc/..%3bx", Err(DotWithParameters)),
        ("/abc/%2e%2e%3b", Err(DotWithParameters)),
        ("/abc/.%3B", Err(DotWithParameters)),
        ("/abc//..;/x", Err(DotWithParameters)),
        ("/abc/;x", Ok("/abc/;x")),
        ("/abc/;", Ok("/abc/;")),
        ("/abc/...;x", Ok("/abc/...;x")),
        ("/abc/%2e%2e%2e;x", Ok("/abc/...;x")),
        ("/abc/..x;y", Ok("/abc/..x;y")),
        ("/abc/x..;", Ok("/abc/x..;")),
        ("/abc/a;..", Ok("/abc/a;..")),
        ("/abc/a;../b", Ok("/abc/a;../b")),
        ("/abc/%3B..", Ok("/abc/%3B..")),
        ("/abc/..%3A", Ok("/abc/..%3A")),
        ("/abc/..%2", Err(BadPercentEncoding)),
        ("/jsp/x.jsp;jsessionid=1", Ok("/jsp/x.jsp;jsessionid=1")),
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
        "{", "~", "//", "%2f", "%5c", "%00", "\\", "%x", ";", "%3b", "%3B",
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
                    assert!(!servlet_dot_segment(seg), "servlet dot segment in {out:?}");
                }
            }
            Err(PathError::EscapesRoot) => assert!(!has_bad, "{input:?}"),
            Err(PathError::DotWithParameters) => assert!(
                input.split('/').any(servlet_dot_segment),
                "{input:?} refused as a dot segment with parameters"
            ),
            Err(e) => assert!(has_bad, "{input:?} refused with {e}"),
        }
    }
}

#[test]
fn strip_prefix_keeps_the_path_absolute() {
    let cases = [
        ("/abc/x/y", "/abc", "/x/y"),
        ("/abc/", "/abc", "/"),
        ("/abc", "/abc", "/"),
        ("/abcd/x", "/abc", "/abcd/x"),
        ("/other/x", "/abc", "/other/x"),
        ("/a/b/c", "/a/b", "/c"),
    ];
    for (path, prefix, upstream) in cases {
        assert_eq!(strip_prefix(path, prefix), upstream, "{path} - {prefix}");
    }
}

/// What a servlet container makes a dot segment of, written out independently of
/// `is_dot_with_parameters`: decode `%2e`/`%3b`, cut at the first `;`, then `.` or `..`.
fn servlet_dot_segment(raw: &str) -> bool {
    let decoded = raw
        .replace("%2e", ".")
        .replace("%2E", ".")
        .replace("%3b", ";")
        .replace("%3B", ";");
    match decoded.split_once(';') {
        Some((name, _)) => name == "." || name == "..",
        None => false,
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
        ("/a/..;", DotSegment),
        ("/a/.;x/b", DotSegment),
        ("/a/%2e%2e%3b/*", DotSegment),
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

mod matching;
