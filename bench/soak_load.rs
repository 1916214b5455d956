//! The soak's load generator (`bench/soak` runs it; bench/README.md "Soak"): a fixed request
//! rate through the bearer route, open loop, mixed with token issuance and revocation at a
//! low steady rate, sampled every interval.
//!
//! ```sh
//! cargo bench --profile release --bench soak_load -- --url http://127.0.0.1:8080 \
//!     --path /api/x --client soak --secret S --rate 20000 --seconds 600 --pid PID
//! ```
//!
//! Why not wrk: wrk is closed loop (a connection sends its next request only once the last
//! one is answered), so when the gateway slows down the load drops with it and the latency of
//! the requests that were never sent goes unrecorded ("coordinated omission"). Here request
//! `i` is due at `start + i / rate`, whatever happened before; request `i` goes on connection
//! `i mod N` (wrk2's scheme), and its latency is counted from its due time, so a stall shows as
//! latency on every request it delayed (the requests due but not yet sent at each sample are
//! reported as the backlog). Tokio's timer ticks in milliseconds, so a connection
//! wakes up to 1 ms before a request is due and sends it then (its latency is then counted
//! from the send). The generator's own delay (a request sent late although it was due and
//! its connection free) is reported apart, so a starved load core is not taken for a slow
//! gateway.
//!
//! The load connections speak HTTP/1.1 from prepared bytes (`soak_load/raw.rs`, for CPU:
//! see there); everything else goes through hyper's client.
//!
//! Beside the load, one task issues tokens (`client_credentials`, HTTP Basic) at
//! `--issue-rate` and checks each on the bearer route (200); another, at `--revoke-rate`,
//! issues a token, checks it (200), revokes it (`POST {oauth}/revoke`, RFC 7009) and polls the
//! bearer route until it answers 401, which must happen within a second (SPEC §7). Every
//! `--interval` seconds it reads from `/proc` the `VmRSS`, open descriptors and CPU time of
//! `--pid` (the gateway), its own CPU time and each core's idle time.
//!
//! Prints a line per interval on stderr, writes the Markdown table and summary to
//! `--markdown FILE` (or stdout), and exits 0 on PASS (no errors, RSS growth from the
//! baseline sample to the last under `--rss-limit` %), 1 on FAIL, 2 when it could not start.
//!
//! Run without `--bench` (as `cargo test --all-targets` does), it soaks a stand-in server in
//! this process for 2 s (`soak_load/fake.rs`) as a smoke test.

#[path = "soak_load/client.rs"]
mod client;
#[path = "soak_load/fake.rs"]
mod fake;
#[path = "soak_load/hist.rs"]
mod hist;
#[path = "soak_load/procfs.rs"]
mod procfs;
#[path = "soak_load/raw.rs"]
mod raw;
#[path = "soak_load/report.rs"]
mod report;
#[path = "soak_load/tasks.rs"]
mod tasks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;

use client::{Conn, Target};
use report::{Run, Sample};
use tasks::{Plan, Shared};

const USAGE: &str = "usage: soak_load --url http://HOST:PORT --client ID --secret S --rate REQ_PER_S \
[--path /api/x] [--oauth /oauth] [--seconds 600] [--connections 64] [--interval 10] \
[--issue-rate 2] [--revoke-rate 1] [--tokens 8] [--pid PID] [--baseline SECS] \
[--rss-limit 10] [--timeout 5] [--markdown FILE]";

struct Cfg {
    rate: f64,
    seconds: f64,
    connections: usize,
    interval: f64,
    issue_rate: f64,
    revoke_rate: f64,
    tokens: usize,
    pid: u32,
    baseline: f64,
    rss_limit_pct: f64,
}

/// `--key value` pairs, taken out one by one so that a misspelt option is reported.
struct Opts(BTreeMap<String, String>);

impl Opts {
    fn str(&mut self, k: &str, default: Option<&str>) -> Result<String, String> {
        self.0
            .remove(k)
            .or(default.map(str::to_string))
            .ok_or_else(|| format!("--{k} is required"))
    }

