//! `[server] trusted_proxies`: CIDR blocks parsed at load, and the per-request membership test.
//!
//! Addresses are held as `u128` (IPv4 as its IPv4-mapped IPv6 form), so a lookup is a mask and
//! a compare per block, with no allocation: it runs on every proxied request.

use std::net::IpAddr;

/// One CIDR block, e.g. `10.0.0.0/8` or `fd00::/8`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: u128,
    mask: u128,
}

impl Cidr {
    /// Parses `ADDR/LEN` or `ADDR`. Host bits set below the prefix (`10.1.2.3/8`) are refused:
    /// they usually mean a typo in the length.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("invalid CIDR {s:?}: {addr:?} is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len: u32 = match len {
            None => max,
            Some(l) => l
                .parse()
                .ok()
                .filter(|n| *n <= max && !l.starts_with('+'))
                .ok_or_else(|| format!("invalid CIDR {s:?}: prefix length must be 0 to {max}"))?,
        };
        // An IPv4 block covers the last 32 bits of the mapped form, so its length grows by 96.
        let bits = if ip.is_ipv4() { len + 96 } else { len };
        let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
        let net = to_bits(ip);
        if net & !mask != 0 {
            return Err(format!(
                "invalid CIDR {s:?}: address has bits set beyond the /{len} prefix"
            ));
        }
        Ok(Cidr { net, mask })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        to_bits(ip) & self.mask == self.net
    }
}

/// An address as 128 bits; IPv4 (and IPv4-mapped IPv6, as a dual-stack socket reports IPv4
/// peers) as `::ffff:a.b.c.d`, so one block matches both spellings.
fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(v6),
        },
    }
}

/// The peers whose `X-Forwarded-*` headers are believed (SPEC §4). Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn new(blocks: Vec<Cidr>) -> TrustedProxies {
        TrustedProxies(blocks)
    }

    /// Is `peer` (the connection's remote address) one of the trusted proxies?
    pub fn contains(&self, peer: IpAddr) -> bool {
        // The common case, no trusted proxies, costs one length check.
        !self.0.is_empty() && self.0.iter().any(|c| c.contains(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn blocks_match_what_they_cover() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("127.0.0.0/8", "::ffff:127.0.0.9", true),
            ("0.0.0.0/0", "203.0.113.7", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("192.168.1.128/25", "192.168.1.200", true),
            ("192.168.1.128/25", "192.168.1.100", false),
            ("fd00::/8", "fd12:3456::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::1/128", "::1", true),
            ("::/0", "2001:db8::1", true),
            ("::/0", "10.0.0.1", true),
        ];
        for (block, addr, expected) in cases {
            let c = Cidr::parse(block).unwrap_or_else(|e| panic!("{block}: {e}"));
            assert_eq!(c.contains(ip(addr)), *expected, "{block} ∋ {addr}");
        }
    }

    #[test]
    fn malformed_blocks_are_refused() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0/8",
            "10.1.2.3/8",
            "example.com/8",
            "fd00::1/8",
            "::/129",
            "10.0.0.0/8/8",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_empty_list_trusts_no_one() {
        let none = TrustedProxies::default();
        assert!(!none.contains(ip("127.0.0.1")));
        let some = TrustedProxies::new(vec![
            Cidr::parse("10.0.0.0/8").expect("block"),
            Cidr::parse("::1").expect("block"),
        ]);
        assert!(some.contains(ip("10.1.1.1")));
        assert!(some.contains(ip("::1")));
        assert!(!some.contains(ip("127.0.0.1")));
    }
}
