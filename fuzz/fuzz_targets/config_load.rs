//! The `gateway.toml` loader (`src/config/`): TOML → raw structs → validated `Config`, with
//! `${NAME}` interpolation.
//!
//! Properties: no panic, whatever the text; a refused file gives at least one message, and
//! every message is `FILE:LINE:COL: message` with LINE and COL inside the text (1-based,
//! COL counted in characters, at most one past the end of its line).
//!
//! Input: the file's text (UTF-8). `${NAME}` resolves to `v-NAME` for names starting with a
//! letter before `N` and to nothing otherwise, so both paths are taken.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tollgate::fuzzing::Config;

const FILE: &str = "fuzz/gateway.toml";

fn env(name: &str) -> Option<String> {
    name.starts_with(|c: char| c.is_ascii_alphabetic() && c.to_ascii_uppercase() < 'N')
        .then(|| format!("v-{name}"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Err(e) = Config::from_str_with_env(Path::new(FILE), src, &env) else {
        return;
    };
    assert!(!e.0.is_empty(), "refused without a message");
    // Lines as the loader counts them: split on '\n' only.
    let lines: Vec<&str> = src.split('\n').collect();
    for message in &e.0 {
        let located = message
            .strip_prefix(FILE)
            .and_then(|m| m.strip_prefix(':'))
            .and_then(|m| {
                let (line, m) = m.split_once(':')?;
                let (col, m) = m.split_once(':')?;
                Some((line.parse::<usize>().ok()?, col.parse::<usize>().ok()?, m))
            });
        let Some((line, col, text)) = located else {
            panic!("not FILE:LINE:COL: {message:?}");
        };
        assert!(
            text.starts_with(' ') && text.len() > 1,
            "no message: {message:?}"
        );
        assert!(
            (1..=lines.len()).contains(&line),
            "line {line} of {}: {message:?}",
            lines.len()
        );
        let width = lines[line - 1].chars().count();
        assert!(
            (1..=width + 1).contains(&col),
            "column {col} of a {width}-character line: {message:?}"
        );
    }
});
