//! Pacing in the simulator: a leader batches what arrives within its delay, a lone item still
//! commits within delay + intervals + a few rounds, and waiting never looks like a failed
//! leader. Times are the simulator's virtual milliseconds.

use super::{Layer, Sim, SimConfig, SimReport};

/// Message delays are 2-40 ms; a round is at most three hops (proposal, vote to the edge, QC
/// to the leader).
const ROUND_MS: u64 = 120;

fn paced(layer: Layer, delay: u64, interval: u64) -> SimConfig {
    let mut cfg = SimConfig::new(layer, 4, 0, 4);
    cfg.faults = false;
    cfg.duration_ms = 10_000;
    // Only what the test submits: the schedule's first item at time 0, then nothing.
    cfg.tx_every_ms = 100_000_000;
    cfg.propose_delay_ms = delay;
    cfg.min_block_interval_ms = interval;
    cfg
}

/// Items at 0, 50, ..., 300 ms, then quiet.
fn burst(cfg: SimConfig) -> SimReport {
    let end = cfg.duration_ms;
    let mut sim = Sim::new(cfg);
    // The schedule submits the first item when the run starts.
    for t in (50..=300).step_by(50) {
        sim.run_until(t);
        sim.submit();
    }
    sim.run_until(end);
    sim.finish()
}

#[test]
fn a_burst_within_the_delay_lands_in_one_block() {
    for layer in [Layer::Global, Layer::Local] {
        let r = burst(paced(layer, 400, 100));
        assert!(r.safety_violations.is_empty(), "{:?}", r.safety_violations);
        assert_eq!(r.latency_ms.len(), 7, "{layer:?}: not all committed: {r:?}");
        assert_eq!(r.payload_commits, 1, "{layer:?}: {r:?}");
        // The first item waited the delay; the last rode along.
        let (first_item, _) = r.latency_ms[0];
        assert!(
            first_item >= 400,
            "{layer:?}: committed after {first_item} ms"
        );

        // The same burst unpaced spreads over several blocks: the test can tell.
        let unpaced = burst(paced(layer, 0, 0));
        assert_eq!(unpaced.latency_ms.len(), 7, "{layer:?}");
        assert!(unpaced.payload_commits > 1, "{layer:?}: {unpaced:?}");
    }
}

#[test]
fn a_lone_item_commits_within_the_pacing_bound_without_a_view_change() {
    // Delay and interval above the simulator's 300 ms base timeout: only timeouts that make
    // room for pacing keep the leader.
    let (delay, interval) = (400, 1_000);
    for layer in [Layer::Global, Layer::Local] {
        for seed in 0..4 {
            let mut cfg = paced(layer, delay, interval);
            cfg.seed = seed;
            cfg.trace = std::env::var("PACING_TRACE").is_ok();
            let r = Sim::new(cfg).run();
            assert!(r.safety_violations.is_empty(), "{:?}", r.safety_violations);
            assert_eq!(r.view_changes, 0, "{layer:?} seed {seed}: {r:?}");
            let [(first, last)] = r.latency_ms[..] else {
                panic!("{layer:?} seed {seed}: the item did not commit: {r:?}");
            };
            assert!(first >= delay, "{layer:?}: committed after {first} ms");
            // Local: the item's block, one to certify it, one to announce the commit; global
            // needs one more for its three-chain.
            let bound = delay + 3 * interval + 4 * ROUND_MS;
            assert!(
                last <= bound,
                "{layer:?} seed {seed}: {last} ms > {bound} ms"
            );
        }
    }
}

/// Under load the waits add only latency: payload past `busy_bytes` goes out at once, so a
/// stream of items commits in more blocks than the interval allows and each item sooner than
/// the delay; the same stream below the threshold is held to the interval.
#[test]
fn busy_payload_is_proposed_without_the_delay_or_the_interval() {
    let (delay, interval) = (400, 1_000);
    let stream = |busy_bytes: usize, layer: Layer| {
        let mut cfg = paced(layer, delay, interval);
        cfg.duration_ms = 6_000;
        cfg.tx_every_ms = 20;
        // Items are ~10 bytes: two make a busy block.
        cfg.busy_bytes = Some(busy_bytes);
        let r = Sim::new(cfg).run();
        assert!(r.safety_violations.is_empty(), "{:?}", r.safety_violations);
        assert_eq!(r.view_changes, 0, "{layer:?}: {r:?}");
        r
    };
    for layer in [Layer::Global, Layer::Local] {
        let busy = stream(16, layer);
        let idle = stream(1 << 20, layer);
        // 6 s at one block per second at most, when paced.
        assert!(
            idle.payload_commits <= 7,
            "{layer:?}: paced stream made {} blocks",
            idle.payload_commits
        );
        assert!(
            busy.payload_commits >= 2 * idle.payload_commits,
            "{layer:?}: busy {} blocks, paced {}",
            busy.payload_commits,
            idle.payload_commits
        );
        let p50 = |r: &SimReport| {
            let mut l: Vec<u64> = r.latency_ms.iter().map(|l| l.1).collect();
            l.sort_unstable();
            l[l.len() / 2]
        };
        assert!(p50(&busy) < delay, "{layer:?}: busy p50 {} ms", p50(&busy));
        assert!(p50(&idle) > p50(&busy), "{layer:?}");
    }
}
