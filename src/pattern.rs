//! Path patterns for routes and scopes: parsing, request-path normalisation, and a compiled matcher.
//!
//! Request paths and pattern literals are brought to one canonical form (see [`normalize`]), so
//! matching is a plain string comparison per segment: what Tollgate authorises is byte for byte
//! what the upstream receives. The canonical form is pure ASCII: escapes of unreserved characters
//! are decoded, every other escape has uppercase hex, and raw bytes that RFC 3986 does not allow
//! in a path segment (non-ASCII, `"`, `{`, `|`, ...) are percent-encoded.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use hyper::Method;

mod matcher;

pub use matcher::Matcher;

/// Why a request path was refused (→ HTTP 400 by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path does not start with '/'")]
    NotAbsolute,
    #[error("invalid percent-encoding: '%' must be followed by two hex digits")]
    BadPercentEncoding,
    #[error("encoded path separator (%2F or %5C) in path")]
    EncodedSeparator,
    #[error("NUL byte in path")]
    NulByte,
    #[error("backslash in path")]
    Backslash,
    #[error("path climbs above the root with '..'")]
    EscapesRoot,
    #[error("`.` or `..` segment with `;` parameters (like `..;`) in path")]
    DotWithParameters,
}

/// How the canonical form treats each raw byte of a path.
const KEEP: u8 = 0;
const ENCODE: u8 = 1;
const SLASH: u8 = 2;
const PERCENT: u8 = 3;
const BACKSLASH: u8 = 4;
const NUL: u8 = 5;

const fn byte_classes() -> [u8; 256] {
    let mut t = [ENCODE; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            // RFC 3986 pchar: unreserved / sub-delims / ":" / "@".
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => KEEP,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => KEEP,
            b':' | b'@' => KEEP,
            b'/' => SLASH,
            b'%' => PERCENT,
            b'\\' => BACKSLASH,
            0 => NUL,
            _ => ENCODE,
        };
        i += 1;
    }
    t
}

static CLASS: [u8; 256] = byte_classes();

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A decoded `%XX` escape.
struct Escape {
    value: u8,
    lowercase: bool,
}

/// Decodes the escape at `bytes[i]` (a '%'). Escapes that would let a path carry a separator or
/// a terminator past us in disguise are refused: upstreams disagree on what they mean.
fn escape_at(bytes: &[u8], i: usize) -> Result<Escape, PathError> {
    let digit = |k: usize| {
        bytes
            .get(i + k)
            .copied()
            .and_then(|b| hex_val(b).map(|v| (b, v)))
    };
    let (Some((hb, hi)), Some((lb, lo))) = (digit(1), digit(2)) else {
        return Err(PathError::BadPercentEncoding);
    };
    match hi << 4 | lo {
        b'/' | b'\\' => Err(PathError::EncodedSeparator),
        0 => Err(PathError::NulByte),
        value => Ok(Escape {
            value,
            lowercase: hb.is_ascii_lowercase() || lb.is_ascii_lowercase(),
        }),
    }
}

fn push_encoded(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0f)]));
}

/// Appends the canonical form of one segment (which holds no '/') to `out`.
fn push_segment(out: &mut String, seg: &str) -> Result<(), PathError> {
    let bytes = seg.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match CLASS[usize::from(b)] {
            PERCENT => {
                let esc = escape_at(bytes, i)?;
                if is_unreserved(esc.value) {
                    out.push(char::from(esc.value));
                } else {
                    push_encoded(out, esc.value);
                }
                i += 3;
                continue;
            }
            BACKSLASH => return Err(PathError::Backslash),
            NUL => return Err(PathError::NulByte),
            ENCODE => push_encoded(out, b),
            _ => out.push(char::from(b)),
        }
        i += 1;
    }
    Ok(())
}

fn is_dot_segment(seg: &[u8]) -> bool {
    seg == b"." || seg == b".."
}

