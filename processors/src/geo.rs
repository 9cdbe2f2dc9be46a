//! Geography for choosing warehouses: which region a country is in, how far a warehouse is
//! from a customer, and the warehouses a deployment has unless configured otherwise. Read
//! by inventory (where to hold stock) and the order saga (one warehouse for a whole order).

use std::collections::BTreeMap;

/// Warehouse id → ISO-3166-1 alpha-2 country it ships from: the default of
/// `[processors.inventory] warehouses` and `[processors.orders] warehouses`.
pub fn default_warehouses() -> BTreeMap<String, String> {
    let warehouses = [
        ("wh-de-berlin", "DE"),
        ("wh-nl-venlo", "NL"),
        ("wh-gb-coventry", "GB"),
        ("wh-us-newark", "US"),
        ("wh-us-reno", "US"),
        ("wh-jp-chiba", "JP"),
    ];
    warehouses.iter().map(|(w, c)| (w.to_string(), c.to_string())).collect()
}

/// The region of a country, for warehouse distances.
pub fn region(country: &str) -> &'static str {
    match country {
        "DE" | "FR" | "NL" | "BE" | "LU" | "AT" | "CH" | "IT" | "ES" | "PT" | "PL" | "CZ" | "DK" | "SE" | "FI" | "NO"
        | "IE" | "GR" | "HU" | "RO" | "SK" | "SI" | "HR" | "BG" | "EE" | "LV" | "LT" => "EU",
        "GB" => "UK",
        "US" | "CA" | "MX" => "NA",
        "JP" | "KR" | "CN" | "TW" | "HK" | "SG" | "AU" | "NZ" | "IN" => "APAC",
        _ => "ROW",
    }
}

/// How far a warehouse in `from` is from a customer in `to`: 0 same country, 1 same region,
/// 2 neighbouring regions (EU–UK, NA–UK), 3 otherwise.
pub fn distance(from: &str, to: &str) -> u8 {
    if from == to {
        return 0;
    }
    match (region(from), region(to)) {
        (a, b) if a == b && a != "ROW" => 1,
        ("EU", "UK") | ("UK", "EU") | ("NA", "UK") | ("UK", "NA") => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_prefer_the_same_country_then_the_region() {
        assert_eq!(distance("DE", "DE"), 0);
        assert_eq!(distance("NL", "DE"), 1);
        assert_eq!(distance("GB", "DE"), 2);
        assert_eq!(distance("US", "DE"), 3);
    }
}
