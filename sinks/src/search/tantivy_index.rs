//! The embedded twin of Elasticsearch: a tantivy index under `<data_dir>/search/`.
//!
//! Same documents ([`ProductDoc`], stored whole as JSON), same query semantics: each query
//! token must match a text field exactly (boosted) or within `fuzziness: AUTO` edits with
//! transpositions ([`FuzzyTermQuery`]); the same filters; facets from tantivy's
//! aggregations, which take the very request Elasticsearch gets; sorting by fast fields;
//! highlights computed over the stored text with the same fuzzy rule.
//!
//! Versions: a write replaces a document only if its `version` (the document's revision,
//! one more per event applied) is at least the stored one (Elasticsearch's
//! `external_gte`), checked under the writer lock; within a document the same guards as on
//! Elasticsearch decide each group of fields ([`ProductDoc::apply`]). Writes are durable when
//! [`TantivyIndex::put`] returns (tantivy's commit fsyncs), and visible to searches then.
//! Documents over Elasticsearch's keyword limit are refused the same way.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::{AggContextParams, AggregationCollector, AggregationLimitsGuard};
use tantivy::collector::{Collector, Count, SegmentCollector, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, TantivyDocument, Value as _};
use tantivy::tokenizer::TokenizerManager;
use tantivy::{DocAddress, DocId, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Score, SegmentOrdinal, SegmentReader, Term};

use super::doc::{PRODUCT, ProductDoc};
use super::elastic::{aggregations, parse_facets};
use super::highlight::highlights;
use super::query::{FacetCount, Hit, PRICE_BUCKETS, RATING_BUCKETS, SEARCH_BUDGET, SearchQuery, SearchResults, SortBy, fuzziness};
use crate::{Result, SinkError};

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    kind: Field,
    product_id: Field,
    sku: Field,
    title: Field,
    description: Field,
    i18n_title: Field,
    i18n_description: Field,
    brand_text: Field,
    category_text: Field,
    vendor_id: Field,
    category: Field,
    category_path: Field,
    brand: Field,
    status: Field,
    listed: Field,
    price_eur_minor: Field,
    rating: Field,
    in_stock: Field,
    popularity: Field,
    version: Field,
    doc: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let f = Fields {
        id: b.add_text_field("id", STRING | STORED),
        kind: b.add_text_field("kind", STRING),
        product_id: b.add_text_field("product_id", STRING | FAST),
        sku: b.add_text_field("sku", STRING),
        title: b.add_text_field("title", TEXT),
        description: b.add_text_field("description", TEXT),
        i18n_title: b.add_text_field("i18n_title", TEXT),
        i18n_description: b.add_text_field("i18n_description", TEXT),
        brand_text: b.add_text_field("brand_text", TEXT),
        category_text: b.add_text_field("category_text", TEXT),
        vendor_id: b.add_text_field("vendor_id", STRING | FAST),
        category: b.add_text_field("category", STRING | FAST),
        category_path: b.add_text_field("category_path", STRING),
        brand: b.add_text_field("brand", STRING | FAST),
        status: b.add_text_field("status", STRING),
        listed: b.add_bool_field("listed", INDEXED),
        price_eur_minor: b.add_i64_field("price_eur_minor", INDEXED | FAST),
        rating: b.add_f64_field("rating", INDEXED | FAST),
        in_stock: b.add_bool_field("in_stock", INDEXED | FAST),
        popularity: b.add_f64_field("popularity", FAST),
        version: b.add_i64_field("version", FAST),
        doc: b.add_text_field("doc", STORED),
    };
    (b.build(), f)
}

/// A tantivy index of product documents.
pub struct TantivyIndex {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    f: Fields,
}

impl std::fmt::Debug for TantivyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TantivyIndex").finish_non_exhaustive()
    }
}

/// Text fields a token is matched against, with their boosts (as on Elasticsearch).
fn text_fields(f: &Fields) -> [(Field, f32); 6] {
    [(f.title, 3.0), (f.i18n_title, 2.0), (f.brand_text, 2.0), (f.description, 1.0), (f.i18n_description, 1.0), (f.category_text, 1.0)]
}

