//! Metrics read at scrape time, so they cost nothing between scrapes: the process's CPU time
//! and memory (the names every Prometheus client library uses) and the store's file size.
//! Linux only: elsewhere the process metrics are simply absent.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// `/proc` reports CPU time in USER_HZ ticks, 100 per second on every Linux architecture
/// this runs on (x86, arm, arm64; the kernel hides its real HZ behind it).
const USER_HZ: f64 = 100.0;

/// `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_threads`, `process_open_fds`,
/// `process_start_time_seconds`.
#[derive(Debug)]
pub struct ProcessCollector {
    start_time: f64,
}

impl Default for ProcessCollector {
    fn default() -> Self {
        ProcessCollector::new()
    }
}

impl ProcessCollector {
    pub fn new() -> ProcessCollector {
        // Close enough to the process start: collectors are registered while the node starts.
        let start_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        ProcessCollector { start_time }
    }
}

/// What `/proc/self` says about this process.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
}

/// utime + stime from `/proc/self/stat`; memory and threads from `/proc/self/status` (in kB,
/// so no page-size guess is needed).
pub fn read_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse(&stat, &status)
}

fn parse(stat: &str, status: &str) -> Option<ProcessStats> {
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace();
    // After the name: state(3) ... utime(14) stime(15), i.e. indices 11 and 12 here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        resident_bytes: kb("VmRSS:").unwrap_or(0) * 1024,
        virtual_bytes: kb("VmSize:").unwrap_or(0) * 1024,
        threads: kb("Threads:").unwrap_or(0),
    })
}

fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(s) = read_stats() {
            let cpu = ConstCounter::new(s.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                cpu.metric_type(),
            )?)?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes as f64,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes as f64,
            )?;
            gauge(
                &mut encoder,
                "process_threads",
                "Number of OS threads in the process",
                s.threads as f64,
            )?;
        }
        if let Some(n) = open_fds() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                n as f64,
            )?;
        }
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            self.start_time,
        )
    }
}

/// `lcbft_storage_size_bytes`: the redb file's size, read at scrape time.
#[derive(Debug)]
pub struct StorageCollector {
    path: PathBuf,
}

impl StorageCollector {
    pub fn new(path: PathBuf) -> StorageCollector {
        StorageCollector { path }
    }
}

impl Collector for StorageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return Ok(());
        };
        gauge(
            &mut encoder,
            "storage_size_bytes",
            "Size of the node's redb file in bytes",
            meta.len() as f64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_and_status() {
        let stat = "1234 (lcbft (a) b) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 8 0 \
                    99 123456 789 18446744073709551615";
        let status = "Name:\tlcbft\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\nThreads:\t8\n";
        let s = parse(stat, status).expect("parses");
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.resident_bytes, 2048 * 1024);
        assert_eq!(s.virtual_bytes, 123456 * 1024);
        assert_eq!(s.threads, 8);
        assert!(parse("garbage", status).is_none());
    }

    #[test]
    fn reads_this_process() {
        let s = read_stats().expect("/proc/self");
        assert!(s.resident_bytes > 0 && s.threads >= 1);
    }
}
