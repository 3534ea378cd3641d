//! Prometheus's JSON answers (matrix, vector, scalar, or an error) turned into [`Series`] or the
//! [`SourceError`] they amount to. A successful matrix answer is read by the fast reader in
//! `matrix`; everything else, and whatever that reader gives up on, is read through a JSON tree
//! that accepts every valid answer and names exactly what is wrong with the others (where, and
//! what was expected). It must not interpret the numbers: empty answers and bad values are the
//! judge's business.

use std::collections::BTreeMap;

use serde_json::Value;

use super::matrix;
use super::value::parse_value;
use crate::judge::Point;
use crate::source::{Series, SourceError};

/// Turns one HTTP answer from the Prometheus API into series, or the error it reports.
pub(in crate::source) fn parse_answer(
    source_name: &str,
    query: &str,
    status: u16,
    body: &[u8],
) -> Result<Vec<Series>, SourceError> {
    if (200..300).contains(&status)
        && let Some(series) = matrix::read(body)
    {
        return Ok(series);
    }
    parse_answer_tree(source_name, query, status, body)
}

/// [`parse_answer`] through a JSON tree: slower, and names exactly what is wrong.
pub(in crate::source) fn parse_answer_tree(
    source_name: &str,
    query: &str,
    status: u16,
    body: &[u8],
) -> Result<Vec<Series>, SourceError> {
    let malformed = |detail: String| SourceError::Malformed {
        source_name: source_name.to_string(),
        query: query.to_string(),
        detail,
    };
    let ok_status = (200..300).contains(&status);
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let envelope = match parsed {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) if !ok_status => {
            return Err(SourceError::Http {
                source_name: source_name.to_string(),
                query: query.to_string(),
                status,
                error_type: None,
                message: body_excerpt(body),
            });
        }
        Ok(other) => {
            return Err(malformed(format!(
                "expected a JSON object, got {}",
                kind_of(&other)
            )));
        }
        Err(e) => {
            return Err(malformed(format!(
                "not JSON ({e}); the answer began with: {}",
                body_excerpt(body)
            )));
        }
    };
    let answer_status = envelope.get("status").and_then(Value::as_str);
    if !ok_status || answer_status == Some("error") {
        let error_type = envelope
            .get("errorType")
            .and_then(Value::as_str)
            .map(excerpt);
        let message = envelope
            .get("error")
            .and_then(Value::as_str)
            .map(excerpt)
            .unwrap_or_else(|| body_excerpt(body));
        return Err(SourceError::Http {
            source_name: source_name.to_string(),
            query: query.to_string(),
            status,
            error_type,
            message,
        });
    }
    if answer_status != Some("success") {
        return Err(malformed(format!(
            "`status` is {}, expected \"success\" or \"error\"",
            envelope
                .get("status")
                .map_or("missing".to_string(), |v| excerpt(&v.to_string()))
        )));
    }
    let data = envelope
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed("`data` is missing or not an object".into()))?;
    let result_type = data
        .get("resultType")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("`data.resultType` is missing or not a string".into()))?;
    let result = data
        .get("result")
        .ok_or_else(|| malformed("`data.result` is missing".into()))?;
    match result_type {
        "matrix" => {
            let items = as_array(result, "data.result").map_err(malformed)?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = format!("data.result[{i}]");
                    if !item.is_object() {
                        return Err(malformed(format!(
                            "{at} should be an object with `metric` and values, got {}",
                            kind_of(item)
                        )));
                    }
                    let labels = labels_of(item, &at).map_err(malformed)?;
                    let values = item.get("values").ok_or_else(|| {
                        if item.get("histograms").is_some() {
                            malformed(format!(
                                "{at} holds native histograms, which checks cannot use; \
                                     query a histogram_quantile or a rate instead"
                            ))
                        } else {
                            malformed(format!("{at}.values is missing"))
                        }
                    })?;
                    let values = as_array(values, &format!("{at}.values")).map_err(malformed)?;
                    let points = values
                        .iter()
                        .enumerate()
                        .map(|(j, v)| point_of(v, &format!("{at}.values[{j}]")))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(malformed)?;
                    Ok(Series { labels, points })
                })
                .collect()
        }
        "vector" => {
            let items = as_array(result, "data.result").map_err(malformed)?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = format!("data.result[{i}]");
                    if !item.is_object() {
                        return Err(malformed(format!(
                            "{at} should be an object with `metric` and values, got {}",
                            kind_of(item)
                        )));
                    }
                    let labels = labels_of(item, &at).map_err(malformed)?;
                    let value = item.get("value").ok_or_else(|| {
                        if item.get("histogram").is_some() {
                            malformed(format!(
                                "{at} is a native histogram, which checks cannot use"
                            ))
                        } else {
                            malformed(format!("{at}.value is missing"))
                        }
                    })?;
                    let point = point_of(value, &format!("{at}.value")).map_err(malformed)?;
                    Ok(Series {
                        labels,
                        points: vec![point],
                    })
                })
                .collect()
        }
        "scalar" => {
            let point = point_of(result, "data.result").map_err(malformed)?;
            Ok(vec![Series {
                labels: BTreeMap::new(),
                points: vec![point],
            }])
        }
        other => Err(SourceError::UnsupportedResult {
            source_name: source_name.to_string(),
            query: query.to_string(),
            result_type: excerpt(other),
        }),
    }
}

