# before: cec06fc binaries; after: members check an anchor notice only when they can act on it.
# Release builds, one sitting, alternating, otherwise idle 2-core machine (4 December 2026).
+ lcbft-bench energy --rates 0,20 --pacing 200:500 --duration 30          # round5-energy-{before,after}.jsonl, two runs each
+ lcbft-bench throughput --topology default --rate 2000 --duration 20     # round5-throughput-{before,after}.jsonl, two runs each
+ lcbft-bench loadgen --rate 20000                                         # before 19,918/s, after 19,933/s accepted (ureq client)