    fn num(&mut self, k: &str, default: Option<&str>) -> Result<f64, String> {
        let v = self.str(k, default)?;
        v.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("--{k}: not a number ≥ 0: {v}"))
    }
}

fn parse(args: &[String]) -> Result<(Cfg, Target, Option<String>), String> {
    let mut kv = BTreeMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let key = k
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {k}"))?;
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        kv.insert(key.to_string(), v.clone());
    }
    let mut o = Opts(kv);
    let url = o.str("url", None)?;
    let hostport = url
        .strip_prefix("http://")
        .unwrap_or(&url)
        .trim_end_matches('/');
    let addr: SocketAddr = hostport
        .parse()
        .map_err(|e| format!("--url: want http://IP:PORT ({e})"))?;
    let client_id = o.str("client", None)?;
    let secret = o.str("secret", None)?;
    let target = Target {
        addr,
        host: HeaderValue::try_from(hostport).map_err(|e| format!("--url: {e}"))?,
        path: o.str("path", Some("/api/x"))?,
        oauth: o
            .str("oauth", Some("/oauth"))?
            .trim_end_matches('/')
            .to_string(),
        basic: Target::basic(&client_id, &secret),
        timeout: Duration::from_secs_f64(o.num("timeout", Some("5"))?.max(0.001)),
    };
    let seconds = o.num("seconds", Some("600"))?;
    let interval = o.num("interval", Some("10"))?.max(0.1);
    // RSS growth is judged from 1 min in; a short run judges from its first sample.
    let baseline = if seconds >= 120.0 { "60" } else { "0" };
    let own_pid = std::process::id().to_string();
    let cfg = Cfg {
        rate: o.num("rate", None)?.max(1.0),
        seconds,
        connections: (o.num("connections", Some("64"))? as usize).max(1),
        interval,
        issue_rate: o.num("issue-rate", Some("2"))?,
        revoke_rate: o.num("revoke-rate", Some("1"))?,
        tokens: (o.num("tokens", Some("8"))? as usize).max(1),
        pid: o.num("pid", Some(&own_pid))? as u32,
        baseline: o.num("baseline", Some(baseline))?,
        // May be negative: then RSS growth is reported, not judged (the smoke run).
        rss_limit_pct: o
            .str("rss-limit", Some("10"))?
            .parse()
            .map_err(|e| format!("--rss-limit: {e}"))?,
    };
    let markdown = o.0.remove("markdown");
    if let Some(k) = o.0.keys().next() {
        return Err(format!("unknown option --{k}"));
    }
    Ok((cfg, target, markdown))
}

/// The interval's figures; `at` is (time since start, interval length, backlog).
fn sample(cfg: &Cfg, sh: &Shared, at: (f64, f64, u64), cpu: &mut CpuClock) -> Sample {
    let (t, secs, backlog) = at;
    let (rss_kb, fds) = (procfs::rss_kb(cfg.pid), procfs::fds(cfg.pid));
    if rss_kb.is_none() {
        sh.error(
            "gateway process",
            format!("/proc/{} unreadable (gone?)", cfg.pid),
        );
    }
    let (gateway_cpu, generator_cpu) = cpu.tick(cfg.pid);
    let c = &sh.c;
    let s = Sample {
        t,
        secs,
        sent: c.sent.swap(0, Relaxed),
        errors: c.errors.swap(0, Relaxed),
        lat: sh.lat.take(),
        issued: c.issued.swap(0, Relaxed),
        revoked: c.revoked.swap(0, Relaxed),
        lag_max_us: c.lag_max_us.swap(0, Relaxed),
        generator_lag_max_us: c.generator_lag_max_us.swap(0, Relaxed),
        backlog,
        core_idle: cpu.idle(),
        rss_kb,
        fds,
        gateway_cpu,
        generator_cpu,
    };
    eprintln!(
        "[soak] {:>5.0} s: {} requests, {} errors, p50 {:.2} ms, p99 {:.2} ms; {} issued, {} revoked; \
         RSS {} kB, {} fds; CPU gateway {:.0} %, generator {:.0} %, generator lag ≤ {:.1} ms; \
         {} requests behind the timetable",
        t,
        s.sent,
        s.errors,
        s.lat.percentile(50.0).unwrap_or(0) as f64 / 1000.0,
        s.lat.percentile(99.0).unwrap_or(0) as f64 / 1000.0,
        s.issued,
        s.revoked,
        s.rss_kb.unwrap_or(0),
        s.fds.unwrap_or(0),
        s.gateway_cpu.unwrap_or(0.0),
        s.generator_cpu.unwrap_or(0.0),
        s.generator_lag_max_us as f64 / 1000.0,
        s.backlog,
    );
    s
}

