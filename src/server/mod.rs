//! `higgs serve`: an OpenAI-compatible speech server over the engine handle. It never touches
//! tensors: handlers parse and check requests, build engine requests, and turn each request's
//! event stream into an HTTP body (whole, chunked audio, or SSE).
//! May use: engine (handle, requests), prompt, audio::{decode, encode}, tokenizer.
//!
//! Routes (one handler file each):
//! - `GET /v1/models` (`models.rs`)
//! - `POST /v1/audio/speech` (`speech.rs`)
//! - `POST /v1/chat/completions` (`chat.rs`)
//! - `GET|POST /v1/audio/voices`, `GET|DELETE /v1/audio/voices/{id}` (`voices.rs`; the custom
//!   voice store is `voice_store.rs`)
//! - `GET /health`, `GET /metrics` (`health.rs`, `metrics.rs`)
//!
//! Shared pieces: `error.rs` (OpenAI error JSON and the status of each failure), `params.rs`
//! (sampling knobs and limits), `events.rs` (engine events to audio chunks, per-request log
//! line and metrics), `state.rs` (what every handler sees).
//!
//! Counterparts: vLLM `entrypoints/openai/api_server.py` + `serving_*.py`; mistral.rs-server.

mod chat;
pub mod error;
mod events;
mod health;
mod metrics;
mod models;
mod params;
pub mod speech;
mod state;
pub mod voice_store;
mod voices;

pub use state::{AppState, ServerConfig};
pub use voice_store::VoiceStore;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use error::ApiError;

/// The whole application: routes, body limits, the API-key and draining checks.
pub fn router(state: Arc<AppState>) -> Router {
    let json_limit = state.cfg.max_body_bytes;
    // A voice upload is at most 10 MiB of audio plus its form fields.
    let voice_limit = voices::MAX_SAMPLE_BYTES + 64 * 1024;
    let api = Router::new()
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::retrieve))
        .route(
            "/v1/audio/speech",
            post(speech::create).layer(DefaultBodyLimit::max(json_limit)),
        )
        .route(
            "/v1/chat/completions",
            post(chat::create).layer(DefaultBodyLimit::max(json_limit)),
        )
        .route(
            "/v1/audio/voices",
            get(voices::list)
                .post(voices::create)
                .layer(DefaultBodyLimit::max(voice_limit)),
        )
        .route(
            "/v1/audio/voices/{id}",
            get(voices::retrieve).delete(voices::delete),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .merge(api)
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .fallback(not_found)
        .with_state(state)
}

/// API key (when set) and draining: a server that is shutting down answers 503 to new work.
async fn guard(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.cfg.api_key {
        let given = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if given != Some(key.as_str()) {
            return ApiError::unauthorized(if given.is_none() {
                "missing API key: send `Authorization: Bearer KEY`"
            } else {
                "incorrect API key"
            })
            .into_response();
        }
    }
    if st.draining.load(Ordering::SeqCst) {
        return ApiError::unavailable("the server is shutting down").into_response();
    }
    next.run(req).await
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(
        None,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

/// Serves until `shutdown` resolves. Then the server drains: it keeps accepting, answers 503
/// to new work, lets the requests in flight finish (speech and chat bodies, voice uploads still
/// arriving; for at most `cfg.shutdown_timeout`), and only then closes its connections and
/// returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let drain = state.clone();
    let timeout = state.cfg.shutdown_timeout;
    let (deadline_tx, deadline_rx) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
    let signal = async move {
        shutdown.await;
        drain.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + timeout;
        let _ = deadline_tx.send(deadline);
        eprintln!("higgs serve: shutting down; finishing the requests in flight");
        while tokio::time::Instant::now() < deadline && !drain.idle() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    // No Nagle: an audio chunk goes out when written, not after the peer's delayed ACK of
    // the response head (a 40 ms stall on the first chunk otherwise).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    tokio::select! {
        r = server => r,
        _ = async {
            match deadline_rx.await {
                // Bodies still streaming at the deadline are cut.
                Ok(deadline) => tokio::time::sleep_until(deadline).await,
                Err(_) => std::future::pending::<()>().await,
            }
        } => {
            eprintln!(
                "higgs serve: requests still in flight after {:.0} s; exiting",
                timeout.as_secs_f64()
            );
            Ok(())
        }
    }
}
