//! Asking several range queries in one request: the combination
//! `label_replace(Q0, "canaryd_query", "0", "", "") or label_replace(Q1, ...) or ...`, the
//! split of its answer back into one answer per query, and the memory of combinations
//! Prometheus refused (asked one by one from then on). One HTTP exchange and one evaluation per
//! analysis instead of one per query; every query still gets its own answer or its own error.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::PrometheusSource;
use super::http::{Method, range_params};
use crate::source::{Series, SourceError, check_request, one_by_one};

/// The label a combined query tags each part's series with: the part's index.
pub const BATCH_LABEL: &str = "canaryd_query";
/// At most this many refused combinations are remembered; then the memory starts afresh.
const UNBATCHABLE_MEMORY: usize = 4096;

impl PrometheusSource {
    /// [`MetricSource::query_range_many`](crate::source::MetricSource::query_range_many): the
    /// queries combined into one POST, or one by one when there is one query or Prometheus
    /// refused (or refuses now) the combination.
    pub(super) async fn query_range_batched(
        &self,
        queries: &[String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<Vec<Series>>, SourceError> {
        if queries.len() > 1 {
            for query in queries {
                check_request(&self.name, query, Some((start, end, step)))?;
            }
            let combined = combine(queries);
            let key = {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::hash::DefaultHasher::new();
                combined.hash(&mut hasher);
                hasher.finish()
            };
            if !self.refused(key) {
                let params = range_params(&combined, start, end, step, self.timeout);
                let sent = self
                    .fetch_as(Method::Post, "/api/v1/query_range", &combined, params)
                    .await;
                match sent {
                    Ok(series) => match split(series, queries.len()) {
                        Some(answers) => return Ok(answers),
                        None => self.remember_refused(key),
                    },
                    Err(e) if e.retryable() => {
                        return Err(e.with_query(format!(
                            "{} (and {} more, asked together)",
                            queries[0],
                            queries.len() - 1
                        )));
                    }
                    Err(e) => {
                        tracing::debug!(
                            source = %self.name,
                            queries = queries.len(),
                            error = %e,
                            "Prometheus refused the combined query; asking one by one."
                        );
                        self.remember_refused(key);
                    }
                }
            }
        }
        one_by_one(self, queries, start, end, step).await
    }

    /// Whether Prometheus refused this combination before.
    fn refused(&self, key: u64) -> bool {
        self.unbatchable
            .lock()
            .is_ok_and(|known| known.contains(&key))
    }

    fn remember_refused(&self, key: u64) {
        if let Ok(mut known) = self.unbatchable.lock() {
            if known.len() >= UNBATCHABLE_MEMORY {
                known.clear();
            }
            known.insert(key);
        }
    }
}

/// Several queries as one: each part's series tagged with its index in [`BATCH_LABEL`].
pub fn combine(queries: &[String]) -> String {
    let mut combined = String::with_capacity(queries.iter().map(|q| q.len() + 48).sum());
    for (i, query) in queries.iter().enumerate() {
        if i > 0 {
            combined.push_str(" or ");
        }
        combined.push_str("label_replace(");
        combined.push_str(query.trim());
        // Writing to a String cannot fail.
        let _ = write!(combined, ", \"{BATCH_LABEL}\", \"{i}\", \"\", \"\")");
    }
    combined
}

/// The answer to a [`combine`]d query split back into one answer per part, the tag removed and
/// each part's series in the order Prometheus gave them. `None` if a series has no usable tag.
fn split(series: Vec<Series>, parts: usize) -> Option<Vec<Vec<Series>>> {
    let mut answers: Vec<Vec<Series>> = vec![Vec::new(); parts];
    for mut one in series {
        let index: usize = one.labels.remove(BATCH_LABEL)?.parse().ok()?;
        answers.get_mut(index)?.push(one);
    }
    Some(answers)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::judge::Point;

    #[test]
    fn combined_queries_tag_each_part_and_split_back_in_order() {
        let queries = vec!["a{x=\"1\"}".to_string(), " sum(b) ".to_string()];
        assert_eq!(
            combine(&queries),
            "label_replace(a{x=\"1\"}, \"canaryd_query\", \"0\", \"\", \"\") or \
             label_replace(sum(b), \"canaryd_query\", \"1\", \"\", \"\")"
        );
        let tagged = |tag: &str, name: &str| Series {
            labels: BTreeMap::from([
                ("__name__".to_string(), name.to_string()),
                (BATCH_LABEL.to_string(), tag.to_string()),
            ]),
            points: vec![Point { t: 1.0, v: 2.0 }],
        };
        let answers = split(
            vec![tagged("1", "b1"), tagged("0", "a"), tagged("1", "b2")],
            3,
        )
        .unwrap();
        let names = |i: usize| -> Vec<String> {
            answers[i]
                .iter()
                .map(|s| s.labels["__name__"].clone())
                .collect()
        };
        assert_eq!(names(0), ["a"]);
        assert_eq!(names(1), ["b1", "b2"]);
        assert!(answers[2].is_empty(), "a part with no series answers empty");
        assert!(!answers[1][0].labels.contains_key(BATCH_LABEL));
        // A series without a usable tag makes the answer unusable.
        assert!(split(vec![tagged("7", "x")], 3).is_none());
        assert!(split(vec![tagged("one", "x")], 3).is_none());
        let mut untagged = tagged("0", "x");
        untagged.labels.remove(BATCH_LABEL);
        assert!(split(vec![untagged], 3).is_none());
    }
}
