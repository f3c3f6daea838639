//! The node's config file plus `LCBFT_*` overrides. Comment lines `#LCBFT_<NAME>=<value>` in the
//! input become environment variables, so the fuzzer reaches the override parser too.
//! Loading never panics, and a config that loads writes back (`Config::to_toml`, what
//! `lcbft-testnet` writes) to a file that loads to the same config.
#![no_main]

use lcbft_node::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| l.starts_with("LCBFT_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // Absolute, so resolved paths stay put when the written config is loaded again.
    let path = Path::new("/lcbft/node.toml");
    let Ok(cfg) = Config::parse(text, path, env) else {
        return;
    };
    let again = Config::parse(&cfg.to_toml(), path, []).expect("a written config loads");
    assert_eq!(again, cfg);
});
