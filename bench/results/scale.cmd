+ lcbft-bench scale --out bench/results
exit 0