/// Is `raw` (one undecoded segment) `.` or `..` once its `;` parameters are cut off? Java
/// servlet containers (Tomcat, Jetty, Spring) cut them before resolving dot segments, so to
/// them `/abc/..;/private` is `/private`, while to us `..;` would be a name under `/abc`.
/// Escaped dots count (`%2e%2e;`), and so does an escaped `;` (`..%3B`): some stacks decode
/// before they cut.
fn is_dot_with_parameters(raw: &[u8]) -> bool {
    let mut dots = 0;
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match (b, raw.get(i + 1), raw.get(i + 2)) {
            (b'.', _, _) => i += 1,
            (b'%', Some(b'2'), Some(b'e' | b'E')) => i += 3,
            (b';', _, _) | (b'%', Some(b'3'), Some(b'b' | b'B')) => {
                return (1..=2).contains(&dots);
            }
            _ => return false,
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    false
}

/// Checks `path` and tells whether it differs from its canonical form, without allocating.
fn needs_rewrite(path: &str) -> Result<bool, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut dirty = false;
    let mut seg_start = 1;
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        match CLASS[usize::from(b)] {
            SLASH => {
                let seg = bytes.get(seg_start..i).unwrap_or_default();
                if is_dot_with_parameters(seg) {
                    return Err(PathError::DotWithParameters);
                }
                dirty |= seg.is_empty() || is_dot_segment(seg);
                seg_start = i + 1;
            }
            PERCENT => {
                let esc = escape_at(bytes, i)?;
                dirty |= esc.lowercase || is_unreserved(esc.value);
                i += 3;
                continue;
            }
            BACKSLASH => return Err(PathError::Backslash),
            NUL => return Err(PathError::NulByte),
            ENCODE => dirty = true,
            _ => {}
        }
        i += 1;
    }
    let last = bytes.get(seg_start..).unwrap_or_default();
    if is_dot_with_parameters(last) {
        return Err(PathError::DotWithParameters);
    }
    Ok(dirty || is_dot_segment(last))
}

/// Normalise a request path (no query string; the caller strips it) to the canonical form that
/// is matched against patterns and sent upstream. The path must start with '/'.
///
/// - `%XX` must be valid hex; escapes of unreserved characters (ALPHA / DIGIT / `-._~`) are
///   decoded, other escapes keep their value with uppercase hex; `%2F`, `%5C` and `%00` are errors.
/// - A raw backslash or NUL is an error; other raw bytes that may not appear in a path segment
///   (non-ASCII, `"`, `{`, `}`, `|`, ...) are percent-encoded.
/// - Empty segments are merged (`/a//b` → `/a/b`, like nginx's `merge_slashes`), then dot
///   segments are resolved per RFC 3986 §5.2.4 on the decoded text (`%2e%2e` is `..`); a `..`
///   that would climb above the root is [`PathError::EscapesRoot`]. A trailing slash is kept.
/// - A segment that is `.` or `..` once its `;` parameters are cut off (`..;`, `.;x`,
///   `%2e%2e;`, `..%3B`) is [`PathError::DotWithParameters`]: servlet containers read it as a
///   dot segment, so the path they serve would not be the path we matched (SPEC §3).
///
/// Returns `Cow::Borrowed` without allocating when the path is already canonical.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !needs_rewrite(path)? {
        return Ok(Cow::Borrowed(path));
    }
    let body = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    // `out` holds the resolved segments, each preceded by '/', with no trailing slash.
    let mut out = String::with_capacity(path.len() + 8);
    let mut trailing = false;
    for raw in body.split('/') {
        let start = out.len();
        out.push('/');
        push_segment(&mut out, raw)?;
        let seg = out.get(start + 1..).unwrap_or_default();
        let (empty_or_dot, dotdot) = (seg.is_empty() || seg == ".", seg == "..");
        if empty_or_dot || dotdot {
            out.truncate(start);
            if dotdot {
                let parent = out.rfind('/').ok_or(PathError::EscapesRoot)?;
                out.truncate(parent);
            }
        }
        // Only the last segment decides: `/a/` and `/a/b/..` both end in a directory.
        trailing = empty_or_dot || dotdot;
    }
    if trailing || out.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// The path the upstream receives for the normalised `path` of a route with `strip_prefix =
