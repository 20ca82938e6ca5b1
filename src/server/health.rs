//! `GET /health`: 200 once the model is loaded (the listener opens only then), 503 while the
//! server drains for shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::state::AppState;

pub async fn health(State(st): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    if st.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        );
    }
    let s = st.engines.stats();
    let alive = (0..st.engines.len())
        .filter(|&i| st.engines.replica_alive(i))
        .count();
    (
        StatusCode::OK,
        Json(json!({
            "status": "ok",
            "model": st.cfg.served_model_name,
            "requests_in_flight": s.requests,
            "kv_blocks_total": s.kv_blocks_total,
            "kv_blocks_used": s.kv_blocks_used,
            "replicas": st.engines.len(),
            "replicas_alive": alive,
        })),
    )
}