fn as_array<'v>(value: &'v Value, at: &str) -> Result<&'v Vec<Value>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("{at} should be an array, got {}", kind_of(value)))
}

fn labels_of(item: &Value, at: &str) -> Result<BTreeMap<String, String>, String> {
    let metric = match item.get("metric") {
        None => return Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(format!(
                "{at}.metric should be an object of labels, got {}",
                kind_of(other)
            ));
        }
    };
    metric
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(format!(
                "{at}.metric.{} should be a string, got {}",
                excerpt(k),
                kind_of(other)
            )),
        })
        .collect()
}

/// One `[<unix seconds>, "<value>"]` pair.
fn point_of(pair: &Value, at: &str) -> Result<Point, String> {
    let items = match pair.as_array() {
        Some(items) if items.len() == 2 => items,
        _ => {
            return Err(format!(
                "{at} should be a [time, \"value\"] pair, got {}",
                excerpt(&pair.to_string())
            ));
        }
    };
    let t = items[0].as_f64().ok_or_else(|| {
        format!(
            "{at}: the time {} is not a number",
            excerpt(&items[0].to_string())
        )
    })?;
    let text = items[1].as_str().ok_or_else(|| {
        format!(
            "{at}: the value {} is not a string",
            excerpt(&items[1].to_string())
        )
    })?;
    let v = parse_value(text)
        .ok_or_else(|| format!("{at}: the value {:?} is not a number", excerpt(text)))?;
    Ok(Point { t, v })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_string()
    } else {
        excerpt(text)
    }
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> Result<Vec<Series>, SourceError> {
        parse_answer("prom", "q", status, body.as_bytes())
    }

    fn malformed_detail(status: u16, body: &str) -> String {
        match parse(status, body) {
            Err(SourceError::Malformed { detail, .. }) => detail,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    /// Debug text of series: equal for equal labels and points, NaN included.
    fn text(series: &[Series]) -> String {
        format!("{series:?}")
    }

    #[test]
    fn the_fast_reading_of_a_matrix_equals_the_tree_reading() {
        let body = r#"{"status":"success","warnings":["w"],"data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"m","track":"canary"},"values":[[1700000000,"1.5"],[1700000060.5,"NaN"],[1700000120,"+Inf"],[1700000180,"-2e-3"]]},
            {"metric":{},"values":[]},
            {"values":[[1,"-Inf"]]}]}}"#;
        let fast = matrix::read(body.as_bytes()).expect("the fast path reads it");
        let tree = parse_answer_tree("prom", "q", 200, body.as_bytes()).unwrap();
        assert_eq!(text(&fast), text(&tree));
        assert_eq!(fast.len(), 3);
        assert_eq!(fast[0].labels["track"], "canary");
        assert!(fast[0].points[1].v.is_nan());
        assert_eq!(fast[0].points[2].v, f64::INFINITY);
        assert_eq!(fast[0].points[1].t, 1_700_000_060.5);
    }

    #[test]
    fn answers_the_fast_path_cannot_read_are_left_to_the_tree_reading() {
        for body in [
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"abc"]]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1},"values":[]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"\u0031"]]}]}}"#,
            "not json",
        ] {
            assert!(matrix::read(body.as_bytes()).is_none(), "{body}");
        }
        // An escaped value is still read, by the tree reading.
        let escaped = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"\u0031"]]}]}}"#;
        assert_eq!(parse(200, escaped).unwrap()[0].points[0].v, 1.0);
        // A bad value is named.
        let bad = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"abc"]]}]}}"#;
        assert!(malformed_detail(200, bad).contains("data.result[0].values[0]"));
    }

    #[test]
    fn matrix_vector_and_scalar_answers_become_series() {
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"lat","track":"canary"},"values":[[10,"1"],[20.5,"NaN"],[30,"+Inf"]]}]}}"#;
        let series = parse(200, matrix).unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].labels["track"], "canary");
        assert_eq!(series[0].points[0], Point { t: 10.0, v: 1.0 });
        assert_eq!(series[0].points[1].t, 20.5);
        assert!(series[0].points[1].v.is_nan());
        assert_eq!(series[0].points[2].v, f64::INFINITY);

        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1"},"value":[5,"2"]},{"metric":{"a":"2"},"value":[5,"-Inf"]}]}}"#;
        let series = parse(200, vector).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(
            series[1].points,
            vec![Point {
                t: 5.0,
                v: f64::NEG_INFINITY
            }]
        );

        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[7,"42"]}}"#;
        let series = parse(200, scalar).unwrap();
        assert_eq!(series.len(), 1);
        assert!(series[0].labels.is_empty());
        assert_eq!(series[0].points, vec![Point { t: 7.0, v: 42.0 }]);

        let empty = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(parse(200, empty).unwrap(), vec![]);
    }

    #[test]
    fn error_answers_carry_prometheus_error_type_and_message() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
        match parse(400, body) {
            Err(e @ SourceError::Http { .. }) => {
                assert!(!e.retryable());
                assert_eq!(
                    e.to_string(),
                    "source `prom`: query `q` failed with HTTP 400 (bad_data): parse error at char 5"
                );
            }
            other => panic!("expected Http, got {other:?}"),
        }
        match parse(503, "upstream down") {
            Err(e @ SourceError::Http { status: 503, .. }) => {
                assert!(e.retryable());
                assert!(e.to_string().contains("upstream down"), "{e}");
            }
            other => panic!("expected Http 503, got {other:?}"),
        }
    }

    #[test]
    fn malformed_answers_say_what_was_wrong_and_where() {
        let cases = [
            ("{not json", "not JSON"),
            ("[1,2]", "expected a JSON object, got an array"),
            (r#"{"status":"success"}"#, "`data` is missing"),
            (r#"{"status":"weird","data":{}}"#, "`status` is \"weird\""),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":{}}}"#,
                "data.result should be an array, got an object",
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}"#,
                "data.result[0].value: the value \"abc\" is not a number",
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,2]}]}}"#,
                "data.result[0].value: the value 2 is not a string",
            ),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2]]}]}}"#,
                "data.result[0].values[1] should be a [time, \"value\"] pair",
            ),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1},"values":[]}]}}"#,
                "data.result[0].metric.a should be a string, got a number",
            ),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"histograms":[]}]}}"#,
                "native histograms",
            ),
        ];
        for (body, want) in cases {
            let detail = malformed_detail(200, body);
            assert!(detail.contains(want), "{body}: {detail}");
        }
    }

    #[test]
    fn string_results_are_refused_clearly() {
        let body = r#"{"status":"success","data":{"resultType":"string","result":[1,"hello"]}}"#;
        match parse(200, body) {
            Err(e @ SourceError::UnsupportedResult { .. }) => {
                assert!(e.to_string().contains("`string`"), "{e}");
                assert!(!e.retryable());
            }
            other => panic!("expected UnsupportedResult, got {other:?}"),
        }
    }
}
