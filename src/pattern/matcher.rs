//! The compiled form of a set of patterns: a segment trie, so that matching a request costs the
//! same with ten patterns as with a hundred thousand.
//!
//! # Layout
//!
//! With 100,000 patterns the trie is megabytes, and a request touches a few random parts of it,
//! so the cost is cache misses rather than instructions. The layout keeps them few:
//! - a node with few literal children lists them in one shared `Vec` ([`Matcher::kids`]) with
//!   each segment's 64-bit hash inline: a scan of one cache line, no pointer followed until a
//!   hash matches. The children of nodes with many (the root, a `/api/{name}` level) sit in
//!   one open-addressing table ([`Edges`]) keyed by (parent node, segment), which stays small
//!   because only those nodes use it;
//! - nodes are small `u32` structs in one `Vec`; they, the child lists and the text of every
//!   edge ([`Matcher::labels`]) are in insertion order, so the nodes of one service's patterns
//!   sit next to each other, and after the first segment a match mostly reads warm lines;
//! - what a match needs of an entry (method set, rank, index) is copied into one `Vec` ([`Hit`])
//!   ordered by node, so the entries ending at a node are read in one sweep; values are apart
//!   from the (large) patterns, which only [`Matcher::best`]'s winner and extension methods
//!   read.

use hyper::Method;

use super::{Pattern, Segment};
use edges::{Edges, Slot, edge_hash, segment_hash};

mod edges;

/// How specific a pattern is; a greater `Rank` wins in [`Matcher::best`]. Fields compare in
/// declaration order, which is the documented precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    prefix_len: u32,
    kind: Kind,
    segments: u32,
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
            prefix_len: to_u32(p.literal_prefix.len()),
            kind,
            segments: to_u32(p.segments.len()),
            has_methods: p.methods.is_some(),
        }
    }
}

impl Pattern {
    /// The documented route precedence before the host is considered: longest literal prefix,
    /// then all-literal over `{id}` over trailing `*` (README "Routes"). A greater value is
    /// more specific. Routes of different host tables are compared on this, then the host.
    pub fn path_precedence(&self) -> impl Ord + Copy + use<> {
        let rank = Rank::of(self);
        (rank.prefix_len, rank.kind)
    }
}

/// Lengths and counts from the config; none comes near 4 GiB.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The standard methods, one bit each in [`Hit::methods`]. Anything else is an extension
/// method, checked against the pattern's own list.
const STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::CONNECT,
    Method::TRACE,
];

/// [`Hit::methods`] of a pattern without a method list.
const ANY_METHOD: u16 = u16::MAX;
/// In [`Hit::methods`]: the list names an extension method.
const EXTENSION_BIT: u16 = 1 << 15;

/// The bit of a standard method, or [`EXTENSION_BIT`].
fn method_bit(method: &Method) -> u16 {
    STANDARD_METHODS
        .iter()
        .position(|m| m == method)
        .map_or(EXTENSION_BIT, |i| 1 << i)
}

/// What matching needs of one entry, stored by the node where its pattern ends.
#[derive(Debug, Clone, Copy)]
struct Hit {
    rank: Rank,
    /// Index into `patterns` and `values`: insertion order, the last tie-breaker.
    entry: u32,
    /// Bits of the standard methods allowed, plus [`EXTENSION_BIT`]; [`ANY_METHOD`] for none.
    methods: u16,
}

/// No such node (`Node::param`); node 0 is the root and never a child, so 0 also marks an
/// empty [`Slot`].
const NONE: u32 = u32::MAX;

/// One trie node: the state after matching some leading path segments. Its literal children
/// are in [`Edges`].
#[derive(Debug, Clone, Copy)]
struct Node {
    /// The text of the literal edge into this node: `labels[label_start..][..label_len]`.
    label_start: u32,
    label_len: u32,
    /// The child through `{id}`, or [`NONE`].
    param: u32,
    /// `hits[hits_start..rest_start]` end here, `hits[rest_start..hits_end]` end here with `*`.
    hits_start: u32,
    rest_start: u32,
    hits_end: u32,
    /// The literal children are `kids[kids_start..][..kids_len]`, or in [`Edges`] when
    /// `kids_len` is [`NONE`].
    kids_start: u32,
    kids_len: u32,
}

impl Node {
    const EMPTY: Node = Node {
        label_start: 0,
        label_len: 0,
        param: NONE,
        hits_start: 0,
        rest_start: 0,
        hits_end: 0,
        kids_start: 0,
        kids_len: 0,
    };
}

/// A node with at most this many literal children keeps them in [`Matcher::kids`]: a short
/// scan of adjacent memory beats a probe at a random place of a large table.
const FEW_KIDS: usize = 8;

