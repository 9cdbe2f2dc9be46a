//! The Elasticsearch index: created from `sql/elasticsearch/products.json` if missing (an
//! index created by an older release gets the mapping's new fields added); documents
//! written with `_bulk` `index` operations carrying `version_type=external_gte` and the
//! document's revision ([`ProductDoc::version`], one more per event applied), so a document
//! that has seen less of the log never replaces one that has seen more (Elasticsearch
//! answers 409, which the sink takes as "already newer").
//!
//! Talks plain JSON to Elasticsearch 8 (`elasticsearch` crate 8.19). The integ-test build
//! the tests run against has only the `standard` analyzer and `lowercase`, so typo tolerance
//! is `fuzziness: AUTO` rather than n-grams.

use std::collections::BTreeMap;
use std::time::Duration;

use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, Url};
use elasticsearch::indices::{IndicesCreateParts, IndicesExistsParts, IndicesPutMappingParts, IndicesRefreshParts};
use elasticsearch::{BulkParts, Elasticsearch, MgetParts, SearchParts};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::config::ElasticsearchConfig;
use super::doc::{PRODUCT, ProductDoc};
use super::highlight::highlights;
use super::query::{FacetCount, Facets, Hit, PRICE_BUCKETS, RATING_BUCKETS, SEARCH_BUDGET, SearchQuery, SearchResults, SortBy};
use crate::{Result, SinkError};

/// Settings and mappings of the product index.
pub const INDEX_BODY: &str = include_str!("../../../sql/elasticsearch/products.json");

/// Text fields a query token is matched against, with their boosts.
pub const TEXT_FIELDS: [&str; 6] = ["title^3", "i18n.*.title^2", "brand.text^2", "description", "i18n.*.description", "category.text"];

/// An Elasticsearch index of product documents.
#[derive(Clone)]
pub struct ElasticIndex {
    client: Elasticsearch,
    index: String,
}

impl std::fmt::Debug for ElasticIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticIndex").field("index", &self.index).finish()
    }
}

fn transport_err(context: &str) -> impl FnOnce(elasticsearch::Error) -> SinkError + '_ {
    move |e| SinkError::Elasticsearch {
        context: context.to_string(),
        status: e.status_code().map(|s| s.as_u16()),
        transport: e.status_code().is_none(),
        message: e.to_string(),
    }
}

async fn body(context: &str, r: elasticsearch::http::response::Response) -> Result<Value> {
    let status = r.status_code().as_u16();
    let v: Value = r.json().await.map_err(transport_err(context))?;
    if status >= 300 {
        return Err(SinkError::Elasticsearch { context: context.to_string(), status: Some(status), message: v["error"].to_string(), transport: false });
    }
    Ok(v)
}

/// For a rebuild ([`crate::rebuild`]): creates the empty index `staged` beside the live one
/// (refused if it exists).
pub(crate) async fn stage(live: &ElasticsearchConfig, staged: &str) -> Result<()> {
    let es = ElasticIndex::connect(&ElasticsearchConfig { index: staged.to_string(), ..live.clone() })?;
    if es.exists(staged).await? {
        return Err(SinkError::Config(format!("Elasticsearch index {staged} exists: another rebuild started this second")));
    }
    es.create().await
}

