//! Highlights of a hit, computed over its stored text for both backends: every word the
//! query matches (exactly or within `fuzziness: AUTO` edits, the query's own rule) wrapped
//! in `<em>`; the whole title, and one fragment of about 150 characters of the description.
//! A highlight is HTML: the vendor's text is escaped (`<`, `>`, `&`, `"`, `'`), and the only
//! markup in it is the `<em>` markers, so a page may render it as is.
//!
//! Elasticsearch could do this, but its highlighter rewrites each fuzzy term into a
//! Levenshtein automaton per document: on a 2,000-product index it took a query from
//! 13 ms to about 190 ms (docs/PERFORMANCE.md). Doing it here costs microseconds and gives
//! both backends the same answer.

use std::collections::BTreeMap;

use super::doc::ProductDoc;
use super::query::fuzziness;

/// `title` and `description` highlights of `d` for query tokens `toks` (none without
/// tokens, or without a matching word).
pub fn highlights(d: &ProductDoc, toks: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut hl = BTreeMap::new();
    if toks.is_empty() {
        return hl;
    }
    if let Some(t) = highlight(&d.title, toks, None) {
        hl.insert("title".to_string(), vec![t]);
    }
    if let Some(t) = highlight(&d.description, toks, Some(150)) {
        hl.insert("description".to_string(), vec![t]);
    }
    hl
}

/// True when indexed word `w` matches query token `t` under `fuzziness: AUTO`.
pub fn fuzzy_match(w: &str, t: &str) -> bool {
    let w = w.to_lowercase();
    w == t || (fuzziness(t) > 0 && strsim::damerau_levenshtein(&w, t) <= usize::from(fuzziness(t)))
}

/// `text` with `<em>` around words matching a token; with `fragment`, only about that many
/// characters around the first match. `None` when nothing matches.
pub fn highlight(text: &str, toks: &[String], fragment: Option<usize>) -> Option<String> {
    let mut words: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    let hits: Vec<(usize, usize)> = words.into_iter().filter(|(s, e)| toks.iter().any(|t| fuzzy_match(&text[*s..*e], t))).collect();
    let first = hits.first()?;
    let (from, to) = match fragment {
        None => (0, text.len()),
        Some(n) => {
            let from = text[..first.0].char_indices().rev().nth(n / 3).map_or(0, |(i, _)| i);
            let to = text[first.0..].char_indices().nth(n).map_or(text.len(), |(i, _)| first.0 + i);
            (from, to)
        }
    };
    let mut out = String::new();
    let mut at = from;
    for (s, e) in hits.into_iter().filter(|(s, e)| *s >= from && *e <= to) {
        escape_into(&mut out, &text[at..s]);
        out.push_str("<em>");
        escape_into(&mut out, &text[s..e]);
        out.push_str("</em>");
        at = e;
    }
    escape_into(&mut out, &text[at..to]);
    Some(out)
}

/// Appends `text` to `out` escaped for HTML text and attribute values.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlights_mark_fuzzy_matches() {
        let toks = vec!["nordlciht".to_string()];
        assert_eq!(highlight("Nordlicht Pro headphones", &toks, None).unwrap(), "<em>Nordlicht</em> Pro headphones");
        assert!(highlight("Acme kettle", &toks, None).is_none());
    }

    #[test]
    fn a_title_with_markup_is_escaped_and_only_the_markers_are_html() {
        let toks = vec!["kettle".to_string()];
        let t = highlight("<img src=x onerror=alert(1)> Kettle & \"pot\" <script>alert('x')</script>", &toks, None).unwrap();
        assert_eq!(t, "&lt;img src=x onerror=alert(1)&gt; <em>Kettle</em> &amp; &quot;pot&quot; &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
        let d = highlight(&format!("{} <b>kettle</b>", "x".repeat(400)), &toks, Some(150)).unwrap();
        assert!(d.ends_with("&lt;b&gt;<em>kettle</em>&lt;/b&gt;"), "{d}");
        assert_eq!(d.matches('<').count(), 2, "only <em> and </em> are markup: {d}");
    }

    proptest::proptest! {
        #[test]
        fn no_text_puts_markup_other_than_the_markers_into_a_highlight(text in "[a-z<>&\"' ]{0,60}", tok in "[a-z]{1,6}") {
            if let Some(h) = highlight(&format!("{text} {tok}"), &[tok.clone()], None) {
                let stripped = h.replace("<em>", "").replace("</em>", "");
                proptest::prop_assert!(!stripped.contains('<') && !stripped.contains('>') && !stripped.contains('"'), "{}", h);
            }
        }
    }
}
