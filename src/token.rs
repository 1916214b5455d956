//! Opaque tokens: generation from the OS RNG, SHA-256 hashing, and the records kept per token.
//!
//! The store only ever sees [`TokenHash`]es; the token text exists in the response to the
//! client and nowhere else.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Random bytes per token: 256 bits, as SPEC §5 requires.
const TOKEN_BYTES: usize = 32;

/// Makes a new opaque token (43 base64url characters) from the OS generator.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Hex digits of a grant's slot tag at the start of each of its tokens (see [`SlotTag`]).
const TAG_DIGITS: usize = 4;

/// Where a grant's records live on a Redis Cluster: 16 bits, written as 4 hex digits, the
/// same for a grant, its access and refresh tokens and its authorization code, so that one
/// script can change all of them atomically (they share a hash tag, hence a slot). Tags are
/// random per grant, so grants spread over the whole cluster.
///
/// A token carries its grant's tag in the clear as its first 4 characters (the token's
/// 256 random bits follow), because a bearer token is looked up by itself alone: the tag is
/// how the lookup finds the grant's slot. The tag says nothing about the grant beyond that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotTag(u16);

impl SlotTag {
    /// The tag of a grant: the first 4 digits of its (random, hex) id; any other id (none are
    /// made, but a record could hold one) gets the tag of its SHA-256.
    pub fn of_grant(grant_id: &str) -> SlotTag {
        parse_tag(grant_id.as_bytes()).unwrap_or_else(|| {
            let d = Sha256::digest(grant_id.as_bytes());
            SlotTag(u16::from_be_bytes([d[0], d[1]]))
        })
    }

    /// The 4 lowercase hex digits, as they appear in tokens and in Redis hash tags.
    pub fn hex(self) -> String {
        format!("{:04x}", self.0)
    }
}

/// The tag at the start of a token or grant id, if it starts with 4 lowercase hex digits.
fn parse_tag(text: &[u8]) -> Option<SlotTag> {
    let digits = text.get(..TAG_DIGITS)?;
    let mut tag = 0u16;
    for &c in digits {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        tag = tag << 4 | u16::from(v);
    }
    Some(SlotTag(tag))
}

/// Length of a token made by [`generate_for`]: the tag, then 43 base64url characters.
const TAGGED_LEN: usize = TAG_DIGITS + 43;

/// Makes a new token for a grant: its slot tag, then 256 random bits (base64url).
pub fn generate_for(tag: SlotTag) -> Result<String, getrandom::Error> {
    let mut text = tag.hex();
    text.push_str(&generate()?);
    Ok(text)
}

/// The hasher of the in-memory maps keyed by token digests (the memory store, the cache). Their
/// keys are SHA-256 output already, so a keyed multiply-fold spreads them as well as SipHash
/// would, for a fraction of its cost on every request; the key, random per process, keeps
/// where a digest lands unknown to anyone choosing tokens.
#[derive(Clone, Copy)]
pub struct DigestHasher([u64; 2]);

impl Default for DigestHasher {
    fn default() -> DigestHasher {
        static KEY: LazyLock<[u64; 2]> = LazyLock::new(|| {
            let mut seed = [0u8; 16];
            let _ = getrandom::fill(&mut seed);
            let (a, b) = seed.split_at(8);
            // Odd multipliers, so no key makes the fold lose bits.
            [
                u64::from_le_bytes(a.try_into().unwrap_or_default()) | 1,
                u64::from_le_bytes(b.try_into().unwrap_or_default()) | 1,
            ]
        });
        DigestHasher(*KEY)
    }
}

impl std::hash::BuildHasher for DigestHasher {
    type Hasher = DigestHash;

    fn build_hasher(&self) -> DigestHash {
        DigestHash {
            acc: self.0[0],
            key: self.0,
        }
    }
}

/// One hashing with a [`DigestHasher`]'s key.
pub struct DigestHash {
    acc: u64,
    key: [u64; 2],
}

