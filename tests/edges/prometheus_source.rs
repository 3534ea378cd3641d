//! The Prometheus source against a real Prometheus (backfilled with promtool, or scraping a target
//! this test serves), and against small local servers that misbehave on purpose: silent, failing,
//! or answering malformed JSON. Needs the Debian package `prometheus`; without it these tests fail
//! and say how to install it. The tests that only read share one Prometheus with the history
//! backfilled (the scrape test adds its own job to it); those that stop it or count the
//! requests it answered start their own.

use crate::prometheus_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canaryd::judge::Point;
use canaryd::source::{MetricSource, PrometheusConfig, PrometheusSource, Series, SourceError};
use chrono::{DateTime, Utc};
use prometheus_support::Prometheus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The first backfilled sample (2023-11-14T22:13:20Z); samples follow every minute for 30 minutes.
const T0: i64 = 1_700_000_000;
const MINUTES: i64 = 30;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

fn baseline_value(i: i64) -> f64 {
    0.100 + 0.001 * i as f64
}

fn canary_value(i: i64) -> f64 {
    0.200 + 0.002 * i as f64
}

/// The OpenMetrics text backfilled into every real Prometheus here.
fn history() -> String {
    let mut text =
        String::from("# HELP app_latency_seconds Latency.\n# TYPE app_latency_seconds gauge\n");
    for (track, value) in [
        ("baseline", baseline_value as fn(i64) -> f64),
        ("canary", canary_value),
    ] {
        for i in 0..=MINUTES {
            text.push_str(&format!(
                "app_latency_seconds{{track=\"{track}\"}} {} {}\n",
                value(i),
                T0 + 60 * i
            ));
        }
    }
    text.push_str(
        "# HELP app_odd_values Values that are not finite.\n# TYPE app_odd_values gauge\n",
    );
    for (i, v) in ["1", "NaN", "+Inf", "-Inf", "2"].iter().enumerate() {
        text.push_str(&format!(
            "app_odd_values{{track=\"canary\"}} {v} {}\n",
            T0 + 60 * i as i64
        ));
    }
    text
}

/// The Prometheus with the history that the tests of this binary share: they only read it.
fn shared_prometheus() -> &'static Prometheus {
    prometheus_support::shared(|| Prometheus::builder().backfill(history()))
}

/// A Prometheus with the history of the test's own, for the tests that stop it or count the
/// requests it answered (other tests' queries would add to a shared one's count).
fn backfilled_prometheus() -> Prometheus {
    Prometheus::builder().backfill(history()).start()
}

fn source(url: &str, timeout: Duration, retries: u32) -> PrometheusSource {
    let config = PrometheusConfig {
        timeout,
        retries,
        ..PrometheusConfig::new(url)
    };
    PrometheusSource::new("prom-test", &config)
        .unwrap()
        .with_backoff(Duration::from_millis(20))
}

fn by_track(series: &[Series]) -> BTreeMap<String, Vec<Point>> {
    series
        .iter()
        .map(|s| (s.labels["track"].clone(), s.points.clone()))
        .collect()
}

#[tokio::test]
async fn range_query_returns_the_backfilled_points_of_baseline_and_canary() {
    let prometheus = shared_prometheus();
    let source = source(&prometheus.url(), Duration::from_secs(5), 0);

    let series = source
        .query_range(
            "app_latency_seconds",
            at(T0),
            at(T0 + 60 * MINUTES),
            Duration::from_secs(60),
        )
        .await
        .unwrap();

    assert_eq!(series.len(), 2);
    assert_eq!(series[0].labels["__name__"], "app_latency_seconds");
    let tracks = by_track(&series);
    for (track, value) in [
        ("baseline", baseline_value as fn(i64) -> f64),
        ("canary", canary_value),
    ] {
        let want: Vec<Point> = (0..=MINUTES)
            .map(|i| Point {
                t: (T0 + 60 * i) as f64,
                v: value(i),
            })
            .collect();
        assert_eq!(tracks[track], want, "{track}");
    }

    // A narrower window with a coarser step: Prometheus evaluates at start + k * step.
    let series = source
        .query_range(
            "app_latency_seconds{track=\"canary\"}",
            at(T0 + 600),
            at(T0 + 1200),
            Duration::from_secs(300),
        )
        .await
        .unwrap();
    assert_eq!(series.len(), 1);
    let times: Vec<f64> = series[0].points.iter().map(|p| p.t).collect();
    assert_eq!(
        times,
        vec![(T0 + 600) as f64, (T0 + 900) as f64, (T0 + 1200) as f64]
    );
    assert_eq!(series[0].points[1].v, canary_value(15));
}

