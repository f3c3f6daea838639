+ lcbft-bench loadgen --rate 20000 --duration 10
exit 0