/// The folded multiply of foldhash and ahash: the 128-bit product's halves xor-ed.
fn fold(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl std::hash::Hasher for DigestHash {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.acc = fold(self.acc ^ u64::from_le_bytes(word), self.key[1]);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.acc = fold(self.acc ^ n as u64, self.key[1]);
        self.acc = fold(self.acc ^ (n >> 64) as u64, self.key[1]);
    }

    fn write_usize(&mut self, n: usize) {
        self.acc = fold(self.acc ^ n as u64, self.key[1]);
    }

    fn finish(&self) -> u64 {
        fold(self.acc, self.key[0])
    }
}

/// SHA-256 of a token: the only form in which a token is stored or cached. For a token made
/// by [`generate_for`], the first two bytes are replaced by the token's slot tag (leaving
/// 240 bits of the digest), so the hash alone names the slot of the token's grant; for any
/// other text it is the plain digest, and its first two bytes serve as its tag.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        let mut digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if token.len() == TAGGED_LEN
            && let Some(SlotTag(tag)) = parse_tag(token.as_bytes())
        {
            digest[..2].copy_from_slice(&tag.to_be_bytes());
        }
        TokenHash(digest)
    }

    /// The slot tag of the grant this token belongs to (see [`SlotTag`]).
    pub fn tag(&self) -> SlotTag {
        SlotTag(u16::from_be_bytes([self.0[0], self.0[1]]))
    }

    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            s.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
        }
        s
    }

    pub fn from_hex(s: &str) -> Option<TokenHash> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(TokenHash(out))
    }
}

impl fmt::Debug for TokenHash {
    // Short on purpose: a hash prefix is enough to correlate, and logs stay readable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..12])
    }
}

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What an access token grants. Immutable once issued.
///
/// Shared strings (`Arc<str>`), because a node may cache a million of these: client ids and
/// scope lists repeat across tokens and are interned (see [`AccessToken::interned`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessToken {
    pub client_id: Arc<str>,
    /// The resource owner, for tokens a user granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<Arc<str>>,
    pub scopes: Arc<[Arc<str>]>,
    pub issued_at: Millis,
    /// `None` = never expires.
    pub expires_at: Option<Millis>,
    /// The grant this token belongs to; revoking the grant revokes the token.
    pub grant_id: String,
    /// Refreshes the grant had used when this token was issued.
    #[serde(default)]
    pub refreshes_used: u32,
}

impl AccessToken {
    /// The same token with its client id and scope list shared with every other token that
    /// has them, so cached records do not each carry their own copies.
    pub fn interned(mut self) -> AccessToken {
        self.client_id = intern_str(&self.client_id);
        self.scopes = intern_scopes(&self.scopes);
        self
    }

    pub fn is_expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Space-separated scope string, as OAuth responses and `X-Auth-Scope` carry it.
    pub fn scope_string(&self) -> String {
        self.scopes.join(" ")
    }
}

/// Most distinct values an interner keeps; past it values are simply not shared. Client ids
/// and scope lists come from the config, so real deployments stay far below it.
const INTERN_MAX: usize = 10_000;

static STRINGS: LazyLock<DashMap<Box<str>, Arc<str>>> = LazyLock::new(DashMap::new);
/// A token's scopes, shared.
pub type Scopes = Arc<[Arc<str>]>;

static SCOPE_LISTS: LazyLock<DashMap<Box<str>, Scopes>> = LazyLock::new(DashMap::new);

fn intern_str(s: &Arc<str>) -> Arc<str> {
    if let Some(shared) = STRINGS.get(&**s) {
        return Arc::clone(&shared);
    }
    if STRINGS.len() < INTERN_MAX {
        STRINGS.insert(Box::from(&**s), Arc::clone(s));
    }
    Arc::clone(s)
}

fn intern_scopes(scopes: &Arc<[Arc<str>]>) -> Arc<[Arc<str>]> {
    let key = scopes.join(" ");
    if let Some(shared) = SCOPE_LISTS.get(key.as_str()) {
        return Arc::clone(&shared);
    }
    let list: Arc<[Arc<str>]> = scopes.iter().map(intern_str).collect();
    if SCOPE_LISTS.len() < INTERN_MAX {
        SCOPE_LISTS.insert(key.into_boxed_str(), Arc::clone(&list));
    }
    list
}