/// For a rebuild: Elasticsearch cannot rename an index, but it can clone one (hard links to
/// its segments, so it is cheap): the live index is write-blocked (which flushes it) and
/// cloned to `replaced`, which keeps the block, then deleted; the staged index is
/// write-blocked, cloned to the live name, unblocked there and deleted. Between the delete
/// and the clone the live name is missing for a moment (the sink is stopped); a crash there
/// leaves both copies, `replaced` and `staged`, to clone back by hand.
pub(crate) async fn swap(live: &ElasticsearchConfig, staged: &str, replaced: &str) -> Result<()> {
    let es = ElasticIndex::connect(live)?;
    let name = &live.index;
    if es.exists(name).await? {
        es.call(Method::Put, &format!("/{name}/_block/write"), None, &format!("blocking writes to {name}")).await?;
        es.call(Method::Post, &format!("/{name}/_clone/{replaced}"), None, &format!("cloning {name} to {replaced}")).await?;
        es.call(Method::Delete, &format!("/{name}"), None, &format!("deleting {name} (kept as {replaced})")).await?;
    }
    es.call(Method::Put, &format!("/{staged}/_block/write"), None, &format!("blocking writes to {staged}")).await?;
    es.call(Method::Post, &format!("/{staged}/_clone/{name}"), None, &format!("cloning {staged} to {name}")).await?;
    es.call(Method::Put, &format!("/{name}/_settings"), Some(json!({"index.blocks.write": false})), &format!("unblocking writes to {name}")).await?;
    es.call(Method::Delete, &format!("/{staged}"), None, &format!("deleting {staged} (cloned to {name})")).await?;
    Ok(())
}

impl ElasticIndex {
    /// Connects and creates the index if it does not exist.
    pub async fn open(config: &ElasticsearchConfig) -> Result<ElasticIndex> {
        let es = ElasticIndex::connect(config)?;
        es.create().await?;
        Ok(es)
    }

    /// A client of the index `config` names, without touching the server.
    fn connect(config: &ElasticsearchConfig) -> Result<ElasticIndex> {
        let url = Url::parse(&config.url).map_err(|e| SinkError::Config(format!("[sinks.search.elasticsearch] url: {e}")))?;
        let mut tb = TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(Duration::from_secs(30));
        if let (Some(u), Some(p)) = (&config.username, &config.password) {
            tb = tb.auth(elasticsearch::auth::Credentials::Basic(u.clone(), p.expose_secret().to_string()));
        }
        let transport = tb.build().map_err(|e| SinkError::Config(format!("[sinks.search.elasticsearch]: {e}")))?;
        Ok(ElasticIndex { client: Elasticsearch::new(transport), index: config.index.clone() })
    }

    async fn exists(&self, index: &str) -> Result<bool> {
        let ctx = format!("looking for Elasticsearch index {index}");
        let r = self.client.indices().exists(IndicesExistsParts::Index(&[index])).send().await.map_err(transport_err(&ctx))?;
        Ok(r.status_code().is_success())
    }

    /// One request of a rebuild's swap; fails on an error status.
    async fn call(&self, method: Method, path: &str, body: Option<Value>, what: &str) -> Result<Value> {
        let r = self
            .client
            .send(method, path, HeaderMap::new(), Option::<&()>::None, body.map(|b| b.to_string()), None)
            .await
            .map_err(transport_err(what))?;
        self::body(what, r).await
    }

    /// The index name.
    pub fn name(&self) -> &str {
        &self.index
    }

    /// The client.
    pub fn client(&self) -> &Elasticsearch {
        &self.client
    }