impl TantivyIndex {
    /// Opens (or creates) the index in `dir`. One process holds one writer per index, so
    /// opening the same folder again returns the instance already open.
    pub fn open(dir: &Path) -> Result<Arc<TantivyIndex>> {
        static OPEN: std::sync::LazyLock<Mutex<HashMap<PathBuf, Weak<TantivyIndex>>>> = std::sync::LazyLock::new(Default::default);
        std::fs::create_dir_all(dir).map_err(SinkError::io(format!("creating {}", dir.display())))?;
        let key = dir.canonicalize().map_err(SinkError::io(format!("resolving {}", dir.display())))?;
        let mut open = OPEN.lock();
        open.retain(|_, w| w.strong_count() > 0);
        if let Some(i) = open.get(&key).and_then(Weak::upgrade) {
            return Ok(i);
        }
        let i = Arc::new(Self::open_new(&key)?);
        open.insert(key, Arc::downgrade(&i));
        Ok(i)
    }

    fn open_new(dir: &Path) -> Result<TantivyIndex> {
        std::fs::create_dir_all(dir).map_err(SinkError::io(format!("creating {}", dir.display())))?;
        let (schema, f) = schema();
        let mmap = MmapDirectory::open(dir).map_err(|e| SinkError::Tantivy { context: format!("opening {}", dir.display()), source: e.into() })?;
        let index = Index::open_or_create(mmap, schema).map_err(SinkError::tantivy(format!("opening the index in {}", dir.display())))?;
        let writer = index.writer_with_num_threads(1, 50_000_000).map_err(SinkError::tantivy("opening the index writer"))?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(SinkError::tantivy("opening the index reader"))?;
        Ok(TantivyIndex { reader, writer: Mutex::new(writer), f })
    }

    fn stored(&self, searcher: &tantivy::Searcher, addr: DocAddress) -> Result<Option<ProductDoc>> {
        let d: TantivyDocument = searcher.doc(addr).map_err(SinkError::tantivy("reading a stored document"))?;
        Ok(d.get_first(self.f.doc).and_then(|v| v.as_str()).and_then(|s| serde_json::from_str(s).ok()))
    }

    fn by_id(&self, searcher: &tantivy::Searcher, id: &str) -> Result<Option<ProductDoc>> {
        let q = TermQuery::new(Term::from_field_text(self.f.id, id), IndexRecordOption::Basic);
        let top = searcher.search(&q, &TopDocs::with_limit(1).order_by_score()).map_err(SinkError::tantivy("looking up a document"))?;
        match top.first() {
            Some((_, addr)) => self.stored(searcher, *addr),
            None => Ok(None),
        }
    }

    /// The documents with these ids.
    pub async fn get(&self, ids: &[String]) -> Result<BTreeMap<String, ProductDoc>> {
        let searcher = self.reader.searcher();
        let mut out = BTreeMap::new();
        for id in ids {
            if let Some(d) = self.by_id(&searcher, id)? {
                out.insert(id.clone(), d);
            }
        }
        Ok(out)
    }

    /// Product ids of these skus.
    pub async fn find_skus(&self, skus: &[String]) -> Result<BTreeMap<String, String>> {
        let searcher = self.reader.searcher();
        let mut out = BTreeMap::new();
        for sku in skus {
            let q = BooleanQuery::new(vec![(Occur::Must, self.term(self.f.sku, sku)), (Occur::Must, self.term(self.f.kind, PRODUCT))]);
            let top = searcher.search(&q, &TopDocs::with_limit(1).order_by_score()).map_err(SinkError::tantivy("looking up a sku"))?;
            if let Some((_, addr)) = top.first()
                && let Some(d) = self.stored(&searcher, *addr)?
            {
                out.insert(sku.clone(), d.product_id);
            }
        }
        Ok(out)
    }

