//! Rule files and the daemon config with arbitrary values where the shipped files have theirs:
//! each edit names a line of a real file (`rules/checkout-api.toml`, the fixture `web.toml`,
//! `config/canaryd.toml`) that sets a key, and a new value for it (huge numbers and durations,
//! NaN, odd strings), so the bounds of every key are reached in a few runs instead of waiting
//! for byte mutations to write them. The same invariants as the `rules` and `config` targets.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const RULES: [&str; 2] = [
    include_str!("../../rules/checkout-api.toml"),
    include_str!("../../tests/fixtures/rules/good/web.toml"),
];
const CONFIG: &str = include_str!("../../config/canaryd.toml");

#[derive(Debug, Arbitrary)]
struct Input {
    /// 0 and 1: a rule file; 2: the config.
    file: u8,
    edits: Vec<(u16, canaryd_fuzz::inputs::TomlValue)>,
}

fuzz_target!(|input: Input| {
    let config = input.file % 3 == 2;
    let text = if config {
        CONFIG
    } else {
        RULES[usize::from(input.file % 3)]
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let keyed: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            let l = lines[i].trim_start();
            !l.starts_with('#') && !l.starts_with('[') && l.contains('=')
        })
        .collect();
    for (at, value) in input.edits.iter().take(8) {
        let line = keyed[usize::from(*at) % keyed.len()];
        let key = lines[line]
            .split('=')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        lines[line] = format!("{key} = {}", value.render());
    }
    let text = lines.join("\n");
    if config {
        let _ = canaryd_fuzz::check_config_text(&text, &Default::default());
    } else {
        let _ = canaryd_fuzz::check_rule_text(&text);
    }
});
