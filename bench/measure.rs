//! Measuring processes and latencies: CPU seconds and peak RSS sampled from /proc, percentiles
//! from raw samples, and the report every workload produces.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinHandle};

/// CPU time and peak resident memory of one process, as last sampled.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessUsage {
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
}

pub fn clock_ticks_per_second() -> f64 {
    // Linux has reported USER_HZ = 100 to user space on every architecture for decades.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Reads utime+stime and VmHWM of `pid`; None once the process is gone.
pub fn read_usage(pid: u32, ticks_per_second: f64) -> Option<ProcessUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields are counted after its closing parenthesis.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Some(ProcessUsage {
        cpu_seconds: (utime + stime) / ticks_per_second,
        peak_rss_bytes: hwm_kb * 1024,
    })
}

/// CPU seconds the whole machine has been busy since boot (every state but idle and iowait),
/// from `/proc/stat`; the difference over a run says how close to all cores it came.
pub fn machine_busy_seconds(ticks_per_second: f64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = cpu
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: f64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(busy / ticks_per_second)
}

/// Samples processes every few milliseconds until stopped, keeping each one's highest reading
/// (usage only grows, so the last reading before exit is the closest to the total).
#[derive(Debug)]
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<BTreeMap<String, ProcessUsage>>,
    pids: watch::Sender<Vec<(String, u32)>>,
}

impl Sampler {
    pub fn start(interval: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let (pids, watched) = watch::channel(Vec::<(String, u32)>::new());
        let task = tokio::spawn(async move {
            let ticks = clock_ticks_per_second();
            let mut usage = BTreeMap::new();
            let mut tick = tokio::time::interval(interval);
            loop {
                for (name, pid) in watched.borrow().iter() {
                    // Maxima: a process that has exited but is not yet reaped still has its
                    // CPU times in /proc but no VmHWM any more.
                    if let Some(now) = read_usage(*pid, ticks) {
                        let seen: &mut ProcessUsage = usage.entry(name.clone()).or_default();
                        seen.cpu_seconds = seen.cpu_seconds.max(now.cpu_seconds);
                        seen.peak_rss_bytes = seen.peak_rss_bytes.max(now.peak_rss_bytes);
                    }
                }
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
            }
            usage
        });
        Self { stop, task, pids }
    }

    pub fn watch(&self, name: &str, pid: u32) {
        self.pids
            .send_modify(|pids| pids.push((name.to_owned(), pid)));
    }

    pub async fn finish(self) -> BTreeMap<String, ProcessUsage> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// Latency percentiles from raw samples.
#[derive(Debug, Clone)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    pub fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Some(Self {
            count: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: *samples.last().expect("not empty"),
        })
    }

    pub fn to_json(&self) -> Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        json!({
            "count": self.count,
            "p50_ms": ms(self.p50),
            "p90_ms": ms(self.p90),
            "p99_ms": ms(self.p99),
            "max_ms": ms(self.max),
        })
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}

/// What a workload measured, saved as `<out_dir>/<workload>.json`.
#[derive(Debug)]
pub struct Report {
    pub workload: &'static str,
    pub body: Value,
}

impl Report {
    pub fn save(&self, out_dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        let path = out_dir.join(format!("{}.json", self.workload));
        let text = serde_json::to_string_pretty(&self.body).context("report as JSON")?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
