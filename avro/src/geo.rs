//! Geography of the marketplace: its warehouses, which region a country is in, and how far
//! a warehouse is from a customer. One table for everyone who picks a warehouse: the
//! inventory processor and the order saga (where to hold stock), and the simulator (where
//! its warehouses ship from), so simulated traffic picks stock the way the pipeline reserves it.

/// A warehouse and the country it ships from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Warehouse {
    /// Warehouse id.
    pub id: &'static str,
    /// ISO-3166-1 alpha-2 country.
    pub country: &'static str,
}

/// The marketplace's warehouses (the processors' default `warehouses`).
pub const WAREHOUSES: [Warehouse; 6] = [
    Warehouse { id: "wh-de-berlin", country: "DE" },
    Warehouse { id: "wh-nl-venlo", country: "NL" },
    Warehouse { id: "wh-gb-coventry", country: "GB" },
    Warehouse { id: "wh-us-newark", country: "US" },
    Warehouse { id: "wh-us-reno", country: "US" },
    Warehouse { id: "wh-jp-chiba", country: "JP" },
];

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
