//! Renders the typical `gateway.toml` the tests run on (SPEC §2 keys only), with fresh
//! random credentials per test, and the `[store]` section for each store (memory, Redis,
//! Redis Cluster, Redis over TLS).

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::{Redis, RedisCluster, RedisTls, random_hex};

/// Fresh credentials for one test. Every client in the config shares `secret` (stored as
/// `secret_hash`); `alice` logs in with `password`. Random, so a log scan for them means
/// something.
pub struct Creds {
    pub secret: String,
    pub secret_hash: String,
    pub password: String,
    pub password_hash: String,
}

impl Creds {
    pub fn random() -> Creds {
        let secret = format!("cs-{}", random_hex(16));
        let password = format!("pw-{}", random_hex(12));
        Creds {
            secret_hash: argon2_hash(&secret),
            password_hash: argon2_hash(&password),
            secret,
            password,
        }
    }
}

/// An argon2id PHC string for `plain`, with cheap parameters (m=1 MiB, t=1, p=1) so tests
/// stay fast; the gateway must verify with whatever parameters the string names.
pub fn argon2_hash(plain: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("OS random generator");
    let salt = SaltString::encode_b64(&salt).expect("salt");
    let params = Params::new(1024, 1, 1, None).expect("argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(plain.as_bytes(), &salt)
        .expect("argon2 hash")
        .to_string()
}

/// Where tokens live: the embedded memory store, or Redis with a key prefix unique to the
/// test: a private `redis-server`, a private six-node Redis Cluster, or a private TLS-only
/// `redis-server` (`rediss://`).
pub struct Store {
    pub redis: Option<Redis>,
    pub cluster: Option<RedisCluster>,
    pub tls: Option<(RedisTls, TlsCa)>,
    pub prefix: String,
}

/// Which CA a `rediss://` store section names as `[store] ca`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsCa {
    /// The CA that signed the server's certificate: the connection must verify.
    Right,
    /// A CA that signed nothing the server presents: the gateway must refuse to start.
    Unrelated,
    /// No `ca` key: the system roots, which do not know the test CA either.
    SystemRoots,
}

impl Store {
    pub fn memory() -> Store {
        Store {
            redis: None,
            cluster: None,
            tls: None,
            prefix: String::new(),
        }
    }

    /// Starts a `redis-server` for this test.
    pub async fn redis() -> Store {
        Store {
            redis: Some(Redis::start().await),
            ..Store::memory().with_prefix()
        }
    }

    /// Starts a `redis-server` with `appendfsync always` for this test, to crash it and see
    /// what an acknowledged write should survive (see [`Redis::start_durable`]).
    pub async fn redis_durable() -> Store {
        Store {
            redis: Some(Redis::start_durable().await),
            ..Store::memory().with_prefix()
        }
    }

    /// Starts a six-node Redis Cluster for this test (`mode = "cluster"`, every node a seed).
    pub async fn cluster() -> Store {
        Store {
            cluster: Some(RedisCluster::start().await),
            ..Store::memory().with_prefix()
        }
    }

    /// Starts a TLS-only `redis-server` for this test; the section names `ca` as chosen.
    pub async fn redis_tls(ca: TlsCa) -> Store {
        Store {
            tls: Some((RedisTls::start().await, ca)),
            ..Store::memory().with_prefix()
        }
    }

    fn with_prefix(mut self) -> Store {
        self.prefix = format!("e2e-{}-{}:", std::process::id(), random_hex(6));
        self
    }

    /// True for every Redis flavour (the nodes of a test may then share the store).
    pub fn is_redis(&self) -> bool {
        self.redis.is_some() || self.cluster.is_some() || self.tls.is_some()
    }

    /// A plain connection to the single Redis server (to look at or change what the gateway
    /// keeps there); panics for any other store.
    pub async fn redis_connection(&self) -> redis::aio::MultiplexedConnection {
        let url = self
            .redis
            .as_ref()
            .expect("this test needs the single redis store")
            .url();
        redis::Client::open(url)
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test's redis-server")
    }

