//! The simulated marketplace: vendors, products, warehouses, currencies and the patterns
//! the simulator plants on purpose (co-purchase pairs, a fraud ring) so tests can check
//! that the processors find them.

use rand::Rng;
use rand::seq::IndexedRandom;

/// A currency with its decimals and its simulated rate to EUR.
#[derive(Clone, Copy, Debug)]
pub struct Currency {
    /// ISO-4217 code.
    pub code: &'static str,
    /// Digits after the decimal point (JPY has none).
    pub decimals: u32,
    /// Units of this currency per EUR at the start.
    pub per_eur: f64,
}

/// The currencies orders are placed in; EUR is the catalogue's.
pub const CURRENCIES: [Currency; 4] = [
    Currency { code: "EUR", decimals: 2, per_eur: 1.0 },
    Currency { code: "USD", decimals: 2, per_eur: 1.08 },
    Currency { code: "GBP", decimals: 2, per_eur: 0.85 },
    Currency { code: "JPY", decimals: 0, per_eur: 162.0 },
];

/// The currency of shoppers in `country`.
pub fn currency_of(country: &str) -> &'static Currency {
    let code = match country {
        "US" | "CA" => "USD",
        "GB" => "GBP",
        "JP" => "JPY",
        _ => "EUR",
    };
    CURRENCIES.iter().find(|c| c.code == code).expect("listed")
}

/// Countries shoppers come from, with weights.
pub const SHOPPER_COUNTRIES: [(&str, u32); 9] = [
    ("DE", 22), ("FR", 14), ("NL", 7), ("ES", 8), ("IT", 8), ("US", 20), ("GB", 12), ("JP", 7), ("CA", 2),
];

/// Countries the fraud ring ships to (the fraud processor's default high-risk list is
/// configuration; these are merely where the simulated ring sends goods).
pub const RING_SHIP_TO: [&str; 2] = ["NG", "RU"];

pub use storeflow_avro::geo::{WAREHOUSES, Warehouse, distance, region};

const CATEGORIES: [&str; 16] = [
    "electronics/audio/headphones", "electronics/audio/speakers", "electronics/phones/cases",
    "electronics/computers/keyboards", "home/kitchen/cookware", "home/kitchen/coffee",
    "home/furniture/chairs", "home/lighting/lamps", "fashion/shoes/running", "fashion/bags/backpacks",
    "fashion/accessories/watches", "sports/outdoor/tents", "sports/fitness/yoga", "toys/building/sets",
    "books/fiction/crime", "beauty/skincare/serums",
];

const BRANDS: [&str; 14] = [
    "Nordlicht", "Acme", "Kestrel", "Bluefin", "Oakwood", "Sora", "Lumen", "Vantage", "Pico",
    "Meridian", "Tundra", "Halcyon", "Quill", "Rivet",
];

const NOUNS: [&str; 12] = [
    "Pro", "Lite", "Max", "Mini", "Air", "Classic", "Studio", "Trail", "Urban", "Core", "Edge", "Flex",
];

/// A vendor.
#[derive(Clone, Debug)]
pub struct Vendor {
    /// Vendor id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// ISO country.
    pub country: &'static str,
    /// basic, pro or enterprise.
    pub plan: &'static str,
    /// Currency the vendor is paid in.
    pub payout_currency: &'static str,
}

/// A product (one sku each).
#[derive(Clone, Debug)]
pub struct Product {
    /// Product id.
    pub id: String,
    /// Its sku.
    pub sku: String,
    /// Vendor index in [`World::vendors`].
    pub vendor: usize,
    /// Category path.
    pub category: &'static str,
    /// Brand.
    pub brand: &'static str,
    /// Title.
    pub title: String,
    /// Price in EUR cents.
    pub price_eur_minor: i64,
    /// Popularity weight (a few products sell much more than the rest).
    pub weight: f64,
    /// Warehouses that stock it (indexes into [`WAREHOUSES`]).
    pub warehouses: Vec<usize>,
}

/// The generated marketplace.
#[derive(Clone, Debug)]
pub struct World {
    /// Vendors.
    pub vendors: Vec<Vendor>,
    /// Products.
    pub products: Vec<Product>,
    /// Planted co-purchase pairs (product indexes): buying the first often adds the second.
    pub planted_pairs: Vec<(usize, usize)>,
    /// The IP the fraud ring orders from.
    pub fraud_ring_ip: String,
}

impl World {
    /// A marketplace of `vendors` vendors and `products` products, with `pairs` planted pairs.
    pub fn generate(rng: &mut impl Rng, vendors: usize, products: usize, pairs: usize) -> World {
        let plans = ["basic", "basic", "pro", "pro", "enterprise"];
        let vendor_countries = ["DE", "FR", "NL", "US", "GB", "JP", "IT", "ES"];
        let vendors: Vec<Vendor> = (0..vendors.max(1))
            .map(|i| {
                let country = *vendor_countries.choose(rng).expect("not empty");
                Vendor {
                    id: format!("v-{:03}", i + 1),
                    name: format!("{} {}", BRANDS[i % BRANDS.len()], ["Store", "Goods", "Supply", "Co", "Outlet"][i % 5]),
                    country,
                    plan: plans[rng.random_range(0..plans.len())],
                    payout_currency: currency_of(country).code,
                }
            })
            .collect();
        let products: Vec<Product> = (0..products.max(2))
            .map(|i| {
                let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
                let brand = BRANDS[rng.random_range(0..BRANDS.len())];
                let leaf = category.rsplit('/').next().unwrap_or(category);
                let base = match category.split('/').next() {
                    Some("electronics") => 8_000.0,
                    Some("home") => 6_000.0,
                    Some("fashion") => 7_000.0,
                    Some("books") => 1_500.0,
                    _ => 4_000.0,
                };
                // Log-normal-ish spread around the category's typical price.
                let f: f64 = (rng.random::<f64>() * 2.0 - 1.0) * 0.9;
                let price = (base * f.exp()).round().max(199.0) as i64 / 100 * 100 + 99;
                let mut warehouses: Vec<usize> = (0..WAREHOUSES.len()).collect();
                let keep = rng.random_range(1..=3);
                for k in 0..keep {
                    let j = rng.random_range(k..warehouses.len());
                    warehouses.swap(k, j);
                }
                warehouses.truncate(keep);
                Product {
                    id: format!("p-{:05}", i + 1),
                    sku: format!("SKU-{:05}", i + 1),
                    vendor: rng.random_range(0..vendors.len()),
                    category,
                    brand,
                    title: format!("{brand} {} {}", NOUNS[rng.random_range(0..NOUNS.len())], leaf.trim_end_matches('s')),
                    price_eur_minor: price,
                    weight: 1.0 / (1.0 + i as f64).powf(0.6),
                    warehouses,
                }
            })
            .collect();
        let n = products.len();
        let mut planted_pairs = Vec::new();
        let mut used = std::collections::HashSet::new();
        while planted_pairs.len() < pairs.min(n / 2) {
            let a = rng.random_range(0..n);
            let b = rng.random_range(0..n);
            if a != b && !used.contains(&a) && !used.contains(&b) {
                used.insert(a);
                used.insert(b);
                planted_pairs.push((a, b));
            }
        }
        World {
            vendors,
            products,
            planted_pairs,
            fraud_ring_ip: "198.51.100.66".to_string(),
        }
    }
}