    /// The indexed version of document `id` (a fast-field read, no stored-document decode).
    fn version_of(&self, searcher: &tantivy::Searcher, id: &str) -> Result<Option<i64>> {
        let q = TermQuery::new(Term::from_field_text(self.f.id, id), IndexRecordOption::Basic);
        let top = searcher.search(&q, &TopDocs::with_limit(1).order_by_score()).map_err(SinkError::tantivy("looking up a document"))?;
        let Some((_, addr)) = top.first() else { return Ok(None) };
        let col = searcher.segment_reader(addr.segment_ord).fast_fields().i64("version").map_err(SinkError::tantivy("reading versions"))?;
        Ok(col.first(addr.doc_id))
    }

    fn document(&self, id: &str, d: &ProductDoc) -> Result<TantivyDocument> {
        let f = &self.f;
        let mut t = TantivyDocument::new();
        t.add_text(f.id, id);
        t.add_text(f.kind, &d.kind);
        t.add_text(f.product_id, &d.product_id);
        t.add_text(f.sku, &d.sku);
        t.add_text(f.title, &d.title);
        t.add_text(f.description, &d.description);
        for l in d.i18n.values() {
            t.add_text(f.i18n_title, &l.title);
            t.add_text(f.i18n_description, &l.description);
        }
        t.add_text(f.brand_text, &d.brand);
        t.add_text(f.category_text, &d.category);
        t.add_text(f.vendor_id, &d.vendor_id);
        t.add_text(f.category, &d.category);
        for p in &d.category_path {
            t.add_text(f.category_path, p);
        }
        t.add_text(f.brand, &d.brand);
        t.add_text(f.status, &d.status);
        t.add_bool(f.listed, d.listed);
        if let Some(p) = d.price_eur_minor {
            t.add_i64(f.price_eur_minor, p);
        }
        if let Some(r) = d.rating {
            t.add_f64(f.rating, r);
        }
        t.add_bool(f.in_stock, d.in_stock);
        t.add_f64(f.popularity, d.popularity);
        t.add_i64(f.version, d.version);
        let json = serde_json::to_string(d).map_err(|e| SinkError::Rejected(format!("encoding {id}: {e}")))?;
        t.add_text(f.doc, json);
        Ok(t)
    }

