//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database answers and
//! its schema is the one this binary expects).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::db::schema;

pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn ready(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    sqlx::query("SELECT 1")
        .execute(&state.pool)
        .await
        .map_err(|e| ApiError::unavailable(format!("database unreachable: {e}")))?;
    let stored = schema::check(&state.pool, &state.settings.vector_schema)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(json!({
        "status": "ready",
        "schema_version": schema::expected_version(),
        "embedding_dimensions": stored.dimensions,
    })))
}
