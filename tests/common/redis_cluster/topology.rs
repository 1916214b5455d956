//! What the harness reads from `CLUSTER NODES`: who owns which slot, who follows whom, and
//! whether a node's view has settled.

use std::collections::BTreeMap;

const SLOTS: u32 = 16384;

/// Who owns which slots as the live nodes see it (ports, not node ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Every live master and its slot ranges (inclusive).
    pub masters: BTreeMap<u16, Vec<(u16, u16)>>,
    /// Every live replica and the master it follows.
    pub replicas: BTreeMap<u16, u16>,
}

impl Topology {
    /// The master serving `slot`.
    pub fn owner(&self, slot: u16) -> Option<u16> {
        self.masters.iter().find_map(|(port, ranges)| {
            ranges
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&slot))
                .then_some(*port)
        })
    }

    /// The live replicas of `master`.
    pub fn replicas_of(&self, master: u16) -> Vec<u16> {
        self.replicas
            .iter()
            .filter(|(_, m)| **m == master)
            .map(|(r, _)| *r)
            .collect()
    }
}

/// One line of `CLUSTER NODES`.
pub(super) struct NodeLine {
    id: String,
    port: u16,
    flags: Vec<String>,
    master: Option<String>,
    slots: Vec<(u16, u16)>,
}

/// `<id> <ip:port@cport[,hostname]> <flags> <master|-> <ping> <pong> <epoch> <link>
/// <slot>...`; `[slot->-id]` / `[slot-<-id]` entries (open migrations) are skipped.
pub(super) fn parse_nodes(text: &str) -> Result<Vec<NodeLine>, String> {
    let mut nodes = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let bad = || format!("cannot read CLUSTER NODES line {line:?}");
        if fields.len() < 8 {
            return Err(bad());
        }
        let port = fields[1]
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(bad)?;
        let mut slots = Vec::new();
        for entry in fields[8..].iter().filter(|e| !e.starts_with('[')) {
            let (lo, hi) = entry.split_once('-').unwrap_or((entry, entry));
            slots.push((
                lo.parse().map_err(|_| bad())?,
                hi.parse().map_err(|_| bad())?,
            ));
        }
        nodes.push(NodeLine {
            id: fields[0].to_owned(),
            port,
            flags: fields[2].split(',').map(str::to_owned).collect(),
            master: (fields[3] != "-").then(|| fields[3].to_owned()),
            slots,
        });
    }
    Ok(nodes)
}

/// One node's view reduced to the live nodes; an error while the view is not settled (a
/// live node missing or suspected, a dead one still owning slots, slots unassigned).
pub(super) fn topology_of(lines: &[NodeLine], live: &[u16]) -> Result<Topology, String> {
    let port_of: BTreeMap<&str, u16> = lines.iter().map(|l| (l.id.as_str(), l.port)).collect();
    let mut topology = Topology {
        masters: BTreeMap::new(),
        replicas: BTreeMap::new(),
    };
    for &port in live {
        let line = lines
            .iter()
            .find(|l| l.port == port)
            .ok_or_else(|| format!("{port} not known"))?;
        let unsettled = ["fail", "fail?", "handshake", "noaddr"];
        if line.flags.iter().any(|f| unsettled.contains(&f.as_str())) {
            return Err(format!("{port} flagged {:?}", line.flags));
        }
    }
    let mut covered = 0u32;
    for line in lines {
        let is_live = live.contains(&line.port);
        if !is_live {
            if !line.slots.is_empty() {
                return Err(format!("dead node {} still owns slots", line.port));
            }
            continue;
        }
        if line.flags.iter().any(|f| f == "master") {
            let mut ranges = line.slots.clone();
            ranges.sort_unstable();
            covered += ranges
                .iter()
                .map(|(lo, hi)| u32::from(hi - lo) + 1)
                .sum::<u32>();
            topology.masters.insert(line.port, ranges);
        } else if let Some(master) = &line.master {
            let master = port_of
                .get(master.as_str())
                .ok_or_else(|| format!("{} follows an unknown node", line.port))?;
            topology.replicas.insert(line.port, *master);
        }
    }
    if covered != SLOTS {
        return Err(format!("{covered} of {SLOTS} slots assigned"));
    }
    Ok(topology)
}

#[test]
fn harness_reads_cluster_nodes() {
    let text = "\
07c3 127.0.0.1:30004@31004,host4 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
6ec2 127.0.0.1:30005@31005 slave 67ed 0 1426238316232 5 connected
824f 127.0.0.1:30006@31006 slave 292f 0 1426238317741 6 connected
e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5459 5460 [5461->-67ed]
";
    let all = [30001, 30002, 30003, 30004, 30005, 30006];
    let t = topology_of(&parse_nodes(text).expect("parses"), &all).expect("settled");
    assert_eq!(t.masters.len(), 3);
    assert_eq!(t.masters[&30001], vec![(0, 5459), (5460, 5460)]);
    assert_eq!(
        (t.owner(0), t.owner(5460), t.owner(5461), t.owner(16383)),
        (Some(30001), Some(30001), Some(30002), Some(30003))
    );
    assert_eq!(t.replicas_of(30001), vec![30004]);

    // A dead node that still owns slots, a live one under suspicion, a slot unassigned.
    let without = &all[1..];
    assert!(topology_of(&parse_nodes(text).expect("parses"), without).is_err());
    let suspected = text.replace("master - 0 1426238318243", "master,fail? - 0 1426238318243");
    assert!(topology_of(&parse_nodes(&suspected).expect("parses"), &all).is_err());
    let gap = text.replace(" 5460 [", " [");
    assert!(topology_of(&parse_nodes(&gap).expect("parses"), &all).is_err());
    assert!(parse_nodes("garbage").is_err());
}
