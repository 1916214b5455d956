//! The compiled form of a set of patterns: a segment trie, so that matching a request costs the
//! same with ten patterns as with a hundred thousand.

use std::collections::HashMap;

use hyper::Method;

use super::{Pattern, Segment};

/// How specific a pattern is; a greater `Rank` wins in [`Matcher::best`]. Fields compare in
/// declaration order, which is the documented precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    prefix_len: usize,
    kind: Kind,
    segments: usize,
    has_methods: bool,
}

/// Ordered least specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Rest,
    Param,
    Exact,
}

impl Rank {
    fn of(p: &Pattern) -> Rank {
        let kind = if p.segments.last() == Some(&Segment::Rest) {
            Kind::Rest
        } else if p.segments.contains(&Segment::Param) {
            Kind::Param
        } else {
            Kind::Exact
        };
        Rank {
            prefix_len: p.literal_prefix.len(),
            kind,
            segments: p.segments.len(),
            has_methods: p.methods.is_some(),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry<T> {
    pattern: Pattern,
    value: T,
    rank: Rank,
    /// Insertion index, the last tie-breaker.
    seq: usize,
}

/// One trie node: the state after matching some leading path segments.
#[derive(Debug, Clone, Default)]
struct Node {
    literal: HashMap<Box<str>, usize>,
    param: Option<usize>,
    /// Entries whose pattern ends here.
    exact: Vec<usize>,
    /// Entries whose pattern ends here with `*`.
    rest: Vec<usize>,
}

/// A set of patterns compiled into a segment trie: matching costs one hash lookup (plus one
/// `{id}` branch) per path segment, whatever the number of patterns, and never allocates
/// except in [`Matcher::matching`].
#[derive(Debug, Clone)]
pub struct Matcher<T> {
    /// `nodes[0]` is the root, before the first segment.
    nodes: Vec<Node>,
    /// In insertion order; nodes refer to entries by index.
    entries: Vec<Entry<T>>,
}

impl<T> Default for Matcher<T> {
    fn default() -> Self {
        Matcher {
            nodes: vec![Node::default()],
            entries: Vec::new(),
        }
    }
}

impl<T> Matcher<T> {
    /// Compiles `entries`; their order breaks ties in [`Matcher::best`].
    pub fn new(entries: impl IntoIterator<Item = (Pattern, T)>) -> Self {
        let mut matcher = Matcher::default();
        for (pattern, value) in entries {
            matcher.insert(pattern, value);
        }
        matcher
    }

    fn insert(&mut self, pattern: Pattern, value: T) {
        let idx = self.entries.len();
        let mut node = 0;
        let mut ends_in_rest = false;
        for seg in &pattern.segments {
            node = match seg {
                Segment::Literal(lit) => match self.nodes[node].literal.get(lit).copied() {
                    Some(child) => child,
                    None => {
                        let child = self.push_node();
                        self.nodes[node].literal.insert(lit.clone(), child);
                        child
                    }
                },
                Segment::Param => match self.nodes[node].param {
                    Some(child) => child,
                    None => {
                        let child = self.push_node();
                        self.nodes[node].param = Some(child);
                        child
                    }
                },
                Segment::Rest => {
                    ends_in_rest = true;
                    break;
                }
            };
        }
        let slot = &mut self.nodes[node];
        if ends_in_rest {
            &mut slot.rest
        } else {
            &mut slot.exact
        }
        .push(idx);
        let rank = Rank::of(&pattern);
        self.entries.push(Entry {
            pattern,
            value,
            rank,
            seq: idx,
        });
    }

    fn push_node(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Is there an entry matching `method` + normalised `path` whose value satisfies `pred`?
    /// Stops at the first.
    pub fn any(&self, method: &Method, path: &str, mut pred: impl FnMut(&T) -> bool) -> bool {
        self.each_match(method, path, |e| pred(&e.value))
    }

    /// Every entry matching `method` + normalised `path`, most specific first (the order of
    /// [`Matcher::best`]).
    pub fn matching(&self, method: &Method, path: &str) -> Vec<(&Pattern, &T)> {
        let mut found: Vec<&Entry<T>> = Vec::new();
        self.each_match(method, path, |e| {
            found.push(e);
            false
        });
        found.sort_by(|a, b| b.rank.cmp(&a.rank).then(a.seq.cmp(&b.seq)));
        found.into_iter().map(|e| (&e.pattern, &e.value)).collect()
    }

    /// The most specific entry matching `method` + normalised `path`: longest literal prefix,
    /// then all-literal over `{id}` over trailing `*`, then more segments, then a pattern with a
    /// method list over one without; remaining ties go to the entry inserted first.
    pub fn best(&self, method: &Method, path: &str) -> Option<(&Pattern, &T)> {
        let mut best: Option<&Entry<T>> = None;
        self.each_match(method, path, |e| {
            if best.is_none_or(|b| e.rank > b.rank || (e.rank == b.rank && e.seq < b.seq)) {
                best = Some(e);
            }
            false
        });
        best.map(|e| (&e.pattern, &e.value))
    }

    /// Calls `visit` on each entry matching `method` + `path` until it returns true.
    fn each_match<'a>(
        &'a self,
        method: &Method,
        path: &str,
        mut visit: impl FnMut(&'a Entry<T>) -> bool,
    ) -> bool {
        let Some(body) = path.strip_prefix('/') else {
            return false;
        };
        let mut on_entry = |idx: usize| {
            self.entries
                .get(idx)
                .is_some_and(|e| e.pattern.allows_method(method) && visit(e))
        };
        self.walk(0, Some(body), &mut on_entry)
    }

    /// Depth-first search from `node`; `rest` is what follows the '/' before the next segment,
    /// `None` once the path is used up. Recursion depth is bounded by the deepest pattern, which
    /// comes from the config, not by the request path.
    fn walk(&self, node: usize, rest: Option<&str>, visit: &mut impl FnMut(usize) -> bool) -> bool {
        let Some(n) = self.nodes.get(node) else {
            return false;
        };
        let Some(rest) = rest else {
            return n.exact.iter().any(|&e| visit(e));
        };
        if n.rest.iter().any(|&e| visit(e)) {
            return true;
        }
        let (seg, next) = match rest.split_once('/') {
            Some((seg, next)) => (seg, Some(next)),
            None => (rest, None),
        };
        if let Some(&child) = n.literal.get(seg)
            && self.walk(child, next, visit)
        {
            return true;
        }
        if let Some(child) = n.param
            && !seg.is_empty()
            && self.walk(child, next, visit)
        {
            return true;
        }
        false
    }
}