/// What a refresh token may be exchanged for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub scopes: Vec<String>,
    pub issued_at: Millis,
    pub expires_at: Option<Millis>,
    pub grant_id: String,
    /// How many refreshes the grant had used when this token was issued.
    pub refreshes_used: u32,
}

impl RefreshToken {
    pub fn is_expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// A stored access token and whether it has been revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    pub token: AccessToken,
    pub revoked: bool,
}

/// A stored refresh token and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshEntry {
    pub token: RefreshToken,
    /// When it was exchanged: presenting it again after that is reuse (or, within the grace
    /// window, a retry).
    pub retired_at: Option<Millis>,
    pub revoked: bool,
    /// The response its exchange produced, sealed with a key only the token itself yields
    /// (see `oauth::grace`), so a retry within the grace window gets the same answer.
    pub successor: Option<String>,
}

impl RefreshEntry {
    /// A refresh token just issued: live, never exchanged.
    pub fn new(token: RefreshToken) -> RefreshEntry {
        RefreshEntry {
            token,
            retired_at: None,
            revoked: false,
            successor: None,
        }
    }
}

/// A new random grant identifier (128 bits, hex).
/// `a == b` in time that depends only on the lengths, for comparing secrets (CSRF tokens,
/// PKCE challenges) without a timing side channel on their content.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn new_grant_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_hashes_spread_over_buckets_and_shards() {
        use std::hash::BuildHasher;
        let h = DigestHasher::default();
        assert_eq!(h.hash_one(7u128), DigestHasher::default().hash_one(7u128));
        // 64 Ki digests into 1,024 buckets by the low bits and 64 shards by the high bits
        // (as hashbrown and dashmap pick them): every bucket within 2x of the mean.
        let mut low = vec![0u32; 1024];
        let mut high = vec![0u32; 64];
        for i in 0..65_536u32 {
            let hash = h.hash_one(TokenHash::of(&i.to_string()));
            low[(hash & 1023) as usize] += 1;
            high[(hash >> 58) as usize] += 1;
        }
        assert!(low.iter().all(|&n| (32..=128).contains(&n)), "{low:?}");
        assert!(high.iter().all(|&n| (512..=2048).contains(&n)), "{high:?}");
        // Sequential u128 keys (the cache's) spread too.
        let mut seq = vec![0u32; 1024];
        for i in 0..65_536u128 {
            seq[(h.hash_one(i << 64 | i) & 1023) as usize] += 1;
        }
        assert!(seq.iter().all(|&n| (32..=128).contains(&n)), "{seq:?}");
    }

    #[test]
    fn tokens_are_long_random_and_distinct() {
        let a = generate().expect("rng");
        let b = generate().expect("rng");
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn a_grants_tokens_carry_its_tag_into_their_hashes() {
        let grant = new_grant_id().expect("rng");
        let tag = SlotTag::of_grant(&grant);
        assert_eq!(tag.hex(), grant[..4]);
        let a = generate_for(tag).expect("rng");
        let b = generate_for(tag).expect("rng");
        assert_eq!(a.len(), TAGGED_LEN);
        assert_ne!(a, b);
        assert_eq!(TokenHash::of(&a).tag(), tag);
        assert_eq!(TokenHash::of(&b).tag(), tag);
        // The rest of the digest is the token's own: two tokens of a grant differ there.
        assert_ne!(TokenHash::of(&a), TokenHash::of(&b));
        assert_eq!(TokenHash::of(&a).0[2..], Sha256::digest(a.as_bytes())[2..]);
        // Anything else hashes plainly (the RFC test vector below), whatever it starts with.
        let plain = format!("{}x", &a[..TAGGED_LEN - 2]);
        assert_eq!(
            TokenHash::of(&plain).0,
            <[u8; 32]>::from(Sha256::digest(plain.as_bytes()))
        );
        assert_eq!(SlotTag::of_grant("not-hex").hex().len(), 4);
    }

    #[test]
    fn hash_hex_round_trip() {
        let h = TokenHash::of("abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(TokenHash::from_hex("zz"), None);
    }
}
