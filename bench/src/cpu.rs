//! The calling thread's CPU time. The simulator runs every replica on one thread, so the time a
//! replica's step takes on this clock is its CPU cost, not the wall time other processes on a
//! shared machine would add.

/// Nanoseconds of CPU this thread has used.
pub fn thread_ns() -> u64 {
    let t = cpu_time::ThreadTime::now().as_duration();
    u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
}
