+ lcbft-bench soak --duration 35m --every 10 --rate 100
