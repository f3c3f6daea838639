+ lcbft-bench cost-model --out bench/results
exit 0