/// prefix`: `/abc/x` → `/x`, `/abc/` and `/abc` → `/`. A path that does not start with
/// `prefix` is sent whole (a route's paths always do; the config checks that).
pub fn strip_prefix<'a>(path: &'a str, prefix: &str) -> &'a str {
    // Only at a segment boundary: `/abc` is no prefix of `/abcd/x`.
    match path.strip_prefix(prefix.trim_end_matches('/')) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

/// Why a pattern in the config is invalid (the config layer adds file/line/col).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("empty pattern")]
    Empty,
    #[error("pattern path must start with '/'")]
    NotAbsolute,
    #[error(
        "invalid method `{0}`: expected uppercase names separated by commas, as in `GET,HEAD /path`"
    )]
    BadMethod(String),
    #[error("empty segment (`//`) in pattern path")]
    EmptySegment,
    #[error(
        "`.` and `..` segments (also with `;` parameters, like `..;x`) are not allowed in patterns"
    )]
    DotSegment,
    #[error("`*` is only allowed as the last segment")]
    WildcardNotLast,
    #[error(
        "invalid segment `{0}`: expected a literal, `{{name}}`, `+`, or `*` as the last segment"
    )]
    BadSegment(String),
    #[error(transparent)]
    Path(#[from] PathError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Canonical text; empty only as the last segment (a trailing slash, or the pattern `/`).
    Literal(Box<str>),
    /// `{name}` or `+`: exactly one non-empty segment.
    Param,
    /// `*` (always last): one or more remaining segments, the first of which may be empty.
    Rest,
}

/// One parsed pattern `[METHODS ]PATH`, e.g. `/abc/*`, `GET /reports/{id}`, `GET,HEAD /x`, `/abc/+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: Box<str>,
    /// `None` = any method.
    methods: Option<Vec<Method>>,
    /// Never empty: the PATH `/` is one empty literal segment.
    segments: Vec<Segment>,
    literal_prefix: Box<str>,
}

impl Pattern {
    /// Parses `[METHODS ]PATH`. METHODS are comma-separated uppercase tokens (spaces after the
    /// commas are allowed); literal segments are canonicalised like request paths, so
    /// `/%7Euser` and `/~user` are the same pattern.
    pub fn parse(s: &str) -> Result<Pattern, PatternError> {
        let text = s.trim();
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        // A path never holds whitespace, so the last whitespace ends the method list.
        let (methods, path) = match text.rsplit_once(char::is_whitespace) {
            Some((head, path)) => (Some(parse_methods(head)?), path),
            None => (None, text),
        };
        let body = path.strip_prefix('/').ok_or(PatternError::NotAbsolute)?;
        let mut segments = Vec::new();
        let mut parts = body.split('/').peekable();
        while let Some(raw) = parts.next() {
            segments.push(parse_segment(raw, parts.peek().is_none())?);
        }
        let mut literal_prefix = String::new();
        for seg in &segments {
            let Segment::Literal(lit) = seg else { break };
            literal_prefix.push('/');
            literal_prefix.push_str(lit);
        }
        Ok(Pattern {
            text: text.into(),
            methods,
            segments,
            literal_prefix: literal_prefix.into(),
        })
    }

    /// The pattern as written (trimmed), for messages and `explain`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The methods this pattern is limited to; `None` means any method.
    pub fn methods(&self) -> Option<&[Method]> {
        self.methods.as_deref()
    }

    /// The canonical path made of the leading literal segments: `/abc/*` → `/abc`,
    /// `/a/{id}/b` → `/a`, `/*` → ``, `/abc/def` → `/abc/def`, `/abc/` → `/abc/`.
    pub fn literal_prefix(&self) -> &str {
        &self.literal_prefix
    }

