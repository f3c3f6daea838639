+ lcbft-bench energy --rates 0,1,5,20,100 --pacing 0:0,100:250,200:500,500:1000 --duration 20 --settle 5 --results bench/results
exit 0
