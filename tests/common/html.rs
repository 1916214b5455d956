//! The HTML side of the login and consent pages for tests: a small form parser (forms,
//! inputs, buttons, attributes unescaped) and the headers every page must carry.

use std::collections::BTreeMap;

use super::Resp;
use super::oauth::{fragment_params, query_params, without_query};

/// An HTML element as the form parser saw it: attributes (names lower-cased, values
/// unescaped) and, for buttons, the unescaped text inside.
#[derive(Clone, Debug)]
pub struct Element {
    pub attrs: BTreeMap<String, String>,
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }
}

/// One `<form>` of a page.
#[derive(Clone, Debug)]
pub struct Form {
    pub action: String,
    pub method: String,
    pub inputs: Vec<Element>,
    pub buttons: Vec<Element>,
}

impl Form {
    /// Every form in `html`, in order.
    pub fn all(html: &str) -> Vec<Form> {
        let lower = html.to_ascii_lowercase();
        let mut forms = Vec::new();
        let mut at = 0;
        while let Some(start) = find_tag(&lower, "form", at) {
            let Some((attrs, open_end)) = parse_tag(html, start) else {
                break;
            };
            let end = lower[open_end..]
                .find("</form")
                .map_or(html.len(), |i| open_end + i);
            let inner = &html[open_end..end];
            forms.push(Form {
                action: attrs.get("action").cloned().unwrap_or_default(),
                method: attrs
                    .get("method")
                    .cloned()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                inputs: elements(inner, "input", false),
                buttons: elements(inner, "button", true),
            });
            at = end;
        }
        forms
    }

    /// The form posting to `action` (compared on the path, so an absolute action matches
    /// too); panics with the page if there is none.
    pub fn posting_to(resp: &Resp, action: &str) -> Form {
        Form::all(&resp.body)
            .into_iter()
            .find(|f| without_query(&f.action).ends_with(action))
            .unwrap_or_else(|| panic!("no <form action=\"{action}\"> in {resp}"))
    }

    /// The first input named `name`.
    pub fn input(&self, name: &str) -> Option<&Element> {
        self.inputs.iter().find(|i| i.attr("name") == Some(name))
    }

    /// `(name, value)` of every `type="hidden"` input.
    pub fn hidden(&self) -> Vec<(String, String)> {
        self.inputs
            .iter()
            .filter(|i| {
                i.attr("type")
                    .is_some_and(|t| t.eq_ignore_ascii_case("hidden"))
            })
            .filter_map(|i| Some((i.attr("name")?.to_owned(), i.attr("value")?.to_owned())))
            .collect()
    }

    /// The value of the hidden input `name`.
    pub fn hidden_value(&self, name: &str) -> Option<String> {
        self.hidden()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The check boxes named `name`.
    pub fn checkboxes(&self, name: &str) -> Vec<&Element> {
        self.inputs
            .iter()
            .filter(|i| {
                i.attr("type")
                    .is_some_and(|t| t.eq_ignore_ascii_case("checkbox"))
            })
            .filter(|i| i.attr("name") == Some(name))
            .collect()
    }

    /// The button with `name` and `value`.
    pub fn button(&self, name: &str, value: &str) -> Option<&Element> {
        self.buttons
            .iter()
            .find(|b| b.attr("name") == Some(name) && b.attr("value") == Some(value))
    }
}

/// Position of the next `<tag` (followed by whitespace, `>` or `/`) at or after `from`.
fn find_tag(lower: &str, tag: &str, from: usize) -> Option<usize> {
    let needle = format!("<{tag}");
    let mut at = from;
    while let Some(i) = lower[at..].find(&needle) {
        let start = at + i;
        let next = lower.as_bytes().get(start + needle.len()).copied();
        if matches!(next, Some(b' ' | b'\t' | b'\n' | b'\r' | b'>' | b'/')) {
            return Some(start);
        }
        at = start + needle.len();
    }
    None
}

/// The attributes of the tag starting at `start` (`<name ...>`), and the index just past
/// its `>`. Quoted values may contain `>`.
fn parse_tag(html: &str, start: usize) -> Option<(BTreeMap<String, String>, usize)> {
    let bytes = html.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
        i += 1;
    }
    let mut attrs = BTreeMap::new();
    loop {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        if *bytes.get(i)? == b'>' {
            return Some((attrs, i + 1));
        }
        let name_start = i;
        while i < bytes.len() && !b" \t\r\n=>/".contains(&bytes[i]) {
            i += 1;
        }
        let name = html[name_start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if bytes.get(i) == Some(&b'=') {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            match bytes.get(i)? {
                quote @ (b'"' | b'\'') => {
                    let end = i + 1 + html[i + 1..].find(*quote as char)?;
                    value = html_unescape(&html[i + 1..end]);
                    i = end + 1;
                }
                _ => {
                    let value_start = i;
                    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                        i += 1;
                    }
                    value = html_unescape(&html[value_start..i]);
                }
            }
        }
        if !name.is_empty() {
            attrs.insert(name, value);
        }
    }
}

