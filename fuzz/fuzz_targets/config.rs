//! The daemon config: `canaryd.toml` text, then (after a NUL byte, if any) `KEY=VALUE` lines of
//! `CANARYD__*` environment overrides, through the loader `serve` and `check` use. Every
//! refusal says where or why; every accepted config is one the daemon can start with.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(all) = std::str::from_utf8(data) else {
        return;
    };
    let (text, overrides) = all.split_once('\0').unwrap_or((all, ""));
    let env: HashMap<String, String> = overrides
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (format!("CANARYD__{}", k.trim()), v.to_string()))
        .collect();
    let _ = canaryd_fuzz::check_config_text(text, &env);
});
