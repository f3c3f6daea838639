# Round 3 (group commit + proposals by id), one sitting, binaries before (e93f923) and after
# (c5f7fed) built with `cargo build --release`; each run on a fresh network:
lcbft-bench throughput --topology global4 --payload raw --rate 5000 --duration 20    # round3-{base,new}{1,2}
lcbft-bench throughput --topology global4 --payload raw --rate 10000 --duration 20   # round3-{base,new}10k
lcbft-bench throughput --topology default --rate 2000 --duration 30                  # round3-d{base,new}