    /// Writes whole documents; a document older than the stored one is dropped.
    pub async fn put(&self, docs: &BTreeMap<String, ProductDoc>) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        for d in docs.values() {
            d.check().map_err(SinkError::Rejected)?;
        }
        let mut w = self.writer.lock();
        let searcher = self.reader.searcher();
        let mut written = 0;
        for (id, d) in docs {
            if self.version_of(&searcher, id)?.is_some_and(|v| v > d.version) {
                continue; // a newer version is indexed already
            }
            let doc = self.document(id, d)?;
            w.delete_term(Term::from_field_text(self.f.id, id));
            w.add_document(doc).map_err(SinkError::tantivy("adding a document"))?;
            written += 1;
        }
        if written > 0 {
            if let Err(e) = w.commit() {
                let _ = w.rollback();
                return Err(SinkError::Tantivy { context: "committing the index".into(), source: e });
            }
            self.reader.reload().map_err(SinkError::tantivy("reloading the index reader"))?;
        }
        Ok(())
    }

    /// Adds documents without reading anything back or checking versions, and commits:
    /// tantivy's raw bulk path (the baseline of the sink benchmark).
    pub fn put_unversioned(&self, docs: &BTreeMap<String, ProductDoc>) -> Result<()> {
        let mut w = self.writer.lock();
        for (id, d) in docs {
            w.delete_term(Term::from_field_text(self.f.id, id));
            w.add_document(self.document(id, d)?).map_err(SinkError::tantivy("adding a document"))?;
        }
        w.commit().map_err(SinkError::tantivy("committing the index"))?;
        self.reader.reload().map_err(SinkError::tantivy("reloading the index reader"))
    }

    /// Nothing to do: writes are visible once [`Self::put`] returns.
    pub async fn refresh(&self) -> Result<()> {
        self.reader.reload().map_err(SinkError::tantivy("reloading the index reader"))
    }

    /// Number of documents of a kind.
    pub fn count(&self, kind: &str) -> Result<u64> {
        let q = TermQuery::new(Term::from_field_text(self.f.kind, kind), IndexRecordOption::Basic);
        Ok(self.reader.searcher().search(&q, &Count).map_err(SinkError::tantivy("counting"))? as u64)
    }

    fn term(&self, field: Field, v: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(Term::from_field_text(field, v), IndexRecordOption::Basic))
    }

    fn query(&self, q: &SearchQuery) -> Box<dyn Query> {
        let f = &self.f;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Must, self.term(f.kind, PRODUCT)),
            (Occur::Must, Box::new(TermQuery::new(Term::from_field_bool(f.listed, true), IndexRecordOption::Basic))),
            (Occur::Must, self.term(f.status, "active")),
        ];
        for tok in q.tokens() {
            let mut alts: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for (field, boost) in text_fields(f) {
                let term = Term::from_field_text(field, &tok);
                alts.push((Occur::Should, Box::new(BoostQuery::new(Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)), boost * 2.0))));
                let d = fuzziness(&tok);
                if d > 0 {
                    alts.push((Occur::Should, Box::new(BoostQuery::new(Box::new(FuzzyTermQuery::new(term, d, true)), boost))));
                }
            }
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(alts))));
        }
        if let Some(c) = &q.category {
            clauses.push((Occur::Must, self.term(f.category_path, c.trim_matches('/'))));
        }
        if !q.brands.is_empty() {
            let any: Vec<(Occur, Box<dyn Query>)> = q.brands.iter().map(|b| (Occur::Should, self.term(f.brand, b))).collect();
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        if let Some(v) = &q.vendor_id {
            clauses.push((Occur::Must, self.term(f.vendor_id, v)));
        }
        if q.min_price_eur_minor.is_some() || q.max_price_eur_minor.is_some() {
            let lo = q.min_price_eur_minor.map_or(Bound::Unbounded, |v| Bound::Included(Term::from_field_i64(f.price_eur_minor, v)));
            let hi = q.max_price_eur_minor.map_or(Bound::Unbounded, |v| Bound::Included(Term::from_field_i64(f.price_eur_minor, v)));
            clauses.push((Occur::Must, Box::new(RangeQuery::new(lo, hi))));
        }
        if let Some(r) = q.min_rating {
            clauses.push((Occur::Must, Box::new(RangeQuery::new(Bound::Included(Term::from_field_f64(f.rating, r)), Bound::Unbounded))));
        }
        if q.in_stock {
            clauses.push((Occur::Must, Box::new(TermQuery::new(Term::from_field_bool(f.in_stock, true), IndexRecordOption::Basic))));
        }
        if clauses.is_empty() { Box::new(AllQuery) } else { Box::new(BooleanQuery::new(clauses)) }
    }

    /// The facets' collectors, run in the same pass as the page's: the total, the
    /// aggregations Elasticsearch gets (brands, categories, price and rating buckets) and
    /// the in-stock counts.
    fn facet_collector() -> Result<(Count, AggregationCollector, StockCounter)> {
        // The request never changes: built from Elasticsearch's once per process, cloned per query.
        static AGGS: std::sync::LazyLock<std::result::Result<Aggregations, String>> = std::sync::LazyLock::new(|| {
            let mut aggs_req = aggregations();
            if let Some(m) = aggs_req.as_object_mut() {
                m.remove("in_stock"); // StockCounter: tantivy's terms aggregation does not take booleans
                // tantivy refuses overlapping ranges in one aggregation: one per rating bucket.
                m.remove("rating");
                for (i, (key, from)) in RATING_BUCKETS.iter().enumerate() {
                    m.insert(format!("rating_{i}"), serde_json::json!({"range": {"field": "rating", "ranges": [{"key": key, "from": from}]}}));
                }
            }
            serde_json::from_value(aggs_req).map_err(|e| format!("facet request: {e}"))
        });
        let aggs = AGGS.clone().map_err(SinkError::Config)?;
        let agg = AggregationCollector::from_aggs(aggs, AggContextParams::new(AggregationLimitsGuard::default(), TokenizerManager::default()));
        Ok((Count, agg, StockCounter))
    }

    /// Runs a search: one pass over the matching documents collects the page, the total
    /// and every facet (the fuzzy terms' automata are built once per query).
    pub async fn search(&self, q: &SearchQuery) -> Result<SearchResults> {
        let searcher = self.reader.searcher();
        let query = self.query(q);
        let facets = Self::facet_collector()?;
        let top = TopDocs::with_limit(q.per_page()).and_offset(q.offset());
        let failed = SinkError::tantivy("searching");
        let budget = Deadline(std::time::Instant::now() + SEARCH_BUDGET);
        let (addrs, (total, agg_res, stock)): (Vec<(Option<f64>, DocAddress)>, _) = match q.sort {
            SortBy::Relevance if !q.tokens().is_empty() => {
                let (page, rest, ()) = searcher.search(&query, &(top.order_by_score(), facets, budget)).map_err(failed)?;
                (page.into_iter().map(|(s, a)| (Some(f64::from(s)), a)).collect(), rest)
            }
            SortBy::Relevance => {
                let (page, rest, ()) = searcher.search(&query, &(top.order_by_string_fast_field("product_id", Order::Asc), facets, budget)).map_err(failed)?;
                (page.into_iter().map(|(_, a)| (None, a)).collect(), rest)
            }
            SortBy::PriceAsc | SortBy::PriceDesc => {
                let order = if q.sort == SortBy::PriceAsc { Order::Asc } else { Order::Desc };
                let (page, rest, ()) = searcher.search(&query, &(top.order_by_fast_field::<i64>("price_eur_minor", order), facets, budget)).map_err(failed)?;
                (page.into_iter().map(|(_, a)| (None, a)).collect(), rest)
            }
            SortBy::Rating | SortBy::Popularity => {
                let field = if q.sort == SortBy::Rating { "rating" } else { "popularity" };
                let (page, rest, ()) = searcher.search(&query, &(top.order_by_fast_field::<f64>(field, Order::Desc), facets, budget)).map_err(failed)?;
                (page.into_iter().map(|(_, a)| (None, a)).collect(), rest)
            }
        };
        let agg_json = serde_json::to_value(&agg_res).map_err(|e| SinkError::Config(format!("facet answer: {e}")))?;
        let mut facets = parse_facets(&agg_json);
        facets.rating = (0..RATING_BUCKETS.len())
            .flat_map(|i| parse_facets(&serde_json::json!({"rating": agg_json[format!("rating_{i}")].clone()})).rating)
            // tantivy adds a bucket for the gap below a range (`*-4`): not one of ours.
            .filter(|b| RATING_BUCKETS.iter().any(|(k, _)| *k == b.value))
            .collect();
        facets.price.retain(|b| PRICE_BUCKETS.iter().any(|(k, _, _)| *k == b.value));
        // In stock first, like Elasticsearch's terms bucket order here; empty buckets left out.
        facets.in_stock = [(true, stock.in_stock), (false, stock.out_of_stock)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| FacetCount { value: s.to_string(), count: n })
            .collect();
        let toks = q.tokens();
        let mut hits = Vec::new();
        for (score, addr) in addrs {
            if let Some(d) = self.stored(&searcher, addr)? {
                let hl = highlights(&d, &toks);
                hits.push(Hit::from_doc(&d, score, hl));
            }
        }
        Ok(SearchResults { total: total as u64, hits, facets })
    }
}

