//! `GET /v1/models` (OpenAI's list shape; clients take `data[0].id` as the model name) and
//! `GET /v1/models/{id}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::state::AppState;

fn model_object(st: &AppState) -> Value {
    json!({
        "id": st.cfg.served_model_name,
        "object": "model",
        "created": st.started_unix,
        "owned_by": "higgs-engine",
    })
}

pub async fn list(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_object(&st)]}))
}

pub async fn retrieve(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if id == st.cfg.served_model_name {
        Ok(Json(model_object(&st)))
    } else {
        Err(ApiError::not_found(
            Some("model"),
            format!(
                "model `{id}` is not served here; this server serves `{}`",
                st.cfg.served_model_name
            ),
        ))
    }
}
