+ lcbft-bench throughput --topology global4 --sweep 200,500,1000 --duration 20 --out runs
exit 0
