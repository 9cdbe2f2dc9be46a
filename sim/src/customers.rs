//! The simulated shoppers: a large base of established accounts and the sign-ups of the run.
//!
//! A busy marketplace has millions of accounts and any one of them shops rarely, so the
//! base is large (`SimConfig::customer_base`) and nothing of it is stored: an account's
//! country, age, IP and card follow from the seed and its number. The first
//! `SimConfig::established_customers` accounts are imported at the start
//! (`CustomerRegistered`); the log knows the others from what they do (`OrderPlaced`
//! carries their real age). Accounts opened during the run (sign-ups, the fraud ring's
//! throwaway accounts) are kept, as are erasures.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use storeflow_avro::Timestamp;

use crate::world::SHOPPER_COUNTRIES;

/// One account, as the simulator needs it.
#[derive(Clone, Debug)]
pub(crate) struct Customer {
    /// Customer id.
    pub id: String,
    /// Country of residence (billing).
    pub country: &'static str,
    /// When the account was opened.
    pub since: Timestamp,
    /// The IP it shops from.
    pub ip: String,
    /// Its saved payment method token.
    pub card: String,
}

/// The accounts: number `n` is the customer id `c-{n+1:07}`.
pub(crate) struct Customers {
    seed: u64,
    base: u64,
    start: i64,
    signups: Vec<Customer>,
    erased: HashSet<u64>,
}

/// A country drawn with [`SHOPPER_COUNTRIES`]' weights.
pub(crate) fn shopper_country(rng: &mut impl Rng) -> &'static str {
    let total: u32 = SHOPPER_COUNTRIES.iter().map(|c| c.1).sum();
    let mut pick = rng.random_range(0..total);
    for (c, w) in SHOPPER_COUNTRIES {
        if pick < w {
            return c;
        }
        pick -= w;
    }
    "DE"
}

/// A plausible public IPv4 address.
pub(crate) fn random_ip(rng: &mut impl Rng) -> String {
    format!("{}.{}.{}.{}", rng.random_range(11..223), rng.random_range(0..255), rng.random_range(0..255), rng.random_range(1..255))
}

impl Customers {
    /// `base` established accounts (at least one) for a run starting at `start` (ms).
    pub fn new(seed: u64, base: u64, start: i64) -> Customers {
        Customers { seed, base: base.max(1), start, signups: Vec::new(), erased: HashSet::new() }
    }

    /// Established accounts.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Every account: the base and the run's sign-ups.
    pub fn count(&self) -> u64 {
        self.base + self.signups.len() as u64
    }

    /// Account `n`.
    pub fn get(&self, n: u64) -> Customer {
        if let Some(c) = n.checked_sub(self.base).and_then(|i| self.signups.get(i as usize)) {
            return c.clone();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ n.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let country = shopper_country(&mut rng);
        let days = rng.random_range(30..1460);
        let ip = random_ip(&mut rng);
        let card = format!("pm_{:016x}", rng.random::<u64>());
        Customer { id: Self::id(n), country, since: Timestamp(self.start - days * 86_400_000), ip, card }
    }

    /// The id of account `n`.
    pub fn id(n: u64) -> String {
        format!("c-{:07}", n + 1)
    }

    /// Opens an account; returns its number.
    pub fn sign_up(&mut self, country: &'static str, since: Timestamp, ip: String, card: String) -> u64 {
        let n = self.count();
        self.signups.push(Customer { id: Self::id(n), country, since, ip, card });
        n
    }

    /// True once account `n` asked to be erased.
    pub fn is_erased(&self, n: u64) -> bool {
        self.erased.contains(&n)
    }

    /// Marks account `n` erased; false if it already was.
    pub fn erase(&mut self, n: u64) -> bool {
        self.erased.insert(n)
    }
}