#[tokio::test]
async fn instant_query_returns_one_point_per_series() {
    let prometheus = shared_prometheus();
    let source = source(&prometheus.url(), Duration::from_secs(5), 0);

    let series = source
        .query_instant("app_latency_seconds", at(T0 + 600))
        .await
        .unwrap();

    let tracks = by_track(&series);
    assert_eq!(tracks.len(), 2);
    assert_eq!(
        tracks["baseline"],
        vec![Point {
            t: (T0 + 600) as f64,
            v: baseline_value(10)
        }]
    );
    assert_eq!(
        tracks["canary"],
        vec![Point {
            t: (T0 + 600) as f64,
            v: canary_value(10)
        }]
    );
}

#[tokio::test]
async fn scalar_answers_are_one_unlabelled_series_and_strings_are_refused() {
    let prometheus = shared_prometheus();
    let source = source(&prometheus.url(), Duration::from_secs(5), 0);

    let series = source
        .query_instant("scalar(sum(app_latency_seconds))", at(T0 + 600))
        .await
        .unwrap();
    assert_eq!(series.len(), 1);
    assert!(series[0].labels.is_empty());
    assert_eq!(series[0].points.len(), 1);
    assert_eq!(series[0].points[0].t, (T0 + 600) as f64);
    let want = baseline_value(10) + canary_value(10);
    assert!(
        (series[0].points[0].v - want).abs() < 1e-9,
        "{:?}",
        series[0].points
    );

    let e = source.query_instant("\"hello\"", at(T0)).await.unwrap_err();
    assert!(matches!(e, SourceError::UnsupportedResult { .. }), "{e:?}");
    let message = e.to_string();
    assert!(message.contains("`string`"), "{message}");
    assert!(message.contains("\"hello\""), "{message}");
    assert!(!e.retryable());
}

#[tokio::test]
async fn nan_and_infinite_values_come_through_as_such() {
    let prometheus = shared_prometheus();
    let source = source(&prometheus.url(), Duration::from_secs(5), 0);

    let series = source
        .query_range(
            "app_odd_values",
            at(T0),
            at(T0 + 240),
            Duration::from_secs(60),
        )
        .await
        .unwrap();

    assert_eq!(series.len(), 1);
    let values: Vec<f64> = series[0].points.iter().map(|p| p.v).collect();
    assert_eq!(values.len(), 5, "{values:?}");
    assert_eq!(values[0], 1.0);
    assert!(values[1].is_nan(), "{values:?}");
    assert_eq!(values[2], f64::INFINITY);
    assert_eq!(values[3], f64::NEG_INFINITY);
    assert_eq!(values[4], 2.0);
}

