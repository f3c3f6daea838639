# before: e5462bb binaries; after: e306b7a (payload root kept, admission cache first,
# parents read without re-encoding, gossip every 30 ms, local pacing threshold 16 KiB).
# Release builds, one sitting, alternating before/after, otherwise idle 2-core machine
# (4 December 2026).
+ lcbft-bench throughput --topology default --rate 2000 --duration 20   # round7-{before,after}-2000.jsonl, two runs each
+ lcbft-bench throughput --topology default --rate 6000 --duration 20   # round7-{before,after}-6000.jsonl, two runs each
+ lcbft-bench throughput --topology default --rate 20 --duration 20     # round7-{before,after}-20.jsonl, one run each
