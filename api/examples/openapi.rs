//! Prints the API's OpenAPI 3.1 document (what `GET /openapi.json` serves):
//! `cargo run -p storeflow-api --example openapi > openapi.json`.

fn main() -> Result<(), serde_json::Error> {
    println!("{}", storeflow_api::openapi().to_pretty_json()?);
    Ok(())
}
