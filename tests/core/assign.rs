//! Sticky assignment as a traffic router sees it: shares match weights, raising the weight only
//! ever moves keys from baseline to canary, and buckets never change between releases.

use canaryd::assign::{Variant, assign, bucket};
use canaryd::rollout::Targeting;
use proptest::prelude::*;

fn targeting(salt: &str) -> Targeting {
    Targeting {
        allow: Vec::new(),
        deny: Vec::new(),
        salt: salt.to_string(),
    }
}

/// COMPATIBILITY PROMISE: these buckets must never change. A different value means users would
/// switch between baseline and canary in the middle of a rollout after an upgrade of canaryd.
/// Computed as fnv1a64(salt ++ ":" ++ key) % 10000 and checked against an independent
/// implementation. Add rows freely; never edit or remove one.
const PINNED: &[(&str, &str, u16)] = &[
    ("", "", 8189),
    ("", "user-1", 1004),
    ("checkout-v2", "user-1", 899),
    ("checkout-v2", "user-2", 9110),
    ("checkout-v2", "alice@example.com", 8019),
    ("api", "tenant-42", 292),
    ("api", "tenant-43", 8503),
    ("salt", "Ünïcode-ключ", 4058),
    ("x", "0", 8101),
];

#[test]
fn pinned_buckets_never_change() {
    for &(salt, key, want) in PINNED {
        assert_eq!(bucket(salt, key), want, "bucket({salt:?}, {key:?})");
    }
}

#[test]
fn pinned_buckets_decide_the_variant() {
    // checkout-v2/user-1 is in bucket 899: out at 8%, in at 9%.
    let t = targeting("checkout-v2");
    assert_eq!(assign(&t, 8, "user-1"), Variant::Baseline);
    assert_eq!(assign(&t, 9, "user-1"), Variant::Canary);
}

#[test]
fn canary_share_is_within_one_point_of_the_weight_over_100k_keys() {
    for salt in ["checkout-v2", ""] {
        let t = targeting(salt);
        for weight in [1u8, 5, 10, 25, 50, 75, 90, 99] {
            let canary = (0..100_000)
                .filter(|i| assign(&t, weight, &format!("user-{i}")) == Variant::Canary)
                .count();
            let share = canary as f64 / 1000.0;
            assert!(
                (share - f64::from(weight)).abs() <= 1.0,
                "salt {salt:?}, weight {weight}%: canary share {share}%"
            );
        }
    }
}

#[test]
fn zero_and_full_weight_are_exact() {
    let t = targeting("s");
    for i in 0..10_000 {
        let key = format!("k{i}");
        assert_eq!(assign(&t, 0, &key), Variant::Baseline);
        assert_eq!(assign(&t, 100, &key), Variant::Canary);
    }
}

#[test]
fn different_salts_pick_different_cohorts() {
    let a = targeting("rollout-a");
    let b = targeting("rollout-b");
    let keys: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let both = keys
        .iter()
        .filter(|k| assign(&a, 10, k) == Variant::Canary && assign(&b, 10, k) == Variant::Canary)
        .count();
    // Independent 10% cohorts overlap on about 1% of keys, not 10%.
    assert!(both < 300, "{both} of 10000 keys in both 10% cohorts");
}

proptest! {
    #[test]
    fn raising_the_weight_never_moves_a_key_out_of_the_canary(
        salt in ".{0,12}",
        key in ".{0,24}",
        low in 0u8..=100,
        high in 0u8..=100,
        allow in any::<bool>(),
        deny in any::<bool>(),
    ) {
        let (low, high) = (low.min(high), low.max(high));
        let mut t = targeting(&salt);
        if allow { t.allow.push(key.clone()); }
        if deny { t.deny.push(key.clone()); }
        if assign(&t, low, &key) == Variant::Canary {
            prop_assert_eq!(assign(&t, high, &key), Variant::Canary);
        }
    }

    #[test]
    fn lists_override_the_hash(salt in ".{0,12}", key in ".{0,24}", weight in 1u8..=100) {
        let mut t = targeting(&salt);
        t.deny.push(key.clone());
        t.allow.push(key.clone());
        prop_assert_eq!(assign(&t, weight, &key), Variant::Baseline);
        t.deny.clear();
        prop_assert_eq!(assign(&t, weight, &key), Variant::Canary);
    }
}
