#!/usr/bin/env python3
"""Tollgate on a Redis Cluster: Redis operations per request, cache hit ratio, revocation lag.

    python3 bench/cluster.py            # builds target/release/tollgate if missing
    CLUSTER_SECONDS=10 CLUSTER_REVOCATIONS=1000 python3 bench/cluster.py

Starts a private 6-node Redis Cluster (3 masters + 3 replicas) on free ports, two Tollgate
nodes on it, and an origin; then measures, and prints a Markdown table (also written to
bench/CLUSTER.md):

- Redis commands per proxied request at a steady state, from `INFO commandstats` summed over
  the masters before and after a load on node A with one token (with the local cache, and with
  `cache_capacity = 0`), and per token issued (client_credentials);
- node A's cache hit ratio over the cached load (tollgate_cache_hits/misses_total);
- the revocation lag on the far node: a token is issued on A and used on B (cached there),
  revoked on A, and B is polled every millisecond until it answers 401. p50/p99/max over
  CLUSTER_REVOCATIONS revocations (the polling adds up to ~1 ms).

Nothing here touches a Redis server it did not start. The load is wrk when it is installed
(apt-get install wrk), else Python threads (slower, same ratios).
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = float(os.environ.get("CLUSTER_SECONDS", "8"))
REVOCATIONS = int(os.environ.get("CLUSTER_REVOCATIONS", "1000"))
CLIENT = ("bench", "bench-secret")


def free_port():
    """A free port whose +10000 (a cluster node's bus port) is free too, both below the
    ephemeral range, so no client socket of the run can hold one."""
    import random
    while True:
        port = random.randint(10000, 22000)  # and +10000 stays below the ephemeral range
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def wait(what, deadline_s, check):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    sys.exit(f"{what} not ready within {deadline_s} s")


def redis_cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True)
    return out.stdout


def commands(ports, only=None):
    """Commands these nodes ran, from INFO commandstats: every command, those run inside
    scripts included, but not the INFO and CLUSTER calls of this harness; or only `only`."""
    total = 0
    for port in ports:
        for line in redis_cli(port, "INFO", "commandstats").splitlines():
            name = line.split(":")[0].removeprefix("cmdstat_")
            if not line.startswith("cmdstat_") or name in ("info", "cluster"):
                continue
            if only is None or name in only:
                total += int(line.split("calls=")[1].split(",")[0])
    return total


def idle_rate(ports, seconds=3.0):
    """Commands per second with no load: subscription pings, readiness, cache refills."""
    before = commands(ports)
    time.sleep(seconds)
    return (commands(ports) - before) / seconds


def request(method, url, data=None, token=None, basic=None):
    headers = {}
    if token:
        headers["Authorization"] = "Bearer " + token
    if basic:
        headers["Authorization"] = "Basic " + b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    body = data.encode() if data else None
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        # One write: a head and a body written apiece meet Nagle and delayed ACKs (40 ms).
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")

    def log_message(self, *args):
        pass


def gateway_config(public, admin, seeds, origin, cache):
    from_hash = subprocess.run(
        [TOLLGATE, "hash-secret"], input=CLIENT[1], capture_output=True, text=True, check=True
    ).stdout.strip()
    urls = ", ".join(f'"redis://127.0.0.1:{p}"' for p in seeds)
    return f"""
[server]
listen = "127.0.0.1:{public}"
public_url = "http://127.0.0.1:{public}"
[admin]
listen = "127.0.0.1:{admin}"
[store]
backend = "redis"
mode = "cluster"
urls = [{urls}]
prefix = "bench:"
cache_ttl = "30s"
cache_capacity = {cache}
[oauth]
access_token_ttl = "1h"
[[scopes]]
name = "api"
paths = ["/api/*"]
[[clients]]
client_id = "{CLIENT[0]}"
secret_hash = "{from_hash}"
grants = ["client_credentials"]
scopes = ["api"]
[[routes]]
name = "api"
path = "/api/*"
auth = "bearer"
upstreams = ["http://127.0.0.1:{origin}"]
"""


class Node:
    def __init__(self, work, name, seeds, origin, cache):
        self.public, self.admin = free_port(), free_port()
        path = os.path.join(work, f"{name}.toml")
        with open(path, "w") as f:
            f.write(gateway_config(self.public, self.admin, seeds, origin, cache))
        self.log = open(os.path.join(work, f"{name}.log"), "w")
        self.proc = subprocess.Popen(
            [TOLLGATE, "run", "--config", path],
            stdout=self.log, stderr=self.log, env={**os.environ, "RUST_LOG": "warn"},
        )
        self.base = f"http://127.0.0.1:{self.public}"
        wait(f"gateway {name}", 15, lambda: request("GET", f"http://127.0.0.1:{self.admin}/readyz")[0] == 200)

    def token(self):
        status, body = request("POST", self.base + "/oauth/token", "grant_type=client_credentials", basic=CLIENT)
        assert status == 200, body
        return json.loads(body)["access_token"]

    def metric(self, name):
        _, body = request("GET", f"http://127.0.0.1:{self.admin}/metrics")
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def load(url, token, seconds):
    """Requests made with one bearer token for `seconds`; returns how many answered 200."""
    if shutil.which("wrk"):
        out = subprocess.run(
            ["wrk", "-t1", "-c16", f"-d{int(seconds)}s", "-H", f"Authorization: Bearer {token}", url],
            capture_output=True, text=True,
        ).stdout
        for line in out.splitlines():
            if "requests in" in line:
                return int(line.split()[0])
        sys.exit(f"wrk output not understood:\n{out}")
    done = [0]
    stop = time.time() + seconds

    def worker():
        while time.time() < stop:
            if request("GET", url, token=token)[0] == 200:
                done[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0]


def bus_lag(sub_port, pub_port, n):
    """Redis alone, no Tollgate: PUBLISH on one node, a SUBSCRIBE on another; latencies (ms)
    of a message crossing the cluster bus."""
    def conn(port):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s
    sub, pub = conn(sub_port), conn(pub_port)
    sub.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$8\r\nbus-test\r\n")
    sub.recv(1000)
    lags = []
    for i in range(n):
        m = b"m%d;" % i
        start = time.perf_counter()
        pub.sendall(b"*3\r\n$7\r\nPUBLISH\r\n$8\r\nbus-test\r\n$%d\r\n%s\r\n" % (len(m), m))
        buf = b""
        while m not in buf:
            buf += sub.recv(4096)
        lags.append((time.perf_counter() - start) * 1000)
        pub.recv(100)
        time.sleep(0.002)
    sub.close()
    pub.close()
    return sorted(lags)


def start_cluster(work):
    ports = [free_port() for _ in range(6)]
    procs = []
    for port in ports:
        d = os.path.join(work, str(port))
        os.makedirs(d)
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000", "--save", "",
             "--appendonly", "no", "--dir", d],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    for port in ports:
        wait(f"redis {port}", 10, lambda: redis_cli(port, "PING").strip() == "PONG")
    subprocess.run(
        ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
         "--cluster-replicas", "1", "--cluster-yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )
    wait("cluster_state:ok", 20, lambda: all("cluster_state:ok" in redis_cli(p, "CLUSTER", "INFO") for p in ports))
    masters = [p for p in ports if "role:master" in redis_cli(p, "INFO", "replication")]
    return ports, masters, procs


def main():
    global TOLLGATE
    TOLLGATE = os.environ.get("TOLLGATE", os.path.join(ROOT, "target/release/tollgate"))
    if not os.path.exists(TOLLGATE):
        subprocess.run(["cargo", "build", "--release", "--bin", "tollgate"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="tollgate-cluster-bench.")
    origin = ThreadingHTTPServer(("127.0.0.1", free_port()), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    ports, masters, redis = start_cluster(work)
    nodes = []
    rows = []
    try:
        a = Node(work, "a", ports[:3], origin.server_port, 1_000_000)
        b = Node(work, "b", ports[:3], origin.server_port, 1_000_000)
        nodes += [a, b]
        token = a.token()
        url = a.base + "/api/x"
        load(url, token, 1)  # warm: the token is in A's cache
        background = idle_rate(masters)
        rows.append(("Redis commands per second, two idle nodes", f"{background:.1f}", "subscription pings (4/s per node) and the like; not counted below"))
        before, hits0, misses0 = commands(masters), a.metric("tollgate_cache_hits_total"), a.metric("tollgate_cache_misses_total")
        n = load(url, token, SECONDS)
        ops = commands(masters) - before - background * SECONDS
        hits = a.metric("tollgate_cache_hits_total") - hits0
        misses = a.metric("tollgate_cache_misses_total") - misses0
        rows.append(("Redis commands per proxied request, local cache", f"{max(ops, 0) / n:.5f}", f"{max(ops, 0):.0f} commands over {n} requests in {SECONDS:.0f} s, idle rate subtracted"))
        rows.append(("cache hit ratio, node A", f"{hits / max(hits + misses, 1):.5f}", f"{hits:.0f} hits, {misses:.0f} misses"))

        c = Node(work, "c", ports[:3], origin.server_port, 0)
        nodes.append(c)
        token_c = c.token()
        before = commands(masters)
        n = load(c.base + "/api/x", token_c, SECONDS)
        ops = commands(masters) - before
        rows.append(("Redis commands per proxied request, no cache", f"{ops / n:.3f}", f"{ops} commands over {n} requests"))
        c.stop()
        nodes.remove(c)

        before, scripts = commands(masters), commands(masters, ("evalsha", "eval"))
        for _ in range(200):
            a.token()
        ops = commands(masters) - before
        scripts = commands(masters, ("evalsha", "eval")) - scripts
        rows.append(("Redis commands per token issued (client_credentials)", f"{ops / 200:.1f}", f"200 tokens on node A, commands inside scripts counted; {scripts / 200:.1f} of them scripts (the secret check's 3 counters taken and answered, the grant, its index)"))

        lags = []
        for _ in range(REVOCATIONS):
            t = a.token()
            assert request("GET", b.base + "/api/x", token=t)[0] == 200
            assert request("GET", b.base + "/api/x", token=t)[0] == 200  # cached on B now
            status, _ = request("POST", a.base + "/oauth/revoke", f"token={t}", basic=CLIENT)
            assert status == 200
            revoked_at = time.perf_counter()
            while request("GET", b.base + "/api/x", token=t)[0] == 200:
                if time.perf_counter() - revoked_at > 5:
                    sys.exit("a revoked token still works on the far node after 5 s")
                time.sleep(0.001)
            lags.append((time.perf_counter() - revoked_at) * 1000)
        lags.sort()
        p = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
        bus = bus_lag(masters[0], masters[1], 500)
        rows.append(("Redis cluster bus alone: PUBLISH on one master, SUBSCRIBE on another, p50 / p99 / max (ms)", f"{bus[250]:.2f} / {bus[495]:.2f} / {bus[-1]:.2f}", "500 messages over raw sockets, no Tollgate: the floor under the figure below"))
        rows.append(("revocation lag on the far node, p50 / p99 / max (ms)", f"{p(0.5):.2f} / {p(0.99):.2f} / {lags[-1]:.2f}", f"{len(lags)} revocations on A, B polled every 1 ms (mean {statistics.mean(lags):.2f} ms)"))
    finally:
        for node in nodes:
            node.stop()
        for proc in redis:
            proc.kill()
        origin.shutdown()
        if os.environ.get("CLUSTER_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)

    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    table = ["| figure | value | how |", "| --- | --- | --- |"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    text = (f"# Tollgate on a Redis Cluster ({time.strftime('%Y-%m-%d')}, commit {rev}, {os.cpu_count()} cores)\n\n"
            f"`python3 bench/cluster.py` (CLUSTER_SECONDS={SECONDS:.0f}, CLUSTER_REVOCATIONS={REVOCATIONS}, "
            f"load by {'wrk -t1 -c16' if shutil.which('wrk') else 'Python threads'})\n\n" + "\n".join(table) + "\n")
    print(text)
    with open(os.path.join(ROOT, "bench", "CLUSTER.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
