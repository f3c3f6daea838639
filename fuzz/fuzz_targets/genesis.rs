//! `genesis.toml` as `lcbft run` and `lcbft verify-proof` load it: parsing never panics, a
//! genesis that loads yields its key ring, and writing it back gives a file that loads to the
//! same genesis.
#![no_main]

use lcbft_node::genesis;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("genesis.toml");
    let Ok(g) = genesis::parse(text, path) else {
        return;
    };
    g.key_ring().expect("a loaded genesis has valid key sets");
    let again = genesis::parse(&genesis::to_toml(&g), path).expect("a written genesis loads");
    assert_eq!(again, g);
});
