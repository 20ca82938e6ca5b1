//! Text to speech through the engine handle: submit one request, collect its streamed audio
//! (each chunk handed to `on_audio` as it arrives) and its codes. Every front end shares the
//! engine's output processing (`engine::output`); this is the blocking client the CLI and
//! tests use. May use: engine.

use crate::engine::{EngineHandle, FinishReason, RequestEvent, TtsRequest, Usage};
use crate::error::{Error, Result};

/// What a synthesis produced.
#[derive(Clone, Debug, Default)]
pub struct TtsOutput {
    /// Codec frames of all chunks, `[n_codebooks][T]`.
    pub codes: Vec<Vec<u32>>,
    /// 24 kHz mono samples (`960 * T`).
    pub samples: Vec<f32>,
    /// Generated text-mode ids, all chunks in order.
    pub text_ids: Vec<u32>,
    /// Finish reason per long-form chunk.
    pub finish: Vec<FinishReason>,
    pub usage: Usage,
}

/// Runs `req` to the end. `on_audio` receives each audio chunk as soon as it is decoded,
/// `on_progress` the total frames so far.
pub fn synthesize(
    handle: &EngineHandle,
    req: TtsRequest,
    on_audio: &mut dyn FnMut(&[f32]) -> Result<()>,
    on_progress: &mut dyn FnMut(usize),
) -> Result<TtsOutput> {
    let n_cb = handle.model().cfg.n_codebooks;
    let mut stream = handle.submit(req)?;
    let mut out = TtsOutput {
        codes: vec![Vec::new(); n_cb],
        ..Default::default()
    };
    loop {
        match stream.blocking_next() {
            Some(RequestEvent::Text(t)) => out.text_ids.extend(t),
            Some(RequestEvent::Codes(rows)) => {
                for (dst, r) in out.codes.iter_mut().zip(rows) {
                    dst.extend(r);
                }
                on_progress(out.codes.first().map_or(0, Vec::len));
            }
            Some(RequestEvent::Audio(pcm)) => {
                on_audio(&pcm)?;
                out.samples.extend_from_slice(&pcm);
            }
            Some(RequestEvent::Finished { finish, usage }) => {
                out.finish = finish;
                out.usage = usage;
                return Ok(out);
            }
            Some(RequestEvent::Failed(e)) => return Err(e),
            None => return Err(Error::Other("the engine stopped mid-request".into())),
        }
    }
}