    /// The store driven through the library (no gateway): memory, the single server or the
    /// cluster, with this test's prefix and no local cache.
    pub fn token_store(&self) -> tollgate::store::TokenStore {
        use tollgate::config::{Backend, RedisConfig, StoreConfig};
        let backend = match (&self.redis, &self.cluster) {
            (Some(redis), _) => Backend::Redis(RedisConfig::single(redis.url())),
            (None, Some(cluster)) => Backend::Redis(RedisConfig {
                urls: cluster.urls(),
                cluster: true,
                ca: None,
            }),
            (None, None) => Backend::Memory,
        };
        tollgate::store::TokenStore::open(&StoreConfig {
            backend,
            prefix: self.prefix.clone(),
            cache_ttl: std::time::Duration::ZERO,
            cache_capacity: 0,
            encryption_key: None,
        })
        .expect("open the store")
    }

    /// The single Redis server; panics for any other store.
    pub fn redis_mut(&mut self) -> &mut Redis {
        self.redis
            .as_mut()
            .expect("this test needs the single redis store")
    }

    /// The Redis Cluster; panics for any other store.
    pub fn redis_cluster(&self) -> &RedisCluster {
        self.cluster
            .as_ref()
            .expect("this test needs the redis cluster store")
    }

    /// The Redis Cluster, to kill or pause its nodes; panics for any other store.
    pub fn redis_cluster_mut(&mut self) -> &mut RedisCluster {
        self.cluster
            .as_mut()
            .expect("this test needs the redis cluster store")
    }

    /// Every key of this test's Redis (every master of a cluster) with every value, as one
    /// text (to check that nothing secret is stored in the clear).
    pub async fn redis_dump(&self) -> String {
        if let Some(redis) = &self.redis {
            return dump_node(&redis.url()).await;
        }
        let cluster = self
            .cluster
            .as_ref()
            .expect("this test needs the redis store (single or cluster)");
        let mut out = String::new();
        for master in cluster.masters().await {
            out.push_str(&dump_node(&format!("redis://127.0.0.1:{master}")).await);
        }
        out
    }

    /// The `[store]` section. `cache_ttl` is long on purpose: anything that must happen
    /// sooner (revocation, expiry) cannot be explained by the cache simply running out.
    pub fn toml(&self) -> String {
        let common = format!("prefix = \"{}\"\ncache_ttl = \"30s\"\n", self.prefix);
        if let Some(redis) = &self.redis {
            return format!(
                "[store]\nbackend = \"redis\"\nurl = \"{}\"\n{common}",
                redis.url()
            );
        }
        if let Some(cluster) = &self.cluster {
            let urls = cluster.urls();
            let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
            return format!(
                "[store]\nbackend = \"redis\"\nmode = \"cluster\"\nurls = [{}]\n{common}",
                toml_list(&urls)
            );
        }
        if let Some((server, ca)) = &self.tls {
            let ca = match ca {
                TlsCa::Right => Some(server.ca()),
                TlsCa::Unrelated => Some(server.unrelated_ca()),
                TlsCa::SystemRoots => None,
            };
            let ca = ca.map_or(String::new(), |path| {
                format!("ca = \"{}\"\n", path.display())
            });
            return format!(
                "[store]\nbackend = \"redis\"\nurl = \"{}\"\n{ca}{common}",
                server.url()
            );
        }
        "[store]\nbackend = \"memory\"\n".to_owned()
    }
}

/// Every key of the Redis at `url` (one node) with its value.
async fn dump_node(url: &str) -> String {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("TYPE");
        let command: &[&str] = match kind.as_str() {
            "string" => &["GET"],
            "hash" => &["HGETALL"],
            "set" => &["SMEMBERS"],
            "zset" => &["ZRANGE", "0", "-1", "WITHSCORES"],
            "list" => &["LRANGE", "0", "-1"],
            _ => continue,
        };
        let mut cmd = redis::cmd(command[0]);
        cmd.arg(&key);
        for arg in &command[1..] {
            cmd.arg(*arg);
        }
        let values: redis::Value = cmd.query_async(&mut conn).await.expect("dump value");
        out.push_str(&format!("{key} {values:?}\n"));
    }
    out
}

