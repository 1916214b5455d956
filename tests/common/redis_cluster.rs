//! A private six-node Redis Cluster per test (three masters, three replicas) on free ports,
//! created with `redis-cli --cluster create` and polled until every node says
//! `cluster_state:ok` and all agree on who owns which slot. A test may kill a master (its
//! replica takes over), pause and resume every node, and move a slot by hand, stopping
//! half-way while the gateway serves. Nothing is ever flushed; every node is killed on drop.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::redis_server::{free_port, ping, spawn_server};
use super::{TempDir, poll};

const NODES: usize = 6;
const SLOTS: u32 = 16384;
/// Forming the cluster takes about 2 s here and a failover about 3 s (node timeout 1 s);
/// this leaves room for a loaded machine.
const SETTLE_WITHIN: Duration = Duration::from_secs(20);
/// One harness command; a paused node never answers, so every call is bounded.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

struct Node {
    port: u16,
    id: String,
    /// `None` once the test killed it.
    child: Option<Child>,
}

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

/// A slot caught between two masters by [`RedisCluster::migrate_slot_halfway`]: MIGRATING on
/// `from`, IMPORTING on `to`, `moved` keys already on `to` and `left` still on `from`.
#[derive(Debug)]
pub struct SlotMove {
    pub slot: u16,
    pub from: u16,
    pub to: u16,
    pub moved: usize,
    pub left: usize,
}

pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: TempDir,
}

