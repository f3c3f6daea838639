+ lcbft-bench throughput --topology default --rate 500 --duration 30
exit 0
