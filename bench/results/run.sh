#!/usr/bin/env bash
# Re-run the measurements of bench/results/README.md from the repository root, after
# `cargo build --release -p lcbft-node -p lcbft-testnet -p lcbft-bench`. Each command's JSON
# lines go to bench/results/<name>.jsonl (progress to <name>.log, not kept in git).
set -u
cd "$(dirname "$0")/../.."
B=./target/release/lcbft-bench
R=bench/results
run() { name=$1; shift; echo "+ lcbft-bench $*" | tee "$R/$name.cmd"; "$B" "$@" > "$R/$name.jsonl" 2> "$R/$name.log"; echo "exit $?" >> "$R/$name.cmd"; }
run loadgen-20000 loadgen --rate 20000 --duration 10
run default-200 throughput --topology default --rate 200 --duration 30
run default-500 throughput --topology default --rate 500 --duration 30
run default-1000 throughput --topology default --rate 1000 --duration 30
run global4-sweep throughput --topology global4 --sweep 200,500,1000 --duration 20 --out "${TMPDIR:-/tmp}/lcbft-global4-sweep-$$"
cp "${TMPDIR:-/tmp}/lcbft-global4-sweep-$$/sweep.png" "$R/global4-sweep.png" 2>/dev/null
run default-raw-200 throughput --topology default --payload raw --rate 200 --duration 20
run default-blsttc-200 throughput --topology default --scheme blsttc --rate 200 --duration 20
# Simulator figures (only `lcbft-bench` is needed): the crypto floor, the paper's cost model,
# and scale; the last two also write their .md, .csv and .png here.
run crypto crypto --n 4,7,16,31
run cost-model cost-model --out "$R"
run scale scale --out "$R"