/// Every live document of the index in `dir` as `(id, stored JSON)`, read without a writer
/// and without writing a byte: the directory refuses writes, and the lock tantivy takes
/// while it opens segments (`.tantivy-meta.lock`, which keeps a writer's garbage collection
/// from deleting them meanwhile) is taken as a shared `flock` on the existing lock file,
/// opened read-only — or not at all if no writer ever created it. `None` when `dir` holds
/// no index. For tools that read an index no sink has open ([`crate::snapshot`]).
pub fn read_documents(dir: &Path) -> Result<Option<Vec<(String, String)>>> {
    if !dir.join("meta.json").exists() {
        return Ok(None);
    }
    let failed = |what: &str| SinkError::tantivy(format!("{what} {}", dir.display()));
    let mmap = MmapDirectory::open(dir).map_err(|e| SinkError::Tantivy { context: format!("opening {}", dir.display()), source: e.into() })?;
    let index = Index::open(ReadOnlyDirectory { mmap, root: dir.to_path_buf() }).map_err(failed("opening the index in"))?;
    let schema = index.schema();
    let (id, doc) = match (schema.get_field("id"), schema.get_field("doc")) {
        (Ok(id), Ok(doc)) => (id, doc),
        _ => return Err(SinkError::Config(format!("{} is not a storeflow search index (no id and doc fields)", dir.display()))),
    };
    let reader: IndexReader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(failed("opening a reader of"))?;
    let searcher = reader.searcher();
    let mut out = Vec::new();
    for (ord, segment) in searcher.segment_readers().iter().enumerate() {
        for doc_id in segment.doc_ids_alive() {
            let d: TantivyDocument = searcher.doc(DocAddress::new(ord as SegmentOrdinal, doc_id)).map_err(failed("reading a document of"))?;
            let text = |f: Field| d.get_first(f).and_then(|v| v.as_str()).map(str::to_string);
            if let (Some(i), Some(j)) = (text(id), text(doc)) {
                out.push((i, j));
            }
        }
    }
    Ok(Some(out))
}

