+ lcbft-bench crypto --n 4,7,16,31
exit 0
