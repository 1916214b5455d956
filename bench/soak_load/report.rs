//! The soak's figures: one row per sampling interval, the summary, and the verdict (zero
//! errors, resident memory flat), as Markdown for `bench/SOAK.md`.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::hist::Counts;

/// One sampling interval.
pub struct Sample {
    /// Seconds since the timetable's start, at the end of the interval.
    pub t: f64,
    /// Length of the interval (s).
    pub secs: f64,
    /// Bearer-route requests answered (or failed) in the interval.
    pub sent: u64,
    /// Every failure in the interval: bearer, issuance and revocation.
    pub errors: u64,
    pub lat: Counts,
    pub issued: u64,
    pub revoked: u64,
    /// Slowest revocation in the interval: revoke answered → first 401 (µs).
    pub lag_max_us: u64,
    /// The generator's own delay at worst (µs): how late it sent a request whose due time
    /// had come and whose connection was free. Near the latency: the load core, not the
    /// gateway, was short of CPU.
    pub generator_lag_max_us: u64,
    /// Requests due by the end of the interval and not yet sent: more than a second's worth
    /// means the offered rate was not held, and latency measures a queue.
    pub backlog: u64,
    /// `VmRSS` (kB) and open file descriptors of the gateway, `None` if unreadable.
    pub rss_kb: Option<u64>,
    pub fds: Option<u64>,
    /// CPU time of the gateway and of the generator over the interval, % of one core.
    pub gateway_cpu: Option<f64>,
    pub generator_cpu: Option<f64>,
    /// Idle share of each core over the interval (%), `cpu0` first.
    pub core_idle: Vec<f64>,
}

/// The whole run.
pub struct Run {
    pub rate: f64,
    pub seconds: f64,
    pub connections: usize,
    pub issue_rate: f64,
    pub revoke_rate: f64,
    /// Sample time (s) whose RSS is the baseline for the growth check.
    pub baseline: f64,
    pub rss_limit_pct: f64,
    pub samples: Vec<Sample>,
    pub issue_lat: Counts,
    pub lag: Counts,
    pub errors: BTreeMap<String, u64>,
    pub connections_opened: u64,
    /// Idle share of each core over the run (%), `cpu0` first.
    pub core_idle: Vec<f64>,
}

fn ms(us: Option<u64>) -> String {
    match us {
        Some(us) => format!("{:.2} ms", us as f64 / 1000.0),
        None => "—".into(),
    }
}

fn mb(kb: Option<u64>) -> String {
    match kb {
        Some(kb) => format!("{:.1} MB", kb as f64 * 1024.0 / 1e6),
        None => "—".into(),
    }
}

fn pct(p: Option<f64>) -> String {
    p.map_or("—".into(), |p| format!("{p:.0} %"))
}

fn idle(cores: &[f64]) -> String {
    if cores.is_empty() {
        return "—".into();
    }
    let v: Vec<String> = cores.iter().map(|p| format!("{p:.0}")).collect();
    format!("{} %", v.join(" / "))
}

fn opt(n: Option<u64>) -> String {
    n.map_or("—".into(), |n| n.to_string())
}

impl Run {
    pub fn total_errors(&self) -> u64 {
        self.samples.iter().map(|s| s.errors).sum()
    }

    fn baseline_sample(&self) -> Option<&Sample> {
        self.samples
            .iter()
            .find(|s| s.t + 0.5 >= self.baseline && s.rss_kb.is_some())
    }

    /// RSS growth from the baseline sample to the last one (%), when both were read.
    pub fn rss_growth(&self) -> Option<f64> {
        let base = self.baseline_sample()?.rss_kb? as f64;
        let last = self.samples.last()?.rss_kb? as f64;
        (base > 0.0).then(|| (last - base) / base * 100.0)
    }

    /// Zero errors, and RSS growth under the limit (unchecked when the limit is negative,
    /// as in the smoke run, where the "gateway" is this process).
    pub fn passed(&self) -> bool {
        let rss_ok =
            self.rss_limit_pct < 0.0 || self.rss_growth().is_some_and(|g| g < self.rss_limit_pct);
        self.total_errors() == 0 && rss_ok
    }

    /// Most requests behind the timetable at any sample, in seconds of load.
    pub fn worst_backlog_secs(&self) -> f64 {
        let worst = self.samples.iter().map(|s| s.backlog).max().unwrap_or(0);
        worst as f64 / self.rate.max(1e-9)
    }