/// A set of patterns compiled into a segment trie: matching costs one hash lookup (plus one
/// `{id}` branch) per path segment, whatever the number of patterns, and never allocates
/// except in [`Matcher::matching`].
#[derive(Debug, Clone)]
pub struct Matcher<T> {
    /// `nodes[0]` is the root, before the first segment.
    nodes: Vec<Node>,
    edges: Edges,
    /// The literal children of nodes with few, grouped by parent (see [`Node::kids_start`]).
    kids: Vec<Slot>,
    /// The labels of all literal edges, concatenated (see [`Node::label_start`]).
    labels: String,
    /// Grouped by node (see [`Node::hits_start`]), each group in insertion order.
    hits: Vec<Hit>,
    /// In insertion order; [`Hit::entry`] indexes both.
    patterns: Vec<Pattern>,
    values: Vec<T>,
}

impl<T> Default for Matcher<T> {
    fn default() -> Self {
        Matcher {
            nodes: vec![Node::EMPTY],
            edges: Edges::with_capacity(0),
            kids: Vec::new(),
            labels: String::new(),
            hits: Vec::new(),
            patterns: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<T> Matcher<T> {
    /// Compiles `entries`; their order breaks ties in [`Matcher::best`].
    pub fn new(entries: impl IntoIterator<Item = (Pattern, T)>) -> Self {
        let mut matcher = Matcher::default();
        // (node, ends in `*`, hit), grouped by node once all are known.
        let mut ends: Vec<(u32, bool, Hit)> = Vec::new();
        for (pattern, value) in entries {
            let (node, rest) = matcher.insert_path(&pattern);
            let methods = pattern.methods.as_ref().map_or(ANY_METHOD, |list| {
                list.iter().fold(0, |bits, m| bits | method_bit(m))
            });
            let hit = Hit {
                rank: Rank::of(&pattern),
                entry: to_u32(matcher.patterns.len()),
                methods,
            };
            ends.push((node, rest, hit));
            matcher.patterns.push(pattern);
            matcher.values.push(value);
        }
        // Stable: each group stays in insertion order.
        ends.sort_by_key(|&(node, rest, _)| (node, rest));
        matcher.hits = ends.iter().map(|&(_, _, hit)| hit).collect();
        let mut at = 0;
        for (id, node) in (0u32..).zip(matcher.nodes.iter_mut()) {
            let count = |from: usize, rest: bool| {
                ends.get(from..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|&&(n, r, _)| n == id && r == rest)
                    .count()
            };
            let exact = count(at, false);
            let rest = count(at + exact, true);
            node.hits_start = to_u32(at);
            node.rest_start = to_u32(at + exact);
            node.hits_end = to_u32(at + exact + rest);
            at += exact + rest;
        }
        matcher.split_edges();
        matcher
    }

    /// Moves the children of nodes with at most [`FEW_KIDS`] from [`Edges`] to `kids`.
    fn split_edges(&mut self) {
        let mut all: Vec<Slot> = self.edges.iter().collect();
        // Children were created in insertion order, so this keeps each list in that order.
        all.sort_unstable_by_key(|s| (s.parent, s.child));
        let mut many = Vec::new();
        for group in all.chunk_by(|a, b| a.parent == b.parent) {
            let Some(node) = group
                .first()
                .and_then(|s| self.nodes.get_mut(s.parent as usize))
            else {
                continue;
            };
            if group.len() > FEW_KIDS {
                node.kids_len = NONE;
                many.extend_from_slice(group);
                continue;
            }
            node.kids_start = to_u32(self.kids.len());
            node.kids_len = to_u32(group.len());
            for s in group {
                let start = self
                    .nodes
                    .get(s.child as usize)
                    .map_or(0, |c| c.label_start);
                let len = self.nodes.get(s.child as usize).map_or(0, |c| c.label_len);
                let label = self
                    .labels
                    .get(start as usize..(start + len) as usize)
                    .unwrap_or_default();
                self.kids.push(Slot {
                    hash: segment_hash(label),
                    ..*s
                });
            }
        }
        self.edges = Edges::with_capacity(many.len());
        for s in many {
            self.edges.insert(s);
        }
    }

    /// The literal child of `node` (which is `n`) for `seg`, whose [`segment_hash`] is `hash`.
    fn child(&self, node: u32, n: &Node, seg: &str, hash: u64) -> Option<u32> {
        if n.kids_len == NONE {
            return self
                .edges
                .find(node, edge_hash(node, hash), |c| self.label(c) == seg);
        }
        let start = n.kids_start as usize;
        self.kids
            .get(start..start + n.kids_len as usize)?
            .iter()
            .find(|k| k.hash == hash && self.label(k.child) == seg)
            .map(|k| k.child)
    }

    /// Adds the nodes of `pattern`'s path; returns where it ends and whether with `*`.
    fn insert_path(&mut self, pattern: &Pattern) -> (u32, bool) {
        let mut node = 0;
        for seg in &pattern.segments {
            node = match seg {
                Segment::Literal(lit) => {
                    let hash = edge_hash(node, segment_hash(lit));
                    match self.edges.find(node, hash, |c| self.label(c) == &**lit) {
                        Some(child) => child,
                        None => {
                            let child = self.push_node(Node {
                                label_start: to_u32(self.labels.len()),
                                label_len: to_u32(lit.len()),
                                ..Node::EMPTY
                            });
                            self.labels.push_str(lit);
                            self.edges.insert(Slot {
                                hash,
                                parent: node,
                                child,
                            });
                            child
                        }
                    }
                }
                Segment::Param => match self.nodes.get(node as usize).map(|n| n.param) {
                    Some(child) if child != NONE => child,
                    _ => {
                        let child = self.push_node(Node::EMPTY);
                        if let Some(n) = self.nodes.get_mut(node as usize) {
                            n.param = child;
                        }
                        child
                    }
                },
                Segment::Rest => return (node, true),
            };
        }
        (node, false)
    }

    fn push_node(&mut self, node: Node) -> u32 {
        self.nodes.push(node);
        to_u32(self.nodes.len() - 1)
    }

    fn label(&self, node: u32) -> &str {
        self.nodes
            .get(node as usize)
            .and_then(|n| {
                let start = n.label_start as usize;
                self.labels.get(start..start + n.label_len as usize)
            })
            .unwrap_or_default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Is there an entry matching `method` + normalised `path` whose value satisfies `pred`?
    /// Stops at the first.
    pub fn any(&self, method: &Method, path: &str, mut pred: impl FnMut(&T) -> bool) -> bool {
        self.each_match(method, path, |_, value| pred(value))
    }

    /// Every entry matching `method` + normalised `path`, most specific first (the order of
    /// [`Matcher::best`]).
    pub fn matching(&self, method: &Method, path: &str) -> Vec<(&Pattern, &T)> {
        let mut found: Vec<Hit> = Vec::new();
        self.each_match(method, path, |hit, _| {
            found.push(*hit);
            false
        });
        found.sort_by(|a, b| b.rank.cmp(&a.rank).then(a.entry.cmp(&b.entry)));
        found.iter().filter_map(|h| self.entry(h.entry)).collect()
    }

    /// The most specific entry matching `method` + normalised `path`: longest literal prefix,
    /// then all-literal over `{id}` over trailing `*`, then more segments, then a pattern with a
    /// method list over one without; remaining ties go to the entry inserted first.
    pub fn best(&self, method: &Method, path: &str) -> Option<(&Pattern, &T)> {
        let mut best: Option<Hit> = None;
        let bit = method_bit(method);
        let body = path.strip_prefix('/')?;
        // Only the winner's entry is read; the others are judged by their `Hit`.
        self.walk(0, Some(body), &mut |hit: &Hit| {
            let better = best
                .is_none_or(|b| hit.rank > b.rank || (hit.rank == b.rank && hit.entry < b.entry));
            if better && self.allows(hit, bit, method) {
                best = Some(*hit);
            }
            false
        });
        self.entry(best?.entry)
    }

    fn entry(&self, idx: u32) -> Option<(&Pattern, &T)> {
        Some((
            self.patterns.get(idx as usize)?,
            self.values.get(idx as usize)?,
        ))
    }

    /// Does `hit`'s pattern allow `method`, whose [`method_bit`] is `bit`?
    fn allows(&self, hit: &Hit, bit: u16, method: &Method) -> bool {
        if hit.methods & bit == 0 {
            return false;
        }
        // An extension method, and the pattern takes any method or names one (rare): only
        // the pattern's own list can tell.
        bit != EXTENSION_BIT
            || self
                .patterns
                .get(hit.entry as usize)
                .is_some_and(|p| p.allows_method(method))
    }

    /// Calls `visit` on each entry matching `method` + `path` until it returns true.
    fn each_match<'a>(
        &'a self,
        method: &Method,
        path: &str,
        mut visit: impl FnMut(&Hit, &'a T) -> bool,
    ) -> bool {
        let Some(body) = path.strip_prefix('/') else {
            return false;
        };
        let bit = method_bit(method);
        self.walk(0, Some(body), &mut |hit: &Hit| {
            self.allows(hit, bit, method)
                && self
                    .values
                    .get(hit.entry as usize)
                    .is_some_and(|v| visit(hit, v))
        })
    }

    /// Depth-first search from `node`; `rest` is what follows the '/' before the next segment,
    /// `None` once the path is used up. Recursion depth is bounded by the deepest pattern, which
    /// comes from the config, not by the request path.
    fn walk(&self, node: u32, rest: Option<&str>, visit: &mut impl FnMut(&Hit) -> bool) -> bool {
        let Some(n) = self.nodes.get(node as usize) else {
            return false;
        };
        let hits = |from: u32, to: u32| {
            self.hits
                .get(from as usize..to as usize)
                .unwrap_or_default()
        };
        let Some(rest) = rest else {
            return hits(n.hits_start, n.rest_start).iter().any(&mut *visit);
        };
        if hits(n.rest_start, n.hits_end).iter().any(&mut *visit) {
            return true;
        }
        // A byte search: `split_once` with a `char` pattern costs several times more here.
        let (seg, next) = match rest.bytes().position(|b| b == b'/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if let Some(child) = self.child(node, n, seg, segment_hash(seg))
            && self.walk(child, next, visit)
        {
            return true;
        }
        if n.param != NONE && !seg.is_empty() && self.walk(n.param, next, visit) {
            return true;
        }
        false
    }
}
