//! Audio-row sampling where the logits live (spec §8.5, §8.8): on CUDA one kernel launch draws
//! every codebook row of a batch of audio steps (suppress, temperature, top-k, top-p, argmax or
//! multinomial, then RAS against each sequence's recent columns) and only the symbols come
//! back, never the `[rows, C·(K+2)]` logits. CPU logits return `None`: the engine samples
//! them on the host with each request's ChaCha stream (`sampling/processors.rs`), which is
//! the reference's draw order. Greedy picks are identical on both (same ties, NaN, suppress).
//! May use: tensor, backend, sampling params.

use crate::error::{Error, Result};
use crate::sampling::processors::SamplingParams;
use crate::tensor::Tensor;

/// One sequence's audio step.
#[derive(Clone, Debug)]
pub struct AudioDraw<'a> {
    pub sampling: SamplingParams,
    /// RAS window (0 = off) and the repeat count that triggers a re-draw.
    pub ras_win_len: usize,
    pub ras_max_repeat: usize,
    /// Per request; with `step` it fixes the draws (independent of the batch it runs in).
    pub seed: u64,
    pub step: u64,
    /// The sequence's audio-out columns so far; RAS reads the last `ras_win_len`.
    pub history: &'a [Vec<u32>],
}

/// Draws one column per entry of `rows` from `logits` `[rows.len(), n_codebooks·cols]`.
/// `suppress` (ids set to −inf before drawing) is shared by every row. Returns the symbols
/// `[rows.len()·n_codebooks]` (after RAS) when the logits are on a device that samples
/// itself, `None` for host logits.
pub fn draw_audio(
    logits: &Tensor,
    n_codebooks: usize,
    rows: &[AudioDraw<'_>],
    suppress: &[usize],
) -> Result<Option<Vec<u32>>> {
    let s = logits.shape();
    if s.len() != 2 || s[0] != rows.len() || n_codebooks == 0 || !s[1].is_multiple_of(n_codebooks) {
        return Err(Error::Shape {
            op: "draw_audio",
            arg: "logits",
            expected: format!("[{}, {n_codebooks}·cols]", rows.len()),
            got: format!("{s:?}"),
        });
    }
    for r in rows {
        r.sampling.validate()?;
        if let Some(bad) = r.history.iter().find(|c| c.len() != n_codebooks) {
            return Err(Error::Shape {
                op: "draw_audio",
                arg: "history column",
                expected: format!("{n_codebooks} symbols"),
                got: bad.len().to_string(),
            });
        }
    }
    if rows.is_empty() {
        return Ok(Some(Vec::new()));
    }
    match logits.storage() {
        crate::tensor::Storage::Cpu(_)
        | crate::tensor::Storage::CpuPanels(_)
        | crate::tensor::Storage::CpuFp8(_) => {
            let _ = suppress; // the host path reads each request's own list
            Ok(None)
        }
        #[cfg(feature = "cuda")]
        crate::tensor::Storage::Cuda(st) => cuda::draw(
            &st.dev,
            &st.data,
            n_codebooks,
            s[1] / n_codebooks,
            rows,
            suppress,
        )
        .map(Some),
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::AudioDraw;
    use crate::backend::cuda::sampling::{
        fill_uniforms, sample_audio_rows, AudioSampleOutputs, RasHistory, RowParamsBuffer,
        RowSampling, SampleRowsArgs,
    };
    use crate::backend::cuda::{elementwise, CudaDevice, CudaStorage};
    use crate::error::{Error, Result};
    use crate::tensor::DType;

    pub fn draw(
        dev: &CudaDevice,
        logits: &CudaStorage,
        c: usize,
        cols: usize,
        rows: &[AudioDraw<'_>],
        suppress: &[usize],
    ) -> Result<Vec<u32>> {
        let n_rows = rows.len() * c;
        // The sampling kernel reads f32 (the reference samples `logits.float()`).
        let cast;
        let z = match logits.dtype() {
            DType::F32 => logits,
            _ => {
                let mut f = CudaStorage::zeros(dev, n_rows * cols, DType::F32)?;
                elementwise::cast(dev, logits, &mut f, n_rows * cols)?;
                cast = f;
                &cast
            }
        };
        let mut params = Vec::with_capacity(n_rows);
        for r in rows {
            for cb in 0..c {
                params.push(RowSampling {
                    temperature: r.sampling.temperature,
                    top_k: r.sampling.top_k,
                    top_p: r.sampling.top_p,
                    ras_win_len: r.ras_win_len,
                    ras_max_repeat: r.ras_max_repeat,
                    seed: r.seed,
                    // Per (step, codebook) within the request: the batch around it is irrelevant.
                    offset: (r.step << 16) | cb as u64,
                });
            }
        }
        let params = RowParamsBuffer::new(dev, &params)?;
        let mut uniforms = dev.alloc_zeros::<f32>(n_rows * 2)?;
        fill_uniforms(dev, &params, 0, &mut uniforms)?;
        let ring = rows.iter().map(|r| r.ras_win_len).max().unwrap_or(0).max(1);
        let mut hist = vec![0i32; rows.len() * ring * c];
        let mut lens = Vec::with_capacity(rows.len());
        for (s, r) in rows.iter().enumerate() {
            let len = r.history.len();
            for t in len.saturating_sub(ring)..len {
                let at = (s * ring + t % ring) * c;
                for (dst, &v) in hist[at..at + c].iter_mut().zip(&r.history[t]) {
                    *dst = i32::try_from(v).map_err(|_| {
                        Error::BadRequest(format!("audio history symbol {v} out of range"))
                    })?;
                }
            }
            lens.push(i32::try_from(len).map_err(|_| {
                Error::BadRequest(format!("audio history of {len} columns is too long"))
            })?);
        }
        let history = dev.upload(&hist)?;
        let hist_len = dev.upload(&lens)?;
        let sup: Vec<i32> = suppress
            .iter()
            .filter_map(|&v| i32::try_from(v).ok())
            .collect();
        let sup = if sup.is_empty() {
            None
        } else {
            Some(dev.upload(&sup)?)
        };
        let mut scores = dev.alloc_zeros::<f32>(n_rows * cols)?;
        let mut sampled = dev.alloc_zeros::<i32>(n_rows)?;
        let mut ras_hit = dev.alloc_zeros::<i32>(n_rows)?;
        sample_audio_rows(
            dev,
            z,
            &params,
            &uniforms,
            sup.as_ref(),
            &RasHistory {
                history: &history,
                hist_len: &hist_len,
                ring_len: ring,
                n_codebooks: c,
            },
            AudioSampleOutputs {
                scores: &mut scores,
                sampled: &mut sampled,
                ras_hit: &mut ras_hit,
            },
            &SampleRowsArgs { n_rows, cols },
        )?;
        Ok(dev
            .download(&sampled)?
            .into_iter()
            .map(|v| v as u32)
            .collect())
    }
}