/// CPU time of the gateway and of this process since the last tick, as a share of a core,
/// and the cores' idle time.
struct CpuClock {
    at: Instant,
    gateway: Option<f64>,
    generator: Option<f64>,
    cores: Vec<(u64, u64)>,
}

impl CpuClock {
    fn new(pid: u32) -> CpuClock {
        CpuClock {
            at: Instant::now(),
            gateway: procfs::cpu_seconds(pid),
            generator: procfs::cpu_seconds(std::process::id()),
            cores: procfs::cores(),
        }
    }

    /// Idle share of each core since the last call.
    fn idle(&mut self) -> Vec<f64> {
        let now = procfs::cores();
        let idle = procfs::idle_pct(&self.cores, &now);
        self.cores = now;
        idle
    }

    fn tick(&mut self, pid: u32) -> (Option<f64>, Option<f64>) {
        let secs = self.at.elapsed().as_secs_f64().max(1e-9);
        let now = (
            procfs::cpu_seconds(pid),
            procfs::cpu_seconds(std::process::id()),
        );
        let pct = |a: Option<f64>, b: Option<f64>| Some(100.0 * (b? - a?) / secs);
        let out = (pct(self.gateway, now.0), pct(self.generator, now.1));
        (self.at, self.gateway, self.generator) = (Instant::now(), now.0, now.1);
        out
    }
}