    /// The offered rate held: never a second's worth of requests behind.
    pub fn held(&self) -> bool {
        self.worst_backlog_secs() <= 1.0
    }

    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let _ = self.write(&mut o);
        o
    }

    fn write(&self, o: &mut String) -> std::fmt::Result {
        writeln!(
            o,
            "| t | requests | req/s | errors | p50 | p99 | max | behind | generator lag | issued / revoked | slowest 401 | RSS | fds | CPU gateway / generator | idle per core |"
        )?;
        writeln!(
            o,
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        )?;
        let mut total = Counts::empty();
        for s in &self.samples {
            total.merge(&s.lat);
            let errors = if s.errors == 0 {
                "0".to_string()
            } else {
                format!("**{}**", s.errors)
            };
            writeln!(
                o,
                "| {:.0} s | {} | {:.0} | {} | {} | {} | {} | {:.2} s | {} | {} / {} | {} | {} | {} | {} / {} | {} |",
                s.t,
                s.sent,
                s.sent as f64 / s.secs.max(1e-9),
                errors,
                ms(s.lat.percentile(50.0)),
                ms(s.lat.percentile(99.0)),
                ms((s.lat.count() > 0).then(|| s.lat.max())),
                s.backlog as f64 / self.rate.max(1e-9),
                ms(Some(s.generator_lag_max_us)),
                s.issued,
                s.revoked,
                ms((s.revoked > 0).then_some(s.lag_max_us)),
                mb(s.rss_kb),
                opt(s.fds),
                pct(s.gateway_cpu),
                pct(s.generator_cpu),
                idle(&s.core_idle),
            )?;
        }
        writeln!(o)?;
        self.summary(o, &total)
    }

    fn summary(&self, o: &mut String, total: &Counts) -> std::fmt::Result {
        let sent: u64 = self.samples.iter().map(|s| s.sent).sum();
        let errors = self.total_errors();
        writeln!(o, "## Summary")?;
        writeln!(o)?;
        let lag = self.samples.iter().map(|s| s.generator_lag_max_us).max();
        writeln!(
            o,
            "- **Load**: {sent} requests through the bearer route on a fixed timetable of {:.0} req/s \
             over {} keep-alive connections for {:.0} s ({:.0} req/s achieved); latency is \
             measured from each request's scheduled time, so a stall counts on every request it \
             delayed. {} connection(s) opened in all ({}). The generator's own delay (a request \
             sent late although due and its connection free: the load core short of CPU) was at \
             most {}. Idle over the run: {}.",
            self.rate,
            self.connections,
            self.seconds,
            sent as f64 / self.seconds.max(1e-9),
            self.connections_opened,
            if self.connections_opened as usize <= self.connections + 2 {
                "no reconnects"
            } else {
                "reconnects after errors"
            },
            ms(lag),
            (self.core_idle.iter().enumerate())
                .map(|(i, p)| format!("core {i} {p:.0} %"))
                .collect::<Vec<_>>()
                .join(", "),
        )?;
        writeln!(
            o,
            "- **Errors**: {} (target: 0){}",
            if errors == 0 {
                "0".to_string()
            } else {
                format!("**{errors}**")
            },
            if errors == 0 {
                " — PASS"
            } else {
                " — **FAIL**"
            }
        )?;
        for (kind, n) in &self.errors {
            writeln!(o, "  - {n} × {kind}")?;
        }
        match (
            self.baseline_sample(),
            self.samples.last(),
            self.rss_growth(),
        ) {
            (Some(b), Some(l), Some(g)) => writeln!(
                o,
                "- **RSS**: {} ({} kB) at {:.0} s → {} ({} kB) at {:.0} s: {g:+.1} % {}",
                mb(b.rss_kb),
                opt(b.rss_kb),
                b.t,
                mb(l.rss_kb),
                opt(l.rss_kb),
                l.t,
                if self.rss_limit_pct < 0.0 {
                    "(not judged)".to_string()
                } else if g < self.rss_limit_pct {
                    format!("(target < {:.0} %) — PASS", self.rss_limit_pct)
                } else {
                    format!("(target < {:.0} %) — **FAIL**", self.rss_limit_pct)
                },
            )?,
            _ => writeln!(o, "- **RSS**: not read (no /proc entry) — **FAIL**")?,
        }
        let fds: Vec<u64> = self.samples.iter().filter_map(|s| s.fds).collect();
        if let (Some(first), Some(last)) = (fds.first(), fds.last()) {
            writeln!(
                o,
                "- **Open fds**: {first} at the first sample, {last} at the last (lowest {}, highest {})",
                fds.iter().min().unwrap_or(first),
                fds.iter().max().unwrap_or(last),
            )?;
        }
        let p99s: Vec<(f64, u64)> = self
            .samples
            .iter()
            .filter_map(|s| Some((s.t, s.lat.percentile(99.0)?)))
            .collect();
        if let (Some(first), Some(last)) = (p99s.first(), p99s.last()) {
            let worst = p99s.iter().max_by_key(|(_, p)| *p).unwrap_or(first);
            writeln!(
                o,
                "- **p99 over time**: {} in the first interval, {} in the last, highest {} (at {:.0} s). \
                 Whole run: p50 {}, p99 {}, p99.9 {}, max {}.",
                ms(Some(first.1)),
                ms(Some(last.1)),
                ms(Some(worst.1)),
                worst.0,
                ms(total.percentile(50.0)),
                ms(total.percentile(99.0)),
                ms(total.percentile(99.9)),
                ms(Some(total.max())),
            )?;
        }
        let issued: u64 = self.samples.iter().map(|s| s.issued).sum();
        writeln!(
            o,
            "- **Token issuance** (`client_credentials`, HTTP Basic, {:.1}/s plus one per revocation): \
             {issued} tokens, each then accepted on the bearer route; issuance p50 {}, p99 {}, max {}.",
            self.issue_rate,
            ms(self.issue_lat.percentile(50.0)),
            ms(self.issue_lat.percentile(99.0)),
            ms((self.issue_lat.count() > 0).then(|| self.issue_lat.max())),
        )?;
        let revoked: u64 = self.samples.iter().map(|s| s.revoked).sum();
        writeln!(
            o,
            "- **Revocation** (RFC 7009 `/revoke` of a fresh token, {:.1}/s, then the bearer route polled \
             until 401, deadline 1 s): {revoked} revoked and refused; revoke answered → first 401: \
             p50 {}, p99 {}, slowest {}.",
            self.revoke_rate,
            ms(self.lag.percentile(50.0)),
            ms(self.lag.percentile(99.0)),
            ms((self.lag.count() > 0).then(|| self.lag.max())),
        )?;
        if !self.held() {
            writeln!(
                o,
                "- **The offered rate was not held**: up to {:.1} s of requests were waiting to be \
                 sent (\"behind\"), so the latency above is mostly that queue's. Tollgate (or the \
                 origin, or the load core: see the CPU and idle columns) did less than {:.0} req/s \
                 for a while; on a shared machine, rerun when it is quiet or with a lower `SOAK_LOAD`.",
                self.worst_backlog_secs(),
                self.rate,
            )?;
        }
        writeln!(o)?;
        writeln!(
            o,
            "**Result: {}**{}",
            if self.passed() { "PASS" } else { "FAIL" },
            if self.held() {
                ""
            } else {
                " (errors and RSS; the offered rate was not held)"
            }
        )
    }
}

