//! `GET /metrics`: Prometheus text exposition of the hub's own figures
//! (appliances and jobs per status, the store writer's counters). Only
//! aggregates: no id, no name.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::error::ApiError;
use super::AppState;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain",
        body = String)))]
async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let counts = state.store.fleet_counts().await?;
    let stats = state.store.stats();
    let mut text = String::new();
    for (kind, help) in [
        ("appliances", "Appliances by connection status."),
        ("jobs", "Jobs by status."),
    ] {
        let _ = writeln!(text, "# HELP fleethub_{kind} {help}");
        let _ = writeln!(text, "# TYPE fleethub_{kind} gauge");
        for (_, status, n) in counts.iter().filter(|(k, _, _)| *k == kind) {
            let _ = writeln!(text, "fleethub_{kind}{{status=\"{status}\"}} {n}");
        }
    }
    for (name, help, value) in [
        (
            "store_commands_total",
            "Commands run by the store writer.",
            stats.commands,
        ),
        (
            "store_transactions_total",
            "Transactions committed.",
            stats.transactions,
        ),
        (
            "store_failed_transactions_total",
            "Transactions that failed to commit.",
            stats.failed_transactions,
        ),
    ] {
        let _ = writeln!(text, "# HELP fleethub_{name} {help}");
        let _ = writeln!(text, "# TYPE fleethub_{name} counter");
        let _ = writeln!(text, "fleethub_{name} {value}");
    }
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
