//! Money in the sinks: the contract's rules ([`storeflow_avro::money`]), the same the sales
//! processor and the API use. Amounts stay in their own currency everywhere (minor units
//! beside an ISO-4217 code); analytics and search also keep an amount in the **base
//! currency** (EUR by default) so sums across currencies mean something, converted with the
//! rate in force at the amount's event time and rounded half to even. The original amount
//! is kept beside it, so a different rule can be applied again later.

pub use storeflow_avro::money::{Rates, exponent};