/// The typical config: scopes, routes to one upstream (and one dead port), the confidential
/// client `photoprint` and the user `alice`. Tests adjust the fields, or append TOML to
/// `extra` (more clients, routes, scopes), before [`GatewayConfig::render`].
pub struct GatewayConfig {
    /// `[server] listen`: port 0 unless [`GatewayConfig::use_fixed_port`] picked one.
    pub listen: String,
    /// `[server] public_url`: a placeholder unless [`GatewayConfig::use_fixed_port`] made it
    /// the real address (needed where a client follows absolute URLs built from it).
    pub public_url: String,
    /// The `[oauth]` keys, in order, as `key = value` with the value in TOML syntax; change
    /// them with [`GatewayConfig::set_oauth`].
    pub oauth: Vec<(String, String)>,
    pub store: String,
    pub upstream: String,
    pub dead_upstream: String,
    pub secret_hash: String,
    pub password_hash: String,
    pub extra: String,
    /// Environment variables for the gateway process.
    pub env: Vec<(String, String)>,
    /// More `[server]` keys, TOML lines (e.g. `trusted_proxies = ["127.0.0.0/8"]`).
    pub server_extra: String,
    /// Holds the port [`GatewayConfig::use_fixed_port`] picked until the gateway binds it.
    pub port_hold: Option<tokio::net::TcpSocket>,
}

/// Scopes:
/// - `reports`: `/abc/*` any method, and `GET /reports/{id}`
/// - `secret`: `/secret/*`
/// - `publish`: `POST /reports/{id}`
/// - `infra`: `/slow/*`, `/dead/*`, `/rr/*`, `/strip/*`
///
/// Routes (all `bearer` unless said): `/abc/*`, `/reports/*`, `/secret/*` → upstream;
/// `/public/*` (auth none) → upstream; `/slow/*` (timeout 300ms) → upstream (which answers
/// `/slow` paths after 2 s); `/dead/*` → a port nobody listens on; `/strip/*` → upstream
/// with `strip_prefix = "/strip"`.
const TEMPLATE: &str = r#"
[server]
listen = "@LISTEN@"
public_url = "@PUBLIC_URL@"
shutdown_grace = "2s"
@SERVER_EXTRA@

[admin]
listen = "127.0.0.1:0"

@STORE@
@OAUTH@

[[scopes]]
name = "reports"
description = "Read and print reports"
paths = ["/abc/*", "GET /reports/{id}"]

[[scopes]]
name = "secret"
description = "Secret documents"
paths = ["/secret/*"]

[[scopes]]
name = "publish"
description = "Publish reports"
paths = ["POST /reports/{id}"]

[[scopes]]
name = "infra"
description = "Test routes for upstream failure modes"
paths = ["/slow/*", "/dead/*", "/rr/*", "/strip/*"]

[[users]]
username = "alice"
password_hash = "@PASSWORD_HASH@"
scopes = ["reports", "secret"]

[[clients]]
client_id = "photoprint"
name = "PhotoPrint"
version = "1.0"
description = "Prints photos"
type = "confidential"
secret_hash = "@SECRET_HASH@"
grants = ["client_credentials", "password", "refresh_token"]
scopes = ["reports", "secret", "publish", "infra"]

[[routes]]
name = "abc"
path = "/abc/*"
upstreams = ["@UPSTREAM@"]

[[routes]]
name = "reports"
path = "/reports/*"
upstreams = ["@UPSTREAM@"]

[[routes]]
name = "secret"
path = "/secret/*"
upstreams = ["@UPSTREAM@"]

[[routes]]
name = "public"
path = "/public/*"
upstreams = ["@UPSTREAM@"]
auth = "none"

[[routes]]
name = "slow"
path = "/slow/*"
upstreams = ["@UPSTREAM@"]
timeout = "300ms"

[[routes]]
name = "dead"
path = "/dead/*"
upstreams = ["@DEAD@"]
timeout = "5s"

[[routes]]
name = "strip"
path = "/strip/*"
upstreams = ["@UPSTREAM@"]
strip_prefix = "/strip"
"#;

impl GatewayConfig {
    pub fn new(store: &Store, upstream: &str, creds: &Creds) -> GatewayConfig {
        let oauth = [
            ("path", "\"/oauth\""),
            ("access_token_ttl", "\"10m\""),
            ("refresh_token_ttl", "\"30d\""),
            ("authorization_code_ttl", "\"60s\""),
        ];
        GatewayConfig {
            listen: "127.0.0.1:0".to_owned(),
            public_url: "http://127.0.0.1:1".to_owned(),
            oauth: oauth
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            store: store.toml(),
            upstream: upstream.to_owned(),
            dead_upstream: super::dead_port_url(),
            secret_hash: creds.secret_hash.clone(),
            password_hash: creds.password_hash.clone(),
            extra: String::new(),
            env: Vec::new(),
            server_extra: String::new(),
            port_hold: None,
        }
    }

