+ lcbft-bench soak --duration 30m --every 10 --rate 100
