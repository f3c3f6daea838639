//! Metrics read at scrape time, so they cost nothing between scrapes: the process's CPU time
//! and memory (the names every Prometheus client library uses) and the store's file size.
//! Read through `procfs`; where `/proc` cannot be read, the process metrics are absent.

use procfs::process::Process;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// What `/proc` says about a process.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
}

/// CPU time (user + system), memory and threads of process `pid`, or of this process.
pub fn read_stats(pid: Option<i32>) -> Option<ProcessStats> {
    let p = match pid {
        Some(pid) => Process::new(pid),
        None => Process::myself(),
    }
    .ok()?;
    let stat = p.stat().ok()?;
    // VmRSS is in kB: no page-size guess.
    let rss_kb = p.status().ok()?.vmrss.unwrap_or(0);
    Some(ProcessStats {
        cpu_seconds: (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64,
        resident_bytes: rss_kb * 1024,
        virtual_bytes: stat.vsize,
        threads: u64::try_from(stat.num_threads).unwrap_or(0),
    })
}

fn open_fds() -> Option<u64> {
    Some(Process::myself().ok()?.fd_count().ok()? as u64)
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
        if let Some(s) = read_stats(None) {
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
    fn reads_this_process() {
        let s = read_stats(None).expect("/proc/self");
        assert!(s.resident_bytes > 0 && s.threads >= 1 && s.virtual_bytes >= s.resident_bytes);
        let by_pid = read_stats(Some(std::process::id() as i32)).expect("/proc/<pid>");
        assert!(by_pid.resident_bytes > 0 && by_pid.cpu_seconds >= s.cpu_seconds);
        // Pids stop far below this (pid_max is at most 2^22).
        assert_eq!(read_stats(Some(i32::MAX)), None);
    }
}
