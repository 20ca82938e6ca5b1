//! From a request's engine events to what handlers send: audio chunks, generated text and the
//! end, under the server's per-request time limit; and the request's tracker, which feeds the
//! metrics and writes the one log line per request (id, endpoint, voice, replica, frames, time to first
//! audio, status) when the request ends, however it ends (a client that goes away drops the
//! tracker with the body, and is logged as `disconnected`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::error::ApiError;
use super::state::AppState;
use crate::engine::{EventStream, FinishReason, RequestEvent, Usage};

pub struct Tracker {
    st: Arc<AppState>,
    pub id: u64,
    endpoint: &'static str,
    pub voice: String,
    /// The engine replica that ran the request (when it got that far).
    pub replica: Option<usize>,
    t0: Instant,
    first_audio: Option<Instant>,
    last_audio: Option<Instant>,
    frames: usize,
    status: Option<String>,
}

impl Tracker {
    pub fn new(st: &Arc<AppState>, endpoint: &'static str) -> Self {
        st.active.fetch_add(1, Ordering::SeqCst);
        Tracker {
            id: st.next_request(),
            st: st.clone(),
            endpoint,
            voice: "-".into(),
            replica: None,
            t0: Instant::now(),
            first_audio: None,
            last_audio: None,
            frames: 0,
            status: None,
        }
    }

    fn audio(&mut self) {
        let now = Instant::now();
        match self.last_audio {
            None => {
                self.first_audio = Some(now);
                self.st
                    .metrics
                    .ttfa
                    .observe(now.duration_since(self.t0).as_secs_f64());
            }
            Some(prev) => self
                .st
                .metrics
                .inter_chunk
                .observe(now.duration_since(prev).as_secs_f64()),
        }
        self.last_audio = Some(now);
    }

    fn frames(&mut self, n: usize) {
        self.frames += n;
        self.st
            .metrics
            .frames
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records how the request ended (an HTTP status, or a word for a stream cut short).
    pub fn finish(&mut self, status: impl Into<String>) {
        if self.status.is_none() {
            self.status = Some(status.into());
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let status = self.status.take().unwrap_or_else(|| "disconnected".into());
        let ttfa = self.first_audio.map_or("-".to_string(), |t| {
            format!("{:.0}", t.duration_since(self.t0).as_secs_f64() * 1e3)
        });
        let replica = self.replica.map_or("-".to_string(), |r| r.to_string());
        eprintln!(
            "req {} {} voice={} replica={replica} frames={} ttfa_ms={ttfa} time_ms={:.0} status={status}",
            self.id,
            self.endpoint,
            self.voice,
            self.frames,
            self.t0.elapsed().as_secs_f64() * 1e3,
        );
        self.st.metrics.count_request(self.endpoint, &status);
        self.st.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a handler acts on.
pub enum Chunk {
    /// 24 kHz mono samples.
    Audio(Vec<f32>),
    /// Generated text-mode ids.
    Text(Vec<u32>),
    Done {
        finish: Vec<FinishReason>,
        usage: Usage,
    },
}

/// A request's events with its deadline. Dropping it aborts the request in the engine.
pub struct Driver {
    stream: EventStream,
    deadline: tokio::time::Instant,
    timeout_s: f64,
    pub tracker: Tracker,
    ended: bool,
}

impl Driver {
    pub fn new(st: &AppState, stream: EventStream, tracker: Tracker) -> Self {
        let timeout = st.cfg.request_timeout;
        Driver {
            stream,
            deadline: tokio::time::Instant::from_std(tracker.t0) + timeout,
            timeout_s: timeout.as_secs_f64(),
            tracker,
            ended: false,
        }
    }

    /// The next chunk; `Ok(None)` after `Done`. Codes events only count frames.
    pub async fn next(&mut self) -> Result<Option<Chunk>, ApiError> {
        if self.ended {
            return Ok(None);
        }
        loop {
            let ev = match tokio::time::timeout_at(self.deadline, self.stream.next()).await {
                Ok(ev) => ev,
                Err(_) => {
                    self.ended = true;
                    return Err(ApiError {
                        code: Some("timeout"),
                        ..ApiError::new(
                            axum::http::StatusCode::GATEWAY_TIMEOUT,
                            format!(
                                "the request ran past the server's time limit of {:.0} s \
                                 (--request-timeout) and was stopped",
                                self.timeout_s
                            ),
                        )
                    });
                }
            };
            match ev {
                Some(RequestEvent::Codes(rows)) => {
                    self.tracker.frames(rows.first().map_or(0, Vec::len));
                }
                Some(RequestEvent::Audio(pcm)) => {
                    if pcm.iter().any(|s| !s.is_finite()) {
                        self.ended = true;
                        return Err(ApiError::internal(
                            "the codec produced non-finite audio samples (NaN or Inf); \
                             the weights or the inputs are broken",
                        ));
                    }
                    self.tracker.audio();
                    return Ok(Some(Chunk::Audio(pcm)));
                }
                Some(RequestEvent::Text(ids)) => return Ok(Some(Chunk::Text(ids))),
                Some(RequestEvent::Finished { finish, usage }) => {
                    self.ended = true;
                    return Ok(Some(Chunk::Done { finish, usage }));
                }
                Some(RequestEvent::Failed(e)) => {
                    self.ended = true;
                    return Err(ApiError::from(e));
                }
                None => {
                    self.ended = true;
                    return Err(ApiError::internal("the engine stopped mid-request"));
                }
            }
        }
    }
}

/// A whole request's output.
pub struct Collected {
    pub samples: Vec<f32>,
    pub text_ids: Vec<u32>,
    pub finish: Vec<FinishReason>,
    pub usage: Usage,
}

/// Runs the request to its end.
pub async fn collect(d: &mut Driver) -> Result<Collected, ApiError> {
    let mut out = Collected {
        samples: Vec::new(),
        text_ids: Vec::new(),
        finish: Vec::new(),
        usage: Usage::default(),
    };
    while let Some(c) = d.next().await? {
        match c {
            Chunk::Audio(pcm) => out.samples.extend_from_slice(&pcm),
            Chunk::Text(ids) => out.text_ids.extend(ids),
            Chunk::Done { finish, usage } => {
                out.finish = finish;
                out.usage = usage;
            }
        }
    }
    Ok(out)
}

/// OpenAI's `finish_reason` of a request (the last chunk's).
pub fn finish_reason(finish: &[FinishReason]) -> &'static str {
    match finish.last() {
        Some(FinishReason::Length) => "length",
        _ => "stop",
    }
}