#[tokio::test]
async fn an_empty_result_is_ok_and_empty() {
    let prometheus = shared_prometheus();
    let source = source(&prometheus.url(), Duration::from_secs(5), 0);

    for query in ["no_such_metric", "app_latency_seconds{track=\"nope\"}"] {
        let range = source
            .query_range(query, at(T0), at(T0 + 600), Duration::from_secs(60))
            .await;
        assert_eq!(range, Ok(vec![]), "{query}");
        let instant = source.query_instant(query, at(T0 + 600)).await;
        assert_eq!(instant, Ok(vec![]), "{query}");
    }
    // Outside the history there is no data either.
    let before = source
        .query_range(
            "app_latency_seconds",
            at(T0 - 7200),
            at(T0 - 3600),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(before, Ok(vec![]));
}

#[tokio::test]
async fn a_promql_syntax_error_surfaces_prometheus_message_and_is_not_retried() {
    let prometheus = shared_prometheus();
    let source = source(&prometheus.url(), Duration::from_secs(5), 3);
    let query = "sum(app_latency_seconds";

    let e = source
        .query_range(query, at(T0), at(T0 + 600), Duration::from_secs(60))
        .await
        .unwrap_err();

    let SourceError::Http {
        status,
        error_type,
        message,
        ..
    } = &e
    else {
        panic!("expected an HTTP error, got {e:?}");
    };
    assert_eq!(*status, 400);
    assert_eq!(error_type.as_deref(), Some("bad_data"));
    assert!(message.contains("parse error"), "{message}");
    assert!(!e.retryable());
    let text = e.to_string();
    assert!(text.contains("prom-test"), "{text}");
    assert!(text.contains(query), "{text}");
}

#[tokio::test]
async fn a_stopped_prometheus_gives_a_retryable_connection_error_and_recovers_after_restart() {
    let mut prometheus = backfilled_prometheus();
    let timeout = Duration::from_secs(3);
    let source = source(&prometheus.url(), timeout, 1);
    let query = "app_latency_seconds{track=\"canary\"}";
    assert_eq!(
        source
            .query_instant(query, at(T0 + 60))
            .await
            .unwrap()
            .len(),
        1
    );

    prometheus.stop();
    let started = Instant::now();
    let e = source.query_instant(query, at(T0 + 60)).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, SourceError::Connect { .. }), "{e:?}");
    assert!(e.retryable(), "{e}");
    assert!(e.to_string().contains(&prometheus.url()), "{e}");
    assert!(
        took < timeout,
        "a refused connection should fail fast, not wait for the timeout: {took:?}"
    );

    prometheus.restart();
    let series = source.query_instant(query, at(T0 + 60)).await.unwrap();
    assert_eq!(series.len(), 1, "the same data is there after the restart");
    assert_eq!(series[0].points[0].v, canary_value(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_targets_are_queryable() {
    let target = FakeServer::start(|_| {
        (
            200,
            "# TYPE app_queue_depth gauge\napp_queue_depth{track=\"canary\"} 7\n".to_string(),
        )
    })
    .await;
    let prometheus = shared_prometheus();
    let _scraped = prometheus.add_target("app", &target.addr.to_string());
    assert!(
        prometheus.wait_for_data("app_queue_depth", Duration::from_secs(20)),
        "no scrape landed within 20 s; Prometheus log:\n{}",
        prometheus.log_tail()
    );

    let source = source(&prometheus.url(), Duration::from_secs(5), 0);
    let series = source
        .query_instant("app_queue_depth", Utc::now())
        .await
        .unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].labels["job"], "app");
    assert_eq!(series[0].labels["track"], "canary");
    assert_eq!(series[0].points[0].v, 7.0);
    assert!(
        target
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /metrics"))
    );
}

// ---- Local servers that misbehave on purpose ----

/// An HTTP server on 127.0.0.1 answering every request with `respond(request head)` and recording
/// the request heads. It lives as long as the test's runtime.
struct FakeServer {
    addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeServer {
    async fn start(respond: impl Fn(&str) -> (u16, String) + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let respond = Arc::new(respond);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = seen.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut stream).await else {
                        return;
                    };
                    seen.lock().unwrap().push(head.clone());
                    let (status, body) = respond(&head);
                    let answer = format!(
                        "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        FakeServer { addr, requests }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads a request head (up to the blank line), bounded to 64 KiB and 5 s.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") && buffer.len() < 65536 {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buffer).into_owned())
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_is_retried_a_bounded_number_of_times() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let held = accepted.clone();
    tokio::spawn(async move {
        // Accept and hold every connection open without a word.
        while let Ok((stream, _)) = listener.accept().await {
            held.lock().unwrap().push(stream);
        }
    });
    let timeout = Duration::from_millis(300);
    let source = source(&format!("http://{addr}"), timeout, 2);

    let started = Instant::now();
    let e = source.query_instant("up", at(T0)).await.unwrap_err();
    let took = started.elapsed();