/// The verdict's arithmetic, checked by the smoke run: RSS growth of exactly the limit
/// fails, just under passes, and one error fails whatever the memory did.
pub fn self_check() {
    let sample = |t: f64, rss_kb: u64, errors: u64| Sample {
        t,
        secs: 10.0,
        sent: 1,
        errors,
        lat: Counts::empty(),
        issued: 0,
        revoked: 0,
        lag_max_us: 0,
        generator_lag_max_us: 0,
        backlog: 0,
        rss_kb: Some(rss_kb),
        fds: Some(10),
        gateway_cpu: None,
        generator_cpu: None,
        core_idle: Vec::new(),
    };
    let run = |samples| Run {
        rate: 1.0,
        seconds: 600.0,
        connections: 1,
        issue_rate: 0.0,
        revoke_rate: 0.0,
        baseline: 60.0,
        rss_limit_pct: 10.0,
        samples,
        issue_lat: Counts::empty(),
        lag: Counts::empty(),
        errors: BTreeMap::new(),
        connections_opened: 1,
        core_idle: Vec::new(),
    };
    // The 10 s sample (warm-up) is not the baseline; the 60 s one is.
    let grown = run(vec![
        sample(10.0, 500, 0),
        sample(60.0, 1000, 0),
        sample(600.0, 1100, 0),
    ]);
    assert_eq!(grown.rss_growth().map(|g| g.round()), Some(10.0));
    assert!(!grown.passed(), "10 % growth must fail");
    let flat = run(vec![
        sample(10.0, 500, 0),
        sample(60.0, 1000, 0),
        sample(600.0, 1099, 0),
    ]);
    assert!(flat.passed(), "9.9 % growth passes");
    let failed = run(vec![sample(60.0, 1000, 0), sample(600.0, 1000, 1)]);
    assert!(!failed.passed(), "one error fails");
    assert!(failed.markdown().contains("**Result: FAIL**"));
}