    /// Reference (uncompiled) matcher: does this pattern match `method` and an already
    /// normalised `path`? [`Matcher`] must agree with it.
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        self.allows_method(method) && self.matches_path(path)
    }

    /// Is there a request (method + normalised path) that both patterns match? `check` uses it
    /// to find routes that no scope can ever open.
    pub fn overlaps(&self, other: &Pattern) -> bool {
        let methods_meet = match (&self.methods, &other.methods) {
            (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
            _ => true,
        };
        methods_meet && paths_overlap(&self.segments, &other.segments)
    }

    fn allows_method(&self, method: &Method) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|list| list.contains(method))
    }

    fn matches_path(&self, path: &str) -> bool {
        let Some(body) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = body.split('/');
        for seg in &self.segments {
            let part = parts.next();
            match (seg, part) {
                (Segment::Rest, part) => return part.is_some(),
                (Segment::Literal(lit), Some(part)) if **lit == *part => {}
                (Segment::Param, Some(part)) if !part.is_empty() => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

impl FromStr for Pattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn paths_overlap(mut a: &[Segment], mut b: &[Segment]) -> bool {
    loop {
        match (a, b) {
            ([], []) => return true,
            // `*` takes any one or more segments, and what is left of the other side always
            // matches some non-empty run of segments on its own.
            ([Segment::Rest], [_, ..]) | ([_, ..], [Segment::Rest]) => return true,
            ([x, a_rest @ ..], [y, b_rest @ ..]) => {
                let meet = match (x, y) {
                    (Segment::Literal(x), Segment::Literal(y)) => x == y,
                    (Segment::Literal(l), _) | (_, Segment::Literal(l)) => !l.is_empty(),
                    _ => true,
                };
                if !meet {
                    return false;
                }
                (a, b) = (a_rest, b_rest);
            }
            _ => return false,
        }
    }
}

fn parse_methods(list: &str) -> Result<Vec<Method>, PatternError> {
    let mut methods: Vec<Method> = Vec::new();
    for token in list.trim().split(',').map(str::trim) {
        // Method names are case-sensitive (RFC 9110 §9.1); `get` would never match a real GET.
        let well_formed = token.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
            && token
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        let method = Method::from_bytes(token.as_bytes())
            .ok()
            .filter(|_| well_formed)
            .ok_or_else(|| PatternError::BadMethod(token.to_owned()))?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    Ok(methods)
}

fn parse_segment(raw: &str, last: bool) -> Result<Segment, PatternError> {
    let bad = || PatternError::BadSegment(raw.to_owned());
    match raw {
        "*" if last => Ok(Segment::Rest),
        "*" => Err(PatternError::WildcardNotLast),
        "+" => Ok(Segment::Param),
        "" if last => Ok(Segment::Literal("".into())),
        "" => Err(PatternError::EmptySegment),
        _ if raw.starts_with('{') || raw.ends_with('}') => {
            let name = raw.strip_prefix('{').and_then(|r| r.strip_suffix('}'));
            let valid = name.is_some_and(|n| {
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
            if valid {
                Ok(Segment::Param)
            } else {
                Err(bad())
            }
        }
        // `*` `{` `}` inside a literal are reserved syntax; `?` and `#` would be a query or a
        // fragment, which never reach matching. Write them as %2A, %7B, ... to mean the text.
        _ if raw.contains(['*', '{', '}', '?', '#']) => Err(bad()),
        _ => {
            let mut lit = String::with_capacity(raw.len());
            push_segment(&mut lit, raw)?;
            if lit == "." || lit == ".." || is_dot_with_parameters(raw.as_bytes()) {
                return Err(PatternError::DotSegment);
            }
            Ok(Segment::Literal(lit.into()))
        }
    }
}

#[cfg(test)]
mod tests;