    match &e {
        SourceError::Timeout { after, query, .. } => {
            assert_eq!(*after, timeout);
            assert_eq!(query, "up");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(e.retryable());
    assert!(e.to_string().contains("timed out after 300 ms"), "{e}");
    assert_eq!(
        accepted.lock().unwrap().len(),
        3,
        "one attempt and two retries"
    );
    assert!(
        took >= timeout * 3,
        "each attempt waited for its timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "bounded: {took:?}");
}

#[tokio::test]
async fn malformed_answers_name_the_source_the_query_and_what_was_wrong_and_are_not_retried() {
    let cases: [(&str, &str, &str); 5] = [
        ("bad json", r#"{"status":"success","data":"#, "not JSON"),
        (
            "wrong resultType",
            r#"{"status":"success","data":{"resultType":"table","result":[]}}"#,
            "returned a `table` result",
        ),
        (
            "a matrix that is not an array",
            r#"{"status":"success","data":{"resultType":"matrix","result":[1,"2"]}}"#,
            "data.result[0] should be an object",
        ),
        (
            "value abc",
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"track":"canary"},"value":[1700000000,"abc"]}]}}"#,
            "data.result[0].value: the value \"abc\" is not a number",
        ),
        (
            "html from a proxy",
            "<html><body>Welcome</body></html>",
            "the answer began with: <html>",
        ),
    ];
    for (what, body, want) in cases {
        let body = body.to_string();
        let server = FakeServer::start(move |_| (200, body.clone())).await;
        let source = source(&server.url(), Duration::from_secs(5), 3);
        let query = "rate(app_requests_total{track=\"canary\"}[5m])";

        let e = source.query_instant(query, at(T0)).await.unwrap_err();

        let text = e.to_string();
        assert!(text.contains("source `prom-test`"), "{what}: {text}");
        assert!(text.contains(query), "{what}: {text}");
        assert!(text.contains(want), "{what}: {text}");
        assert!(!e.retryable(), "{what}: {e:?}");
        assert_eq!(server.requests().len(), 1, "{what}: not retried");
    }
}

#[tokio::test]
async fn server_errors_and_throttling_are_retried_then_reported_with_prometheus_message() {
    let cases = [
        (
            503,
            r#"{"status":"error","errorType":"unavailable","error":"too many queries"}"#,
            true,
            3,
        ),
        (429, "slow down", true, 3),
        (
            500,
            r#"{"status":"error","errorType":"internal","error":"disk broke"}"#,
            true,
            3,
        ),
        (
            422,
            r#"{"status":"error","errorType":"execution","error":"many-to-many matching"}"#,
            false,
            1,
        ),
        (404, "404 page not found", false, 1),
    ];
    for (status, body, retryable, requests) in cases {
        let answer = body.to_string();
        let server = FakeServer::start(move |_| (status, answer.clone())).await;
        let source = source(&server.url(), Duration::from_secs(5), 2);

        let e = source.query_instant("up", at(T0)).await.unwrap_err();

        match &e {
            SourceError::Http { status: got, .. } => assert_eq!(*got, status),
            other => panic!("HTTP {status}: expected an HTTP error, got {other:?}"),
        }
        assert_eq!(e.retryable(), retryable, "HTTP {status}");
        assert_eq!(server.requests().len(), requests, "HTTP {status}");
        let message = e.to_string();
        let expected = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.to_string());
        assert!(message.contains(&expected), "HTTP {status}: {message}");
    }
}