    async fn create(&self) -> Result<()> {
        let ctx = format!("creating Elasticsearch index {}", self.index);
        let exists = self.client.indices().exists(IndicesExistsParts::Index(&[&self.index])).send().await.map_err(transport_err(&ctx))?;
        let mapping: Value = serde_json::from_str(INDEX_BODY).map_err(|e| SinkError::Config(format!("products.json: {e}")))?;
        if exists.status_code().is_success() {
            // The mapping is strict: fields added since the index was created (the guards
            // `catalog_pos`, `price_pos`, `trending_version`, …) must be mapped before a
            // document carries them. Adding fields is allowed on a live index; fields it
            // has already are sent unchanged.
            let ctx = format!("updating the mapping of Elasticsearch index {}", self.index);
            let r = self
                .client
                .indices()
                .put_mapping(IndicesPutMappingParts::Index(&[&self.index]))
                .body(mapping["mappings"].clone())
                .send()
                .await
                .map_err(transport_err(&ctx))?;
            return body(&ctx, r).await.map(|_| ());
        }
        let r = self.client.indices().create(IndicesCreateParts::Index(&self.index)).body(mapping).send().await.map_err(transport_err(&ctx))?;
        match body(&ctx, r).await {
            Ok(_) => Ok(()),
            // Another instance created it meanwhile.
            Err(SinkError::Elasticsearch { message, .. }) if message.contains("resource_already_exists_exception") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The documents with these ids.
    pub async fn get(&self, ids: &[String]) -> Result<BTreeMap<String, ProductDoc>> {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(5_000) {
            let ctx = format!("reading {} documents from {}", chunk.len(), self.index);
            let r = self.client.mget(MgetParts::Index(&self.index)).body(json!({ "ids": chunk })).send().await.map_err(transport_err(&ctx))?;
            let v = body(&ctx, r).await?;
            for d in v["docs"].as_array().into_iter().flatten() {
                // A document that could not be read (a shard still recovering after a
                // restart) must not pass for a missing one: the sink would rebuild it from
                // scratch and its newer version would replace the real document.
                if !d["error"].is_null() || d["found"].as_bool().is_none() {
                    return Err(SinkError::Elasticsearch { context: ctx, status: Some(503), message: d["error"].to_string(), transport: false });
                }
                if d["found"].as_bool() == Some(true)
                    && let (Some(id), Ok(doc)) = (d["_id"].as_str(), serde_json::from_value::<ProductDoc>(d["_source"].clone()))
                {
                    out.insert(id.to_string(), doc);
                }
            }
        }
        Ok(out)
    }

    /// Product ids of these skus (searchable documents only: call after a refresh).
    pub async fn find_skus(&self, skus: &[String]) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for chunk in skus.chunks(1_000) {
            let ctx = format!("looking up skus in {}", self.index);
            let q = json!({
                "size": chunk.len() * 2,
                "_source": ["sku", "product_id"],
                "query": { "bool": { "filter": [ { "term": { "kind": PRODUCT } }, { "terms": { "sku": chunk } } ] } }
            });
            let r = self.client.search(SearchParts::Index(&[&self.index])).body(q).send().await.map_err(transport_err(&ctx))?;
            let v = body(&ctx, r).await?;
            for h in v["hits"]["hits"].as_array().into_iter().flatten() {
                if let (Some(s), Some(p)) = (h["_source"]["sku"].as_str(), h["_source"]["product_id"].as_str()) {
                    out.insert(s.to_string(), p.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Writes whole documents with `_bulk` and external versions.
    pub async fn put(&self, docs: &BTreeMap<String, ProductDoc>) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let ctx = format!("writing {} documents to {}", docs.len(), self.index);
        let mut nd: Vec<u8> = Vec::with_capacity(docs.len() * 1024);
        for (id, d) in docs {
            let action = json!({ "index": { "_index": self.index, "_id": id, "version": d.version.max(0), "version_type": "external_gte" } });
            serde_json::to_writer(&mut nd, &action).map_err(|e| SinkError::Rejected(format!("encoding {id}: {e}")))?;
            nd.push(b'\n');
            serde_json::to_writer(&mut nd, d).map_err(|e| SinkError::Rejected(format!("encoding {id}: {e}")))?;
            nd.push(b'\n');
        }
        self.bulk(&ctx, nd).await
    }

    /// Sends prepared `_bulk` bytes (ndjson); item errors are mapped like [`Self::put`]'s.
    pub async fn bulk(&self, ctx: &str, ndjson: Vec<u8>) -> Result<()> {
        let r = self
            .client
            .bulk(BulkParts::Index(&self.index))
            .filter_path(&["errors", "items.*.status", "items.*.error", "items.*._id"])
            .body(vec![bytes::Bytes::from(ndjson)])
            .send()
            .await
            .map_err(transport_err(ctx))?;
        let v = body(ctx, r).await?;
        if v["errors"].as_bool() != Some(true) {
            return Ok(());
        }
        let mut permanent: Option<String> = None;
        for item in v["items"].as_array().into_iter().flatten() {
            let op = &item["index"];
            let status = op["status"].as_u64().unwrap_or(0) as u16;
            match status {
                200..=299 | 409 => {} // 409: a newer version is indexed already
                400 | 413 => {
                    permanent.get_or_insert_with(|| format!("{} {}: {}", op["_id"], op["error"]["type"], op["error"]["reason"]));
                }
                s => {
                    return Err(SinkError::Elasticsearch { context: ctx.to_string(), status: Some(s), message: op["error"].to_string(), transport: false });
                }
            }
        }
        match permanent {
            Some(m) => Err(SinkError::Elasticsearch { context: ctx.to_string(), status: Some(400), message: m, transport: false }),
            None => Ok(()),
        }
    }

    /// Refreshes the index.
    pub async fn refresh(&self) -> Result<()> {
        let ctx = format!("refreshing {}", self.index);
        let r = self.client.indices().refresh(IndicesRefreshParts::Index(&[&self.index])).send().await.map_err(transport_err(&ctx))?;
        body(&ctx, r).await.map(|_| ())
    }

    /// Number of documents of a kind (tests).
    pub async fn count(&self, kind: &str) -> Result<u64> {
        let ctx = format!("counting {}", self.index);
        let r = self
            .client
            .send(Method::Post, &format!("/{}/_count", self.index), HeaderMap::new(), Option::<&()>::None, Some(json!({"query": {"term": {"kind": kind}}}).to_string()), None)
            .await
            .map_err(transport_err(&ctx))?;
        Ok(body(&ctx, r).await?["count"].as_u64().unwrap_or(0))
    }

    /// The request body for `q`.
    pub fn request(q: &SearchQuery) -> Value {
        let mut filter = vec![json!({"term": {"kind": PRODUCT}}), json!({"term": {"listed": true}}), json!({"term": {"status": "active"}})];
        if let Some(c) = &q.category {
            filter.push(json!({"term": {"category_path": c.trim_matches('/')}}));
        }
        if !q.brands.is_empty() {
            filter.push(json!({"terms": {"brand": q.brands}}));
        }
        if let Some(v) = &q.vendor_id {
            filter.push(json!({"term": {"vendor_id": v}}));
        }
        if q.min_price_eur_minor.is_some() || q.max_price_eur_minor.is_some() {
            let mut r = serde_json::Map::new();
            if let Some(v) = q.min_price_eur_minor {
                r.insert("gte".into(), json!(v));
            }
            if let Some(v) = q.max_price_eur_minor {
                r.insert("lte".into(), json!(v));
            }
            filter.push(json!({"range": {"price_eur_minor": r}}));
        }
        if let Some(r) = q.min_rating {
            filter.push(json!({"range": {"rating": {"gte": r}}}));
        }
        if q.in_stock {
            filter.push(json!({"term": {"in_stock": true}}));
        }
        let must: Vec<Value> = q
            .tokens()
            .iter()
            .map(|t| json!({"multi_match": {"query": t, "fields": TEXT_FIELDS, "fuzziness": "AUTO", "type": "best_fields"}}))
            .collect();
        let tiebreak = json!({"product_id": "asc"});
        let sort = match q.sort {
            SortBy::Relevance => json!(["_score", tiebreak]),
            SortBy::PriceAsc => json!([{"price_eur_minor": {"order": "asc", "missing": "_last"}}, tiebreak]),
            SortBy::PriceDesc => json!([{"price_eur_minor": {"order": "desc", "missing": "_last"}}, tiebreak]),
            SortBy::Rating => json!([{"rating": {"order": "desc", "missing": "_last"}}, tiebreak]),
            SortBy::Popularity => json!([{"popularity": {"order": "desc"}}, tiebreak]),
        };
        json!({
            "from": q.offset(),
            "size": q.per_page(),
            "track_total_hits": true,
            // The same CPU budget as the tantivy twin's; a timed-out search is refused below.
            "timeout": format!("{}ms", SEARCH_BUDGET.as_millis()),
            "query": {"bool": {"must": must, "filter": filter}},
            "sort": sort,
            "aggs": aggregations(),
        })
    }

    /// Runs a search.
    pub async fn search(&self, q: &SearchQuery) -> Result<SearchResults> {
        let ctx = format!("searching {}", self.index);
        let r = self.client.search(SearchParts::Index(&[&self.index])).body(Self::request(q)).send().await.map_err(transport_err(&ctx))?;
        let v = body(&ctx, r).await?;
        if v["timed_out"].as_bool() == Some(true) {
            return Err(SinkError::Elasticsearch { context: ctx, status: Some(503), message: "the search took longer than its budget; narrow the query".into(), transport: false });
        }
        if v["_shards"]["failed"].as_u64().unwrap_or(0) > 0 {
            // Partial results (a shard recovering) would under-count totals and facets.
            return Err(SinkError::Elasticsearch { context: ctx, status: Some(503), message: v["_shards"]["failures"].to_string(), transport: false });
        }
        let toks = q.tokens();
        let mut hits = Vec::new();
        for h in v["hits"]["hits"].as_array().into_iter().flatten() {
            let Ok(d) = serde_json::from_value::<ProductDoc>(h["_source"].clone()) else { continue };
            let hl = highlights(&d, &toks);
            let score = if q.sort == SortBy::Relevance { h["_score"].as_f64() } else { None };
            hits.push(Hit::from_doc(&d, score, hl));
        }
        Ok(SearchResults { total: v["hits"]["total"]["value"].as_u64().unwrap_or(0), hits, facets: parse_facets(&v["aggregations"]) })
    }
}

/// The facet aggregations (the same request runs on tantivy).
pub fn aggregations() -> Value {
    let price: Vec<Value> = PRICE_BUCKETS
        .iter()
        .map(|(k, from, to)| {
            let mut m = serde_json::Map::new();
            m.insert("key".into(), json!(k));
            if let Some(f) = from {
                m.insert("from".into(), json!(f));
            }
            if let Some(t) = to {
                m.insert("to".into(), json!(t));
            }
            Value::Object(m)
        })
        .collect();
    let rating: Vec<Value> = RATING_BUCKETS.iter().map(|(k, from)| json!({"key": k, "from": from})).collect();
    json!({
        "categories": {"terms": {"field": "category", "size": 50}},
        "brands": {"terms": {"field": "brand", "size": 50}},
        "vendors": {"terms": {"field": "vendor_id", "size": 50}},
        "price": {"range": {"field": "price_eur_minor", "ranges": price}},
        "rating": {"range": {"field": "rating", "ranges": rating}},
        "in_stock": {"terms": {"field": "in_stock", "size": 2}}
    })
}

/// Facet counts from an aggregation answer (Elasticsearch's or tantivy's, same shape).
pub fn parse_facets(aggs: &Value) -> Facets {
    let buckets = |name: &str| -> Vec<FacetCount> {
        let b = &aggs[name]["buckets"];
        let list: Vec<&Value> = match b {
            Value::Array(a) => a.iter().collect(),
            Value::Object(m) => m.values().collect(),
            _ => Vec::new(),
        };
        list.into_iter()
            .filter_map(|x| {
                let value = match (&x["key_as_string"], &x["key"]) {
                    (Value::String(s), _) => s.clone(),
                    (_, Value::String(s)) => s.clone(),
                    (_, Value::Bool(b)) => b.to_string(),
                    (_, Value::Number(n)) => n.to_string(),
                    _ => return None,
                };
                Some(FacetCount { value, count: x["doc_count"].as_u64().unwrap_or(0) })
            })
            .collect()
    };
    Facets {
        categories: buckets("categories"),
        brands: buckets("brands"),
        vendors: buckets("vendors"),
        price: buckets("price"),
        rating: buckets("rating"),
        in_stock: buckets("in_stock"),
    }
}
