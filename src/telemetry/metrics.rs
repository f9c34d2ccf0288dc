//! Prometheus metrics for ops: one registry per process (the `metrics`
//! crate's global recorder), rendered as Prometheus text by `/metrics` on
//! `serve` and on the `[metrics] listen` address of the rollup and of
//! `agent watch`. No figure of an operation is ever a metric: counts of
//! records and their fates only, so a scrape needs no token.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Seconds: from a millisecond commit to a stalled disk.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The metric names, with their help texts (Prometheus' HELP lines).
pub const DESCRIBED: &[(&str, &str)] = &[
    ("jointops_rollup_records_consumed_total", "Records read from the input topic."),
    ("jointops_rollup_events_total", "Valid events by what they did: new, revised, duplicate, stale (R1)."),
    ("jointops_rollup_dead_letters_total", "Records dead-lettered, by reason code (contract section 3)."),
    ("jointops_rollup_batch_commit_seconds", "Time to commit one batch to the store."),
    ("jointops_rollup_consumer_lag", "Input records not yet counted, per partition, at the last heartbeat."),
    ("jointops_rollup_partitions_owned", "Input partitions this rollup consumes."),
    ("jointops_rollup_topic_partitions", "Partitions of the input topic."),
    ("jointops_rollup_store_errors_total", "Failed store writes (a failed commit stops the rollup)."),
    ("jointops_rollup_heartbeat_timestamp_seconds", "When the rollup last wrote its heartbeat (Unix time)."),
    (
        "jointops_rollup_last_event_timestamp_seconds",
        "Kafka time of the newest counted event, per operation and force.",
    ),
    ("jointops_operation_window_open", "1 while now is inside the operation's window, else 0."),
    ("jointops_api_requests_total", "API requests by route template and status."),
    ("jointops_api_request_duration_seconds", "API request time by route template (streams: until the answer starts)."),
    ("jointops_api_open_streams", "Live streams open."),
    ("jointops_agent_outbox_depth", "Messages in the agent's outbox, not yet acknowledged by Kafka."),
    ("jointops_agent_outbox_oldest_pending_age_seconds", "Age of the oldest message in the outbox (0 when empty)."),
    ("jointops_agent_records_published_total", "Records acknowledged by Kafka."),
    ("jointops_agent_files_total", "Export files handled by `agent watch`, by result: accepted, rejected."),
];

/// The process's registry, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("buckets are not empty");
        let handle = builder.install_recorder().unwrap_or_else(|e| {
            // Only a second recorder in one process fails; then this one records nothing.
            tracing::warn!(error = %e, "Metrics recorder not installed.");
            PrometheusBuilder::new().build_recorder().handle()
        });
        for (name, help) in DESCRIBED {
            describe(name, help);
        }
        handle
    })
}

fn describe(name: &'static str, help: &'static str) {
    if name.ends_with("_total") {
        metrics::describe_counter!(name, help);
    } else if name.ends_with("_seconds") && !name.contains("timestamp") && !name.contains("_age_") {
        metrics::describe_histogram!(name, help);
    } else {
        metrics::describe_gauge!(name, help);
    }
}

/// Prometheus text format of everything recorded so far.
pub fn render() -> String {
    handle().render()
}

pub async fn metrics_answer() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render())
}

pub async fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    handle();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {listen} (metrics.listen): {e}"))?;
    tracing::info!(listen = %listener.local_addr()?, "Metrics on /metrics.");
    Ok(listener)
}

/// Serves `/metrics` until `shutdown`: the rollup's and the agent's own
/// endpoint (serve has it on its API listener).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    handle();
    let app = axum::Router::new().route("/metrics", get(metrics_answer));
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// Unix seconds of a millisecond time, as a gauge takes it.
pub fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}