/// An index directory that reads through [`MmapDirectory`] and writes nothing.
#[derive(Clone, Debug)]
struct ReadOnlyDirectory {
    mmap: MmapDirectory,
    root: PathBuf,
}

fn read_only(path: &Path) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, format!("{} is opened read-only", path.display()))
}

impl tantivy::directory::Directory for ReadOnlyDirectory {
    fn get_file_handle(&self, path: &Path) -> std::result::Result<Arc<dyn tantivy::directory::FileHandle>, tantivy::directory::error::OpenReadError> {
        self.mmap.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> std::result::Result<(), tantivy::directory::error::DeleteError> {
        Err(tantivy::directory::error::DeleteError::IoError { io_error: Arc::new(read_only(path)), filepath: path.to_path_buf() })
    }

    fn exists(&self, path: &Path) -> std::result::Result<bool, tantivy::directory::error::OpenReadError> {
        self.mmap.exists(path)
    }

    fn open_write(&self, path: &Path) -> std::result::Result<tantivy::directory::WritePtr, tantivy::directory::error::OpenWriteError> {
        Err(tantivy::directory::error::OpenWriteError::IoError { io_error: Arc::new(read_only(path)), filepath: path.to_path_buf() })
    }

    fn atomic_read(&self, path: &Path) -> std::result::Result<Vec<u8>, tantivy::directory::error::OpenReadError> {
        self.mmap.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, _data: &[u8]) -> std::io::Result<()> {
        Err(read_only(path))
    }

    fn sync_directory(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn acquire_lock(&self, lock: &tantivy::directory::Lock) -> std::result::Result<tantivy::directory::DirectoryLock, tantivy::directory::error::LockError> {
        use tantivy::directory::error::LockError;
        if lock.filepath != tantivy::directory::META_LOCK.filepath {
            // The writer's lock: a reader never needs it.
            return Err(LockError::IoError(Arc::new(read_only(&lock.filepath))));
        }
        let path = self.root.join(&lock.filepath);
        match std::fs::File::open(&path) {
            Ok(file) => {
                // Shared: a writer's garbage collection (exclusive) waits until the segments are open.
                file.lock_shared().map_err(|e| LockError::IoError(Arc::new(e)))?;
                Ok(tantivy::directory::DirectoryLock::from(Box::new(file)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(tantivy::directory::DirectoryLock::from(Box::new(()))),
            Err(e) => Err(LockError::IoError(Arc::new(e))),
        }
    }

    fn watch(&self, _callback: tantivy::directory::WatchCallback) -> tantivy::Result<tantivy::directory::WatchHandle> {
        Ok(tantivy::directory::WatchHandle::empty())
    }
}

/// Counts the matching documents by their `in_stock` value, in the search's own pass (the
/// facet tantivy's terms aggregation cannot build over a bool field).
struct StockCounter;

/// Refuses to start a segment past its instant: the search ends with an error.
struct Deadline(std::time::Instant);

struct NoFruit;

impl Collector for Deadline {
    type Fruit = ();
    type Child = NoFruit;

    fn for_segment(&self, _: SegmentOrdinal, _: &SegmentReader) -> tantivy::Result<NoFruit> {
        if std::time::Instant::now() > self.0 {
            return Err(tantivy::TantivyError::InvalidArgument(format!("the search took longer than its budget of {} ms; narrow the query", SEARCH_BUDGET.as_millis())));
        }
        Ok(NoFruit)
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, _: Vec<()>) -> tantivy::Result<()> {
        Ok(())
    }
}

impl SegmentCollector for NoFruit {
    type Fruit = ();

    fn collect(&mut self, _: DocId, _: Score) {}

    fn harvest(self) {}
}

#[derive(Clone, Copy, Default)]
struct StockCounts {
    in_stock: u64,
    out_of_stock: u64,
}

struct StockSegment {
    column: tantivy::columnar::Column<bool>,
    counts: StockCounts,
}

impl Collector for StockCounter {
    type Fruit = StockCounts;
    type Child = StockSegment;

    fn for_segment(&self, _: SegmentOrdinal, segment: &SegmentReader) -> tantivy::Result<StockSegment> {
        Ok(StockSegment { column: segment.fast_fields().bool("in_stock")?, counts: StockCounts::default() })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<StockCounts>) -> tantivy::Result<StockCounts> {
        Ok(fruits.into_iter().fold(StockCounts::default(), |a, b| StockCounts {
            in_stock: a.in_stock + b.in_stock,
            out_of_stock: a.out_of_stock + b.out_of_stock,
        }))
    }
}

impl SegmentCollector for StockSegment {
    type Fruit = StockCounts;

    fn collect(&mut self, doc: DocId, _: Score) {
        match self.column.first(doc) {
            Some(true) => self.counts.in_stock += 1,
            Some(false) => self.counts.out_of_stock += 1,
            None => {}
        }
    }

    fn harvest(self) -> StockCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tantivy::schema::{STORED, Schema, TEXT};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Documents are stored as JSON: what comes back must be the same floats, bit for bit,
        /// or a document read back and written again differs from one that never was.
        #[test]
        fn a_document_read_back_from_the_index_holds_the_very_floats_written(trending in 0.0f64..1e6, views in 0i64..1_000_000, rating in proptest::option::of(1.0f64..5.0)) {
            let dir = tempfile::tempdir().unwrap();
            let index = TantivyIndex::open(dir.path()).unwrap();
            let mut d = ProductDoc::product("p-1");
            (d.trending, d.views, d.rating) = (trending, views, rating);
            d.popularity = d.views as f64 + 100.0 * d.trending;
            let docs = BTreeMap::from([("p-1".to_string(), d.clone())]);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let back = rt.block_on(async {
                index.put(&docs).await.unwrap();
                index.get(&["p-1".to_string()]).await.unwrap()
            });
            let back = &back["p-1"];
            prop_assert_eq!(back.trending.to_bits(), trending.to_bits());
            prop_assert_eq!(back.popularity.to_bits(), d.popularity.to_bits());
            prop_assert_eq!(back.rating.map(f64::to_bits), rating.map(f64::to_bits));
        }
    }

    #[test]
    fn a_search_past_its_budget_ends_with_an_error_and_one_within_it_answers() {
        let mut schema = Schema::builder();
        let title = schema.add_text_field("title", TEXT | STORED);
        let index = tantivy::Index::create_in_ram(schema.build());
        let mut writer: tantivy::IndexWriter = index.writer(15_000_000).unwrap();
        writer.add_document(tantivy::doc!(title => "studio headphones")).unwrap();
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let q = tantivy::query::AllQuery;
        let past = Deadline(std::time::Instant::now() - std::time::Duration::from_millis(1));
        let err = searcher.search(&q, &(Count, past)).unwrap_err();
        assert!(err.to_string().contains("longer than its budget"), "{err}");
        let (n, ()) = searcher.search(&q, &(Count, Deadline(std::time::Instant::now() + SEARCH_BUDGET))).unwrap();
        assert_eq!(n, 1);
    }
}
