//! A private six-node Redis Cluster per test (three masters, three replicas) on free ports,
//! created with `redis-cli --cluster create` and polled until every node says
//! `cluster_state:ok` and all agree on who owns which slot. A test may kill a master (its
//! replica takes over), pause and resume every node, and move a slot by hand, stopping
//! half-way while the gateway serves. Nothing is ever flushed; every node is killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::redis_server::{free_port, ping, spawn_server};
use super::{TempDir, poll};

mod reshard;
mod topology;

pub use reshard::SlotMove;
pub use topology::Topology;
use topology::{parse_nodes, topology_of};

const NODES: usize = 6;
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
        let mut cluster = RedisCluster { nodes, dir };
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
        // Masters first in the seed list: a client that picks the first seed for something
        // (its revocation subscription, say) then picks a node a test can kill as a master.
        cluster
            .nodes
            .sort_by_key(|n| !topology.masters.contains_key(&n.port));
        cluster
    }

    /// `redis://127.0.0.1:PORT` of every node, killed ones included, the three first
    /// masters first: the seed list a gateway is configured with.
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
        let slot: i64 = query(port, cmd(&["CLUSTER", "KEYSLOT"]).arg(key))
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

    /// How many Pub/Sub connections the node at `port` serves (`CLIENT LIST TYPE pubsub`):
    /// where the gateways' revocation subscriptions are.
    pub async fn pubsub_clients(&self, port: u16) -> usize {
        let list: String = query(port, &cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]))
            .await
            .unwrap_or_else(|e| panic!("CLIENT LIST on {port}: {e}"));
        list.lines().filter(|l| !l.trim().is_empty()).count()
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

    pub(super) fn id(&self, port: u16) -> &str {
        &self
            .nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
            .id
    }

    pub(super) async fn must(&self, port: u16, args: &[&str]) {
        let reply: String = query(port, &cmd(args))
            .await
            .unwrap_or_else(|e| panic!("{args:?} on {port}: {e}"));
        assert_eq!(reply, "OK", "{args:?} on {port}");
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
    pub(super) async fn wait_for(&self, what: &str, done: impl Fn(&Topology) -> bool) -> Topology {
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

pub(super) fn cmd(args: &[&str]) -> redis::Cmd {
    let mut command = redis::Cmd::new();
    for arg in args {
        command.arg(*arg);
    }
    command
}

/// One command on one node over a fresh connection, bounded by [`COMMAND_TIMEOUT`].
pub(super) async fn query<T: redis::FromRedisValue>(
    port: u16,
    command: &redis::Cmd,
) -> Result<T, String> {
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