impl RedisCluster {
    /// Six cluster-enabled `redis-server`s joined by `redis-cli --cluster create
    /// --cluster-replicas 1`; returns once every node reports `cluster_state:ok` and the
    /// same slot owners.
    pub async fn start() -> RedisCluster {
        let dir = TempDir::new("redis-cluster");
        let mut nodes = Vec::with_capacity(NODES);
        for _ in 0..NODES {
            nodes.push(start_node(&dir).await);
        }
        let cluster = RedisCluster { nodes, dir };
        let seeds: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(seeds);
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(str::to_owned));
        cluster.redis_cli("create", &args).await;
        let topology = cluster
            .wait_for("the cluster to form", |t| {
                t.masters.len() == 3 && t.replicas.len() == 3
            })
            .await;
        for master in topology.masters.keys() {
            assert_eq!(topology.replicas_of(*master).len(), 1, "{topology:?}");
        }
        cluster
    }

    /// `redis://127.0.0.1:PORT` of every node, killed ones included: the seed list a
    /// gateway is configured with.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The ports of the nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// The topology every live node agrees on now; panics if they do not within 20 s.
    pub async fn topology(&self) -> Topology {
        self.wait_for("the nodes to agree", |_| true).await
    }

    /// The live masters' ports.
    pub async fn masters(&self) -> Vec<u16> {
        self.topology().await.masters.into_keys().collect()
    }

    /// `CLUSTER KEYSLOT key`.
    pub async fn slot_of(&self, key: &[u8]) -> u16 {
        let port = self.live_ports()[0];
        let slot: i64 = query(port, &cmd(&["CLUSTER", "KEYSLOT"]).arg(key))
            .await
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT on {port}: {e}"));
        u16::try_from(slot).expect("slot in range")
    }

    /// The master that serves `key` (its slot's owner).
    pub async fn master_for_key(&self, key: &[u8]) -> u16 {
        let slot = self.slot_of(key).await;
        let topology = self.topology().await;
        topology
            .owner(slot)
            .unwrap_or_else(|| panic!("no owner of slot {slot}: {topology:?}"))
    }

    /// Runs one command on the node at `port` (the harness's own view; no redirects).
    pub async fn command<T: redis::FromRedisValue>(
        &self,
        port: u16,
        args: &[&[u8]],
    ) -> Result<T, String> {
        let mut command = redis::Cmd::new();
        for arg in args {
            command.arg(*arg);
        }
        query(port, &command).await
    }

    /// Every key matching `pattern` with the master holding it (`KEYS` on every master).
    pub async fn keys(&self, pattern: &str) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        for master in self.masters().await {
            let keys: Vec<Vec<u8>> = query(master, &cmd(&["KEYS", pattern]))
                .await
                .unwrap_or_else(|e| panic!("KEYS on {master}: {e}"));
            out.extend(keys.into_iter().map(|k| (master, k)));
        }
        out
    }

    /// `redis-cli -c -p <a live node> args...` (following MOVED and ASK like a cluster
    /// client); its standard output, trimmed.
    pub async fn cli(&self, args: &[&str]) -> String {
        let mut all = vec![
            "-c".to_owned(),
            "-p".to_owned(),
            self.live_ports()[0].to_string(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        self.redis_cli("cli", &all).await.trim().to_owned()
    }

    /// SIGKILLs the master at `port` and waits until one of its replicas has taken over its
    /// slots and every live node says `cluster_state:ok` again. Returns the new master.
    pub async fn kill_master(&mut self, port: u16) -> u16 {
        let before = self.topology().await;
        assert!(
            before.masters.contains_key(&port),
            "{port} is not a master: {before:?}"
        );
        let replicas = before.replicas_of(port);
        assert!(!replicas.is_empty(), "{port} has no replica: {before:?}");
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        let mut child = node.child.take().expect("a running node");
        // `Child::kill` is SIGKILL on Unix: no shutdown, no goodbye to the other nodes.
        let _ = child.kill();
        let _ = child.wait();
        let after = self
            .wait_for("a replica to take over", |t| {
                replicas.iter().any(|r| t.masters.contains_key(r))
            })
            .await;
        *replicas
            .iter()
            .find(|r| after.masters.contains_key(r))
            .expect("a promoted replica")
    }

    /// SIGSTOPs every live node: connections stay open, nothing answers.
    pub fn pause_all(&self) {
        self.signal_all("STOP");
    }

    /// SIGCONTs every live node and waits until the cluster is whole again (the nodes may
    /// have failed over meanwhile; the returned topology says who serves what now).
    pub async fn resume_all(&self) -> Topology {
        self.signal_all("CONT");
        self.topology().await
    }

    /// Moves `slot` from master `from` to master `to` completely.
    pub async fn migrate_slot(&self, slot: u16, from: u16, to: u16) {
        let pending = self.migrate_slot_halfway(slot, from, to).await;
        self.finish_migration(pending).await;
    }

    /// The first half of the resharding steps `redis-cli --cluster reshard` takes:
    /// `CLUSTER SETSLOT slot IMPORTING` on `to`, `MIGRATING` on `from`, then `MIGRATE`s half
    /// of the slot's keys (rounded up). The slot stays split until
    /// [`RedisCluster::finish_migration`]: clients meet `ASK` redirects (and `TRYAGAIN` for
    /// commands whose keys are on both sides).
    pub async fn migrate_slot_halfway(&self, slot: u16, from: u16, to: u16) -> SlotMove {
        let topology = self.topology().await;
        assert_eq!(topology.owner(slot), Some(from), "{topology:?}");
        assert!(topology.masters.contains_key(&to), "{to} is not a master");
        let slot_arg = slot.to_string();
        let (from_id, to_id) = (self.id(from), self.id(to));
        self.must(to, &["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", from_id])
            .await;
        self.must(from, &["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", to_id])
            .await;
        let keys = self.keys_in_slot(from, slot).await;
        let moved = keys.len().div_ceil(2);
        self.migrate_keys(from, to, &keys[..moved]).await;
        SlotMove {
            slot,
            from,
            to,
            moved,
            left: keys.len() - moved,
        }
    }

    /// Moves whatever keys are still on the old side (the gateway may have written more
    /// meanwhile), then `CLUSTER SETSLOT slot NODE to` on `to`, `from` and every other
    /// master; returns once every node agrees that `to` owns the slot.
    pub async fn finish_migration(&self, pending: SlotMove) {
        let SlotMove { slot, from, to, .. } = pending;
        let mut rounds = 0;
        loop {
            let keys = self.keys_in_slot(from, slot).await;
            if keys.is_empty() {
                break;
            }
            rounds += 1;
            assert!(rounds <= 100, "slot {slot} keeps filling up on {from}");
            self.migrate_keys(from, to, &keys).await;
        }
        let slot_arg = slot.to_string();
        let to_id = self.id(to);
        let mut order = vec![to, from];
        order.extend(
            self.masters()
                .await
                .into_iter()
                .filter(|m| ![to, from].contains(m)),
        );
        for port in order {
            self.must(port, &["CLUSTER", "SETSLOT", &slot_arg, "NODE", to_id])
                .await;
        }
        self.wait_for("the moved slot's new owner to be agreed", |t| {
            t.owner(slot) == Some(to)
        })
        .await;
    }

    fn id(&self, port: u16) -> &str {
        &self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
            .id
    }

    async fn must(&self, port: u16, args: &[&str]) {
        let reply: String = query(port, &cmd(args))
            .await
            .unwrap_or_else(|e| panic!("{args:?} on {port}: {e}"));
        assert_eq!(reply, "OK", "{args:?} on {port}");
    }

    async fn keys_in_slot(&self, port: u16, slot: u16) -> Vec<Vec<u8>> {
        let args = ["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "1000"];
        query(port, &cmd(&args))
            .await
            .unwrap_or_else(|e| panic!("CLUSTER GETKEYSINSLOT on {port}: {e}"))
    }

    async fn migrate_keys(&self, from: u16, to: u16, keys: &[Vec<u8>]) {
        if keys.is_empty() {
            return;
        }
        let mut command = cmd(&["MIGRATE", "127.0.0.1", &to.to_string(), "", "0", "1500"]);
        command.arg("KEYS");
        for key in keys {
            command.arg(&key[..]);
        }
        // NOKEY: every key named had expired or been deleted meanwhile; nothing to move.
        let reply: String = query(from, &command)
            .await
            .unwrap_or_else(|e| panic!("MIGRATE from {from} to {to}: {e}"));
        assert!(reply == "OK" || reply == "NOKEY", "MIGRATE said {reply}");
    }

    fn signal_all(&self, signal: &str) {
        for node in &self.nodes {
            if let Some(child) = &node.child {
                let status = Command::new("kill")
                    .arg(format!("-{signal}"))
                    .arg(child.id().to_string())
                    .status()
                    .unwrap_or_else(|e| panic!("kill -{signal}: {e}"));
                assert!(status.success(), "kill -{signal} {}", child.id());
            }
        }
    }

    /// Polls until every live node reports `cluster_state:ok`, the nodes agree on the
    /// topology, it covers every slot, every replica's link to its master is up, and `done`
    /// holds for it; panics naming `what` and the
    /// last disagreement otherwise.
    async fn wait_for(&self, what: &str, done: impl Fn(&Topology) -> bool) -> Topology {
        let done = &done;
        let this = self;
        let agreed = poll(SETTLE_WITHIN, move || async move {
            this.agreed().await.ok().filter(|t| done(t))
        })
        .await;
        match agreed {
            Some(topology) => topology,
            None => panic!(
                "waited {SETTLE_WITHIN:?} for {what}; now: {:?}\nlogs in {}",
                self.agreed().await,
                self.dir.path().display()
            ),
        }
    }

    /// The topology if every live node sees the same one, whole; why not otherwise.
    async fn agreed(&self) -> Result<Topology, String> {
        let live = self.live_ports();
        let mut seen: Option<Topology> = None;
        for &port in &live {
            let info: String = query(port, &cmd(&["CLUSTER", "INFO"])).await?;
            if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                return Err(format!("{port} is not cluster_state:ok"));
            }
            let text: String = query(port, &cmd(&["CLUSTER", "NODES"])).await?;
            let view =
                topology_of(&parse_nodes(&text)?, &live).map_err(|e| format!("{port}: {e}"))?;
            match &seen {
                None => seen = Some(view),
                Some(first) if *first == view => {}
                Some(first) => return Err(format!("{port} sees {view:?}, not {first:?}")),
            }
        }
        let topology = seen.ok_or_else(|| "no live node".to_owned())?;
        // A replica that has not synced yet could not take over (and `WAIT` would hang).
        for replica in topology.replicas.keys() {
            let info: String = query(*replica, &cmd(&["INFO", "replication"])).await?;
            if !info.lines().any(|l| l.trim() == "master_link_status:up") {
                return Err(format!("replica {replica} has not synced with its master"));
            }
        }
        Ok(topology)
    }

    /// Runs `redis-cli args` to completion (bounded), its output kept in the cluster's dir.
    async fn redis_cli(&self, tag: &str, args: &[String]) -> String {
        let out_path = self.dir.path().join(format!("redis-cli-{tag}.out"));
        let out = std::fs::File::create(&out_path).expect("redis-cli output file");
        let mut child = Command::new("redis-cli")
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-cli (is it installed?): {e}"));
        let status = poll(Duration::from_secs(30), || {
            let exited = child.try_wait().ok().flatten();
            async move { exited }
        })
        .await;
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let output = std::fs::read_to_string(&out_path).unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "redis-cli {args:?} failed ({status:?}):\n{output}"
        );
        output
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        // SIGKILL also ends a SIGSTOPped process.
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// One cluster-enabled node on a free port (and a free cluster-bus port), retried on
/// another pair of ports if it does not come up.
async fn start_node(dir: &TempDir) -> Node {
    let mut failures = Vec::new();
    for _ in 0..5 {
        let (port, bus) = (free_port(), free_port());
        if port == bus {
            continue;
        }
        let conf = dir.path().join(format!("nodes-{port}.conf"));
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--cluster-port",
            &bus.to_string(),
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            "1000",
            "--cluster-config-file",
        ]
        .map(str::to_owned)
        .to_vec();
        args.push(conf.to_str().expect("UTF-8 temp path").to_owned());
        match spawn_server(dir, &format!("node-{port}"), &args, move || ping(port)).await {
            Ok(child) => {
                let id: String = match query(port, &cmd(&["CLUSTER", "MYID"])).await {
                    Ok(id) => id,
                    Err(e) => panic!("CLUSTER MYID on {port}: {e}"),
                };
                return Node {
                    port,
                    id,
                    child: Some(child),
                };
            }
            Err(why) => failures.push(why),
        }
    }
    panic!(
        "a cluster node did not come up:\n{}",
        failures.join("\n---\n")
    );
}

fn cmd(args: &[&str]) -> redis::Cmd {
    let mut command = redis::Cmd::new();
    for arg in args {
        command.arg(*arg);
    }
    command
}

/// One command on one node over a fresh connection, bounded by [`COMMAND_TIMEOUT`].
async fn query<T: redis::FromRedisValue>(port: u16, command: &redis::Cmd) -> Result<T, String> {
    let attempt = async {
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{port}")).map_err(|e| e.to_string())?;
        // The client's own 500 ms response timeout would cut `WAIT` and `MIGRATE` short.
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(COMMAND_TIMEOUT));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())?;
        command
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(COMMAND_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("no answer from {port} within {COMMAND_TIMEOUT:?}"))?
}

/// One line of `CLUSTER NODES`.
struct NodeLine {
    id: String,
    port: u16,
    flags: Vec<String>,
    master: Option<String>,
    slots: Vec<(u16, u16)>,
}

/// `<id> <ip:port@cport[,hostname]> <flags> <master|-> <ping> <pong> <epoch> <link>
/// <slot>...`; `[slot->-id]` / `[slot-<-id]` entries (open migrations) are skipped.
fn parse_nodes(text: &str) -> Result<Vec<NodeLine>, String> {
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
fn topology_of(lines: &[NodeLine], live: &[u16]) -> Result<Topology, String> {
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
