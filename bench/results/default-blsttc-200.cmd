+ lcbft-bench throughput --topology default --scheme blsttc --rate 200 --duration 20
exit 1