async fn soak(cfg: Cfg, target: Target) -> Result<Run, String> {
    let target = Arc::new(target);
    let sh = Arc::new(Shared::default());
    // The tokens the load rotates over, issued and checked before the clock starts.
    let mut setup = Conn::default();
    let mut requests = Vec::new();
    let host = target.host.to_str().unwrap_or_default().to_string();
    for _ in 0..cfg.tokens {
        let token = tasks::issue_checked(&mut setup, &target, &sh).await;
        let token = token.map_err(|e| format!("setup: {e}"))?;
        let token = token.to_str().unwrap_or_default();
        let token = token.trim_start_matches("Bearer ");
        requests.push(raw::bearer_request(&target.path, &host, token));
    }
    drop(setup);
    let requests = Arc::new(requests);
    let _ = sh.issue_lat.take();
    sh.c.issued.store(0, Relaxed);

    let plan = Arc::new(Plan {
        start: Instant::now() + Duration::from_millis(100),
        seconds: cfg.seconds,
        rate: cfg.rate,
        connections: cfg.connections,
    });
    let mut loads = Vec::new();
    for k in 0..cfg.connections {
        let task = tasks::load(
            k,
            plan.clone(),
            target.clone(),
            requests.clone(),
            sh.clone(),
        );
        loads.push(tokio::spawn(task));
    }
    let mut sides = Vec::new();
    for (revoking, rate) in [(false, cfg.issue_rate), (true, cfg.revoke_rate)] {
        let task = tasks::side(revoking, rate, plan.clone(), target.clone(), sh.clone());
        sides.push(tokio::spawn(task));
    }

    tokio::time::sleep_until(plan.start.into()).await;
    let mut cpu = CpuClock::new(cfg.pid);
    let cores = procfs::cores();
    let intervals = (cfg.seconds / cfg.interval).ceil().max(1.0) as u64;
    let mut samples = Vec::new();
    let (mut load_conns, mut side_conns) = (Vec::new(), Vec::new());
    let mut last = 0.0;
    for k in 1..=intervals {
        let t = (k as f64 * cfg.interval).min(cfg.seconds);
        tokio::time::sleep_until((plan.start + Duration::from_secs_f64(t)).into()).await;
        // Requests due by now that have not been sent: the gateway is not keeping up.
        let due = ((t * cfg.rate).ceil() as u64).min((cfg.seconds * cfg.rate).ceil() as u64);
        let backlog = due.saturating_sub(sh.started.load(Relaxed));
        if k == intervals {
            // The last interval ends when every request due before the end has been
            // answered; the connections stay open until it is sampled.
            let failed = |e: tokio::task::JoinError| format!("a load task failed: {e}");
            for task in loads.drain(..) {
                load_conns.push(task.await.map_err(failed)?);
            }
            for task in sides.drain(..) {
                side_conns.push(task.await.map_err(failed)?);
            }
        }
        samples.push(sample(&cfg, &sh, (t, t - last, backlog), &mut cpu));
        last = t;
    }
    let core_idle = procfs::idle_pct(&cores, &procfs::cores());
    drop((load_conns, side_conns));
    Ok(Run {
        rate: cfg.rate,
        seconds: cfg.seconds,
        connections: cfg.connections,
        issue_rate: cfg.issue_rate,
        revoke_rate: cfg.revoke_rate,
        baseline: cfg.baseline,
        rss_limit_pct: cfg.rss_limit_pct,
        samples,
        issue_lat: sh.issue_lat.take(),
        lag: sh.lag.take(),
        errors: std::mem::take(&mut *sh.kinds.lock().unwrap_or_else(|p| p.into_inner())),
        connections_opened: sh.opened.load(Relaxed),
        core_idle,
    })
}

/// `cargo test --all-targets`: 2 s against the stand-in, which must end with no errors.
async fn smoke() -> Result<Run, String> {
    hist::self_check();
    raw::self_check();
    report::self_check();
    let addr = fake::start()
        .await
        .map_err(|e| format!("stand-in server: {e}"))?;
    let args: Vec<String> = [
        "--url",
        &format!("http://{addr}"),
        "--client",
        "smoke",
        "--secret",
        "s",
        "--rate",
        "500",
        "--seconds",
        "2",
        "--interval",
        "1",
        "--connections",
        "4",
        "--issue-rate",
        "5",
        "--revoke-rate",
        "5",
        "--rss-limit",
        "-1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (cfg, target, _) = parse(&args)?;
    let run = soak(cfg, target).await?;
    let sent: u64 = run.samples.iter().map(|s| s.sent).sum();
    let revoked: u64 = run.samples.iter().map(|s| s.revoked).sum();
    if run.samples.len() != 2 || sent != 1000 || revoked < 5 || !run.passed() {
        return Err(format!(
            "smoke run: {} samples, {sent} requests (want 2, 1000), {revoked} revoked, passed {}\n{}",
            run.samples.len(),
            run.passed(),
            run.markdown()
        ));
    }
    Ok(run)
}

fn main() -> ExitCode {
    let benching = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak_load: runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if !benching && args.is_empty() {
        return match runtime.block_on(smoke()) {
            Ok(run) => {
                println!("soak_load smoke run: PASS\n\n{}", run.markdown());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("soak_load: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let (cfg, target, markdown) = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("soak_load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let run = match runtime.block_on(soak(cfg, target)) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("soak_load: {e}");
            return ExitCode::from(2);
        }
    };
    let md = run.markdown();
    match markdown {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, &md) {
                eprintln!("soak_load: writing {path}: {e}");
                return ExitCode::from(2);
            }
        }
        None => print!("{md}"),
    }
    if run.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
