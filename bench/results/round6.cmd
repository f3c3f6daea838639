# before: 42e4c80 binaries (threshold_crypto's own arithmetic); after: 8a3e06a (the same
# signatures computed with blst, protocol/src/crypto/tc_curve.rs).
# Release builds, one sitting, otherwise idle 2-core machine (4 December 2026).
+ lcbft-bench crypto --n 4,7,16,31                                         # round6-crypto-before.jsonl; after: crypto.jsonl
+ lcbft-bench energy --rates 0,20 --pacing 200:500 --duration 30          # round6-energy-{before,after}.jsonl, alternating, two runs each
+ lcbft-bench throughput --topology default --rate 2000 --duration 20     # round6-throughput-{before,after}.jsonl, first line
+ lcbft-bench throughput --topology default --rate 4000 --duration 20     # round6-throughput-{before,after}.jsonl, second line
+ lcbft-bench energy --duration 20 --results bench/results                # energy.{csv,md,png,jsonl} (after), see energy.cmd
