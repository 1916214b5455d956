//! Scalar value grammars of `gateway.toml`: durations, `${ENV}` interpolation, and the
//! diagnostics sink that turns byte spans into `FILE:LINE:COL: message`.

use std::ops::Range;
use std::time::Duration;

/// Collects every error and warning found in one file, each located by a byte span. A
/// warning does not stop the file from loading (`check --strict` makes it fail).
pub struct Diagnostics<'a> {
    file: &'a str,
    src: &'a str,
    /// (byte offset, message), so the errors can be given in file order.
    errors: Vec<(usize, String)>,
    warnings: Vec<(usize, String)>,
}

impl<'a> Diagnostics<'a> {
    pub fn new(file: &'a str, src: &'a str) -> Self {
        Diagnostics {
            file,
            src,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records `message` at the start of `span`.
    pub fn error(&mut self, span: Range<usize>, message: impl std::fmt::Display) {
        let message = self.locate(&span, message);
        self.errors.push((span.start, message));
    }

    /// Records a warning at the start of `span`: `FILE:LINE:COL: warning: message`.
    pub fn warning(&mut self, span: Range<usize>, message: impl std::fmt::Display) {
        let message = self.locate(&span, format_args!("warning: {message}"));
        self.warnings.push((span.start, message));
    }

    fn locate(&self, span: &Range<usize>, message: impl std::fmt::Display) -> String {
        let (line, col) = line_col(self.src, span.start);
        format!("{}:{}:{}: {}", self.file, line, col, message)
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The error messages in file order (the checks find them in their own order).
    pub fn into_errors(self) -> Vec<String> {
        in_file_order(self.errors)
    }

    /// The warning messages in file order.
    pub fn take_warnings(&mut self) -> Vec<String> {
        in_file_order(std::mem::take(&mut self.warnings))
    }
}

fn in_file_order(mut messages: Vec<(usize, String)>) -> Vec<String> {
    messages.sort_by_key(|(at, _)| *at);
    messages.into_iter().map(|(_, message)| message).collect()
}

/// 1-based line and column (in characters) of byte offset `at`.
pub fn line_col(src: &str, at: usize) -> (usize, usize) {
    let at = at.min(src.len());
    let before = src.get(..at).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Parses `"500ms"`, `"30s"`, `"10m"`, `"12h"`, `"30d"`: a whole number and one unit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    if num.is_empty() {
        return Err(format!(
            "invalid duration {s:?}: expected a whole number and a unit (ms, s, m, h, d), e.g. \"30s\""
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
    let per_unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            ));
        }
    };
    n.checked_mul(per_unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("invalid duration {s:?}: too large"))
}

/// The inverse of [`parse_duration`]: the largest unit that states `d` exactly.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms > 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Like [`parse_duration`], but `"never"` gives `None` (a lifetime without end).
pub fn parse_lifetime(s: &str) -> Result<Option<Duration>, String> {
    if s == "never" {
        Ok(None)
    } else {
        parse_duration(s).map(Some)
    }
}

/// Replaces every `${NAME}` by the environment variable NAME. `lookup` is the environment
/// (injected so tests need not touch the process environment).
pub fn interpolate(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !s.contains("${") {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{...}} in {s:?}"))?;
        let name = &after[..end];
        let valid =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(format!("invalid environment variable name {name:?}"));
        }
        let value =
            lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table: &[(&str, Option<u64>)] = &[
            ("500ms", Some(500)),
            ("30s", Some(30_000)),
            ("10m", Some(600_000)),
            ("12h", Some(43_200_000)),
            ("30d", Some(2_592_000_000)),
            ("0s", Some(0)),
            ("", None),
            ("s", None),
            ("10", None),
            ("10x", None),
            ("1.5s", None),
            ("-1s", None),
            (" 1s", None),
            ("99999999999999999999s", None),
        ];
        for (input, want) in table {
            let got = parse_duration(input).ok().map(|d| d.as_millis() as u64);
            assert_eq!(got, *want, "parse_duration({input:?})");
        }
        for s in ["500ms", "30s", "10m", "12h", "30d", "90s", "0ms"] {
            let d = parse_duration(s).expect("valid");
            assert_eq!(
                parse_duration(&format_duration(d)),
                Ok(d),
                "round trip of {s}"
            );
        }
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
        assert_eq!(parse_lifetime("never"), Ok(None));
        assert_eq!(parse_lifetime("1s"), Ok(Some(Duration::from_secs(1))));
        assert!(parse_lifetime("Never").is_err());
    }

    #[test]
    fn interpolation() {
        let env = |k: &str| match k {
            "A" => Some("x".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let table: &[(&str, Result<&str, ()>)] = &[
            ("plain", Ok("plain")),
            ("${A}", Ok("x")),
            ("a${A}b${A}c", Ok("axbxc")),
            ("${EMPTY}", Ok("")),
            ("$A", Ok("$A")),
            ("${MISSING}", Err(())),
            ("${A", Err(())),
            ("${}", Err(())),
            ("${A-B}", Err(())),
        ];
        for (input, want) in table {
            let got = interpolate(input, &env);
            assert_eq!(
                got.as_deref().map_err(|_| ()),
                *want,
                "interpolate({input:?})"
            );
        }
    }

    #[test]
    fn line_and_column() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 9), (2, 3)); // after the two-byte é
        assert_eq!(line_col(src, 999), (3, 1));
    }
}
