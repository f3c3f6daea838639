+ lcbft-bench throughput --topology default --rate 1000 --duration 30
exit 0