/// Every `<tag ...>` in `html`; with `with_text`, also the text up to `</tag>`, tags
/// stripped.
fn elements(html: &str, tag: &str, with_text: bool) -> Vec<Element> {
    let lower = html.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(start) = find_tag(&lower, tag, at) {
        let Some((attrs, end)) = parse_tag(html, start) else {
            break;
        };
        let mut text = String::new();
        at = end;
        if with_text {
            let close = lower[end..]
                .find(&format!("</{tag}"))
                .map_or(html.len(), |i| end + i);
            text = html_unescape(&strip_tags(&html[end..close]))
                .trim()
                .to_owned();
            at = close;
        }
        found.push(Element { attrs, text });
    }
    found
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Decodes HTML character references: the five named ones and numeric `&#N;`/`&#xH;`.
pub fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&i| i <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity.strip_prefix('#').and_then(|num| {
                let code = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => num.parse().ok(),
                };
                code.and_then(char::from_u32)
            }),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Asserts what every login, consent and error page carries: HTML, `X-Frame-Options:
/// DENY`, a `Content-Security-Policy`, `Cache-Control: no-store`.
pub fn assert_html_page(resp: &Resp) {
    let content_type = resp.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/html"),
        "Content-Type in {resp}"
    );
    let frame = resp.header("x-frame-options").unwrap_or_default();
    assert!(
        frame.eq_ignore_ascii_case("deny"),
        "X-Frame-Options in {resp}"
    );
    let csp = resp.header("content-security-policy").unwrap_or_default();
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    assert!(
        directives.contains(&"frame-ancestors 'none'"),
        "Content-Security-Policy without frame-ancestors 'none' in {resp}"
    );
    let cache = resp.header("cache-control").unwrap_or_default();
    assert!(
        cache.to_ascii_lowercase().contains("no-store"),
        "Cache-Control in {resp}"
    );
}

#[test]
fn harness_parses_forms_and_cookies() {
    let html = r#"<form method="POST" action="/oauth/consent"><input type="hidden" name="request" value="a&amp;b">
      <input type=checkbox name="scope" value="reports" checked><INPUT type="checkbox" name="scope" value='x>y'>
      <button type="submit" name="decision" value="grant">Grant <b>access</b></button></form>"#;
    let forms = Form::all(html);
    assert_eq!(forms.len(), 1);
    let form = &forms[0];
    assert_eq!(
        (form.action.as_str(), form.method.as_str()),
        ("/oauth/consent", "post")
    );
    assert_eq!(form.hidden_value("request").as_deref(), Some("a&b"));
    let boxes = form.checkboxes("scope");
    assert_eq!(boxes.len(), 2);
    assert!(boxes[0].attrs.contains_key("checked"));
    assert_eq!(boxes[1].attr("value"), Some("x>y"));
    assert_eq!(
        form.button("decision", "grant").map(|b| b.text.as_str()),
        Some("Grant access")
    );
    assert_eq!(
        html_unescape("&lt;s&gt; &#39;&#x41;&amp;amp; & x"),
        "<s> 'A&amp; & x"
    );
    let url = "http://h/cb?code=a%2Bb&state=s#access_token=t&state=%3C";
    assert_eq!(query_params(url)["code"], "a+b");
    assert_eq!(fragment_params(url)["state"], "<");
    assert_eq!(without_query(url), "http://h/cb");
}
