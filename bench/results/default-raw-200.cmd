+ lcbft-bench throughput --topology default --payload raw --rate 200 --duration 20
exit 0
