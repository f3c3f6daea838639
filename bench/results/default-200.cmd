+ lcbft-bench throughput --topology default --rate 200 --duration 30
exit 0