    pub fn render(&self) -> String {
        let mut oauth = String::from("[oauth]\n");
        for (key, value) in &self.oauth {
            oauth.push_str(&format!("{key} = {value}\n"));
        }
        let mut toml = TEMPLATE
            .replace("@LISTEN@", &self.listen)
            .replace("@SERVER_EXTRA@", &self.server_extra)
            .replace("@PUBLIC_URL@", &self.public_url)
            .replace("@OAUTH@", &oauth)
            .replace("@STORE@", &self.store)
            .replace("@PASSWORD_HASH@", &self.password_hash)
            .replace("@SECRET_HASH@", &self.secret_hash)
            .replace("@UPSTREAM@", &self.upstream)
            .replace("@DEAD@", &self.dead_upstream);
        toml.push('\n');
        toml.push_str(&self.extra);
        toml
    }

    /// Sets `[oauth] key` to the string `value` (replacing the template's value, if any).
    pub fn set_oauth(&mut self, key: &str, value: &str) {
        let value = format!("\"{value}\"");
        match self.oauth.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.oauth.push((key.to_owned(), value)),
        }
    }

    /// Makes the public listener bind a port picked now and `public_url` name it, so the URLs
    /// the gateway builds from `public_url` (metadata, redirects) lead back to it.
    ///
    /// Picking a free port and releasing it raced with every other port-0 bind on the machine.
    /// So the port stays bound in `port_hold` (not listening) until the gateway has started:
    /// the kernel never hands a bound port to a port-0 bind, while the gateway, which binds
    /// its public sockets with SO_REUSEADDR and SO_REUSEPORT as this one is, may share it.
    /// Connections go only to listening sockets, so all of them reach the gateway.
    pub fn use_fixed_port(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().expect("TCP socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.set_reuseport(true).expect("SO_REUSEPORT");
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind 127.0.0.1:0");
        let addr = socket.local_addr().expect("local addr");
        self.port_hold = Some(socket);
        self.listen = addr.to_string();
        self.public_url = format!("http://{addr}");
    }

    /// Appends a `[[users]]` entry with the fixture's password (`alice`'s) and `scopes`.
    pub fn add_user(&mut self, username: &str, scopes: &[&str]) {
        self.extra.push_str(&format!(
            "\n[[users]]\nusername = \"{username}\"\npassword_hash = \"{}\"\nscopes = [{}]\n",
            self.password_hash,
            toml_list(scopes)
        ));
    }

    /// Appends a public client (no secret) with `redirect_uris`, `grants` and `scopes`.
    pub fn add_public_client(
        &mut self,
        client_id: &str,
        redirect_uris: &[&str],
        grants: &[&str],
        scopes: &[&str],
    ) {
        self.extra.push_str(&format!(
            "\n[[clients]]\nclient_id = \"{client_id}\"\nname = \"{client_id}\"\nversion = \"1.0\"\n\
             description = \"public test client {client_id}\"\ntype = \"public\"\n\
             redirect_uris = [{}]\ngrants = [{}]\nscopes = [{}]\n",
            toml_list(redirect_uris),
            toml_list(grants),
            toml_list(scopes)
        ));
    }

    /// Appends a confidential client sharing the fixture's secret (see [`client_toml`]).
    pub fn add_client(&mut self, client_id: &str, grants: &[&str], scopes: &[&str], more: &str) {
        let secret = format!("secret_hash = \"{}\"", self.secret_hash);
        self.extra
            .push_str(&client_toml(client_id, &secret, grants, scopes, more));
    }
}

/// A `[[clients]]` entry; `secret_line` is the `secret = ...` or `secret_hash = ...` line,
/// `more` any further lines (`access_token_ttl = "2s"`, `refresh_count = 1`).
pub fn client_toml(
    client_id: &str,
    secret_line: &str,
    grants: &[&str],
    scopes: &[&str],
    more: &str,
) -> String {
    let list = toml_list;
    format!(
        "\n[[clients]]\nclient_id = \"{client_id}\"\nname = \"{client_id}\"\nversion = \"1.0\"\n\
         description = \"test client {client_id}\"\ntype = \"confidential\"\n{secret_line}\n\
         grants = [{}]\nscopes = [{}]\n{more}\n",
        list(grants),
        list(scopes)
    )
}

/// `"a", "b"`: the inside of a TOML array of strings.
pub fn toml_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