#[tokio::test]
async fn extra_headers_and_the_bearer_token_from_a_file_are_sent() {
    let ok = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.to_string();
    let server = FakeServer::start(move |_| (200, ok.clone())).await;
    let dir = std::env::temp_dir().join(format!("canaryd-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let config = PrometheusConfig {
        headers: BTreeMap::from([("X-Scope-OrgID".to_string(), "team-a".to_string())]),
        bearer_token_file: Some(token_file.clone()),
        ..PrometheusConfig::new(server.url())
    };
    let source = PrometheusSource::new("prom-test", &config).unwrap();

    let series = source
        .query_range("up", at(T0), at(T0 + 600), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(series, vec![]);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let head = requests[0].to_ascii_lowercase();
    assert!(
        head.starts_with(
            "get /api/v1/query_range?query=up&start=1700000000&end=1700000600&step=60&timeout=10 "
        ),
        "{head}"
    );
    assert!(
        head.contains("\r\nauthorization: bearer s3cret-token\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nx-scope-orgid: team-a\r\n"), "{head}");

    // A rotated token is picked up on the next request.
    std::fs::write(&token_file, "rotated").unwrap();
    source.query_instant("up", at(T0)).await.unwrap();
    assert!(server.requests()[1].contains("Bearer rotated"));

    // A missing token file is a settings problem, not worth retrying, and nothing is sent.
    std::fs::remove_dir_all(&dir).unwrap();
    let e = source.query_instant("up", at(T0)).await.unwrap_err();
    assert!(matches!(e, SourceError::Config { .. }), "{e:?}");
    assert!(!e.retryable());
    assert!(e.to_string().contains("bearer_token_file"), "{e}");
    assert!(
        !format!("{e:?}").contains("rotated"),
        "the token never shows in errors"
    );
    assert_eq!(server.requests().len(), 2);
}

/// Basic auth from `username` and `password_file` (instead of `user:password@` in the URL):
/// sent on every request, a rotated password picked up, and the password masked in an error
/// whose answer quotes it.
#[tokio::test]
async fn basic_auth_from_a_password_file_is_sent_and_never_shown() {
    let server = FakeServer::start(move |head: &str| {
        let auth = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            .unwrap_or("")
            .to_string();
        if head.contains("query=fail") {
            (500, format!("proxy refused the request ({auth})"))
        } else {
            let ok = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
            (200, ok.to_string())
        }
    })
    .await;
    let dir = std::env::temp_dir().join(format!("canaryd-basic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("pass");
    std::fs::write(&password_file, "pa55word-one\n").unwrap();
    let config = PrometheusConfig {
        username: Some("canaryd".to_string()),
        password_file: Some(password_file.clone()),
        retries: 0,
        ..PrometheusConfig::new(server.url())
    };
    let source = PrometheusSource::new("prom-test", &config).unwrap();
    source.query_instant("up", at(T0)).await.unwrap();
    // base64("canaryd:pa55word-one")
    assert!(
        server.requests()[0].contains("Basic Y2FuYXJ5ZDpwYTU1d29yZC1vbmU="),
        "{}",
        server.requests()[0]
    );
    std::fs::write(&password_file, "pa55word-two").unwrap();
    let e = source.query_instant("fail", at(T0)).await.unwrap_err();
    assert!(server.requests()[1].contains("Basic Y2FuYXJ5ZDpwYTU1d29yZC10d28="));
    let shown = format!("{e} {e:?}");
    assert!(shown.contains("proxy refused"), "{shown}");
    assert!(!shown.contains("Y2FuYXJ5ZDpwYTU1d29yZC10d28="), "{shown}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// How many `query_range` requests a real Prometheus has answered, from its own `/metrics`.
async fn range_requests(prometheus: &Prometheus) -> f64 {
    let text = reqwest::get(format!("{}/metrics", prometheus.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("prometheus_http_requests_total{")
                && l.contains("handler=\"/api/v1/query_range\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

type Span = (DateTime<Utc>, DateTime<Utc>, Duration);

/// `queries` asked together: the answers, and how many range requests Prometheus counted.
async fn ask_together(
    prometheus: &Prometheus,
    source: &PrometheusSource,
    queries: &[String],
    (start, end, step): Span,
) -> (Vec<Vec<Series>>, f64) {
    let before = range_requests(prometheus).await;
    let answers = source
        .query_range_many(queries, start, end, step)
        .await
        .unwrap();
    (answers, range_requests(prometheus).await - before)
}

/// `queries` asked one at a time.
async fn ask_alone(
    source: &PrometheusSource,
    queries: &[String],
    (start, end, step): Span,
) -> Vec<Vec<Series>> {
    let mut alone = Vec::new();
    for query in queries {
        alone.push(source.query_range(query, start, end, step).await.unwrap());
    }
    alone
}

/// Debug text of answers: equal for equal labels and points (NaN included).
fn text<T: std::fmt::Debug>(answers: &T) -> String {
    format!("{answers:?}")
}

#[tokio::test]
async fn queries_asked_together_are_one_request_and_answer_each_as_if_asked_alone() {
    let prometheus = backfilled_prometheus();
    let source = source(&prometheus.url(), Duration::from_secs(5), 0);
    let queries: Vec<String> = [
        "app_latency_seconds{track=\"baseline\"}",
        "app_latency_seconds{track=\"canary\"} * 2",
        "app_latency_seconds",
        "app_latency_seconds{track=\"nobody\"}",
        "app_odd_values",
        "sum(rate(app_latency_seconds[5m]))",
    ]
    .map(String::from)
    .to_vec();
    let span = (at(T0), at(T0 + 60 * MINUTES), Duration::from_secs(60));

    let (together, requests) = ask_together(&prometheus, &source, &queries, span).await;
    assert_eq!(requests, 1.0, "six queries, one request");

    let alone = ask_alone(&source, &queries, span).await;
    assert_eq!(text(&together), text(&alone));
    assert_eq!(together[2].len(), 2, "a query with two series keeps both");
    assert!(together[3].is_empty(), "an empty answer stays empty");
    assert!(together[4][0].points.iter().any(|p| p.v.is_nan()));
    assert!(
        together
            .iter()
            .flatten()
            .all(|s| !s.labels.contains_key("canaryd_query")),
        "the batch's tag is not visible"
    );
}

#[tokio::test]
async fn a_scalar_query_cannot_be_combined_so_the_batch_is_asked_one_by_one_from_then_on() {
    let prometheus = backfilled_prometheus();
    let source = source(&prometheus.url(), Duration::from_secs(5), 3);
    let queries: Vec<String> = [
        "scalar(sum(app_latency_seconds))",
        "app_latency_seconds{track=\"canary\"}",
    ]
    .map(String::from)
    .to_vec();
    let span = (at(T0), at(T0 + 600), Duration::from_secs(60));

    let (together, requests) = ask_together(&prometheus, &source, &queries, span).await;
    assert_eq!(requests, 3.0, "the refused combination, then each query");
    let alone = ask_alone(&source, &queries, span).await;
    assert_eq!(text(&together), text(&alone));
    assert_eq!(together[0].len(), 1, "the scalar is one unlabelled series");

    let (_, requests) = ask_together(&prometheus, &source, &queries, span).await;
    assert_eq!(requests, 2.0, "a refused combination is not tried again");
}

#[tokio::test]
async fn a_broken_query_among_others_fails_with_its_own_error() {
    let prometheus = shared_prometheus();
    let source = source(&prometheus.url(), Duration::from_secs(5), 3);
    let queries: Vec<String> = ["app_latency_seconds", "sum(app_latency_seconds"]
        .map(String::from)
        .to_vec();

    let e = source
        .query_range_many(&queries, at(T0), at(T0 + 600), Duration::from_secs(60))
        .await
        .unwrap_err();

    let SourceError::Http {
        status,
        query,
        message,
        ..
    } = &e
    else {
        panic!("expected an HTTP error, got {e:?}");
    };
    assert_eq!(*status, 400);
    assert_eq!(
        query, "sum(app_latency_seconds",
        "the error names the broken query"
    );
    assert!(message.contains("parse error"), "{message}");
}

#[tokio::test]
async fn a_stopped_prometheus_fails_a_batch_as_retryable_naming_its_queries() {
    let mut prometheus = backfilled_prometheus();
    let source = source(&prometheus.url(), Duration::from_secs(3), 1);
    prometheus.stop();
    let queries: Vec<String> = ["app_latency_seconds", "up"].map(String::from).to_vec();

    let e = source
        .query_range_many(&queries, at(T0), at(T0 + 600), Duration::from_secs(60))
        .await
        .unwrap_err();

    assert!(e.retryable(), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("app_latency_seconds (and 1 more, asked together)"),
        "{text}"
    );
}

#[tokio::test]
async fn a_plain_http_source_redirected_to_https_says_to_configure_https() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            if read_head(&mut stream).await.is_some() {
                let answer = "HTTP/1.1 301 Moved Permanently\r\nLocation: \
                              https://prometheus.example/api/v1/query_range\r\n\
                              Content-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        }
    });
    let source = source(&format!("http://{addr}"), Duration::from_secs(3), 0);

    let e = source
        .query_range("up", at(T0), at(T0 + 600), Duration::from_secs(60))
        .await
        .unwrap_err();

    let text = e.to_string();
    assert!(
        text.contains("redirected to https://prometheus.example/api/v1/query_range")
            && text.contains("set the source's url to https://"),
        "{text}"
    );
}

#[tokio::test]
async fn a_combination_too_long_for_a_url_is_still_one_request() {
    let prometheus = backfilled_prometheus();
    let source = source(&prometheus.url(), Duration::from_secs(5), 0);
    // 120 queries: the combination is ~17 kB, more than the 8 kB request line many proxies allow.
    let queries: Vec<String> = (0..120)
        .map(|i| {
            format!(
                "app_latency_seconds{{track=\"canary\"}} * {i} + 0 * {}",
                i * 7
            )
        })
        .collect();
    let span = (at(T0), at(T0 + 600), Duration::from_secs(60));

    let (together, requests) = ask_together(&prometheus, &source, &queries, span).await;
    assert_eq!(requests, 1.0);
    assert_eq!(together.len(), 120);
    for (i, answer) in together.iter().enumerate() {
        assert_eq!(answer.len(), 1, "query {i}");
        assert_eq!(
            answer[0].points[5].v,
            canary_value(5) * i as f64,
            "query {i}"
        );
    }
}
