# before: 6c3b5c6 binaries; after: busy payload skips pacing. One sitting, alternating.
+ lcbft-bench throughput --topology default --rate 2000 --duration 30   # round4-{before,after}-2000.jsonl, two runs each
+ lcbft-bench throughput --topology default --rate 20 --duration 20     # round4-{before,after}-20.jsonl, two runs each
