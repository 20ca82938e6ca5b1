//! On-device sampling (`kernels/sampling.cu`): per-row suppress → argmax, or temperature →
//! top-k → top-p → multinomial; the RAS re-draw; and the per-sequence delay-pattern state
//! machine held in [`DeviceSamplerState`], so an audio step needs no host round trip except the
//! read-back of its column and text token. `ops::sample::draw_audio` runs [`sample_audio_rows`]
//! for the engine's audio steps; the delay state machine is exercised by the conformance tests.
//! CPU twin: `sampling/processors.rs` and `Engine::sample_step` in `generate.rs`.
//! spec: model.md §8.4–§8.6. May use: device, launch, storage.

use cudarc::driver::{CudaSlice, LaunchConfig};

use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{launch, params_struct, ptr};
use super::storage::{check, CudaStorage};
use crate::error::{Error, Result};
use crate::tensor::DType;

params_struct!(SamplingRowParams, 40, {
    temperature: f32, top_p: f32, top_k: i32, ras_win_len: i32, ras_max_repeat: i32,
    _pad: i32, seed: u64, offset: u64,
});
params_struct!(SamplingUniformParams, 32, {
    row_params: u64, uniforms: u64, step: u64, n_rows: i32, _pad: i32,
});
params_struct!(SamplingRowsParams, 96, {
    logits: u64, scores: u64, uniforms: u64, row_params: u64, suppress: u64, sampled: u64,
    history: u64, hist_len: u64, ras_hit: u64,
    n_rows: i32, cols: i32, n_suppress: i32, ras: i32, n_codebooks: i32, ring_len: i32,
});
params_struct!(SamplingDelayParams, 104, {
    sampled: u64, last_token: u64, num_delay: u64, num_remaining: u64, history: u64,
    hist_len: u64, column_out: u64, token_out: u64,
    n_seqs: i32, n_codebooks: i32, ring_len: i32, use_delay: i32, audio_out_bos: i32,
    audio_out: i32, audio_eos: i32, stream_bos: i32, stream_eos: i32, _pad: i32,
});

const OP: &str = "cuda::sampling";
const ROW_BLOCK: u32 = 256;
/// The delay kernel keeps one column in registers (`SAMPLING_MAX_CODEBOOKS`).
const MAX_CODEBOOKS: usize = 32;

/// Sampling settings of one row (a text row, or one codebook row of a sequence).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowSampling {
    /// ≤ 0: greedy.
    pub temperature: f32,
    /// `None` or `Some(0)`: off.
    pub top_k: Option<usize>,
    /// ≥ 1: off.
    pub top_p: f32,
    /// 0: RAS off (only read for audio rows).
    pub ras_win_len: usize,
    pub ras_max_repeat: usize,
    /// Per request; same seed and offsets give the same draws on this backend.
    pub seed: u64,
    /// Per row within the request (e.g. the codebook index).
    pub offset: u64,
}

/// Per-row settings uploaded once (they change only when the batch does).
#[derive(Debug)]
pub struct RowParamsBuffer {
    buf: CudaSlice<SamplingRowParams>,
    n_rows: usize,
    max_ras_win: usize,
}

impl RowParamsBuffer {
    pub fn new(dev: &CudaDevice, rows: &[RowSampling]) -> Result<Self> {
        let mut host = Vec::with_capacity(rows.len());
        for r in rows {
            host.push(SamplingRowParams {
                temperature: r.temperature,
                top_p: r.top_p,
                top_k: check::fits_i32(OP, "top_k", r.top_k.unwrap_or(0))?,
                ras_win_len: check::fits_i32(OP, "ras_win_len", r.ras_win_len)?,
                ras_max_repeat: check::fits_i32(OP, "ras_max_repeat", r.ras_max_repeat)?,
                _pad: 0,
                seed: r.seed,
                offset: r.offset,
            });
        }
        Ok(Self {
            buf: dev.upload(&host)?,
            n_rows: rows.len(),
            max_ras_win: rows.iter().map(|r| r.ras_win_len).max().unwrap_or(0),
        })
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }
}

/// Shape of one `sample_rows` launch: `n_rows × cols` f32 logits.
#[derive(Clone, Copy, Debug)]
pub struct SampleRowsArgs {
    pub n_rows: usize,
    pub cols: usize,
}

/// Output buffers of `sample_rows`: processed scores (`n_rows × cols`, the masks) and ids.
#[derive(Debug)]
pub struct SampleOutputs<'a> {
    pub scores: &'a mut CudaSlice<f32>,
    pub sampled: &'a mut CudaSlice<i32>,
}

fn grid(n: usize, block: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((n as u32).div_ceil(block), 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn rows_cfg(n_rows: i32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n_rows as u32, 1, 1),
        block_dim: (ROW_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Fills `uniforms[row·2 + j]` (j = 0: draw, 1: RAS re-draw) from each row's seed and offset
/// and the step counter.
pub fn fill_uniforms(
    dev: &CudaDevice,
    params: &RowParamsBuffer,
    step: u64,
    uniforms: &mut CudaSlice<f32>,
) -> Result<()> {
    check::idx_len(OP, "uniforms", uniforms, params.n_rows * 2)?;
    let n_rows = check::fits_i32(OP, "n_rows", params.n_rows)?;
    let p = SamplingUniformParams {
        row_params: ptr(dev, &params.buf),
        uniforms: ptr(dev, uniforms),
        step,
        n_rows,
        _pad: 0,
    };
    launch(
        dev,
        Kernel::SamplingUniformF32,
        grid(params.n_rows, 256),
        &p,
    )
}

fn check_rows(
    logits: &CudaStorage,
    params: &RowParamsBuffer,
    uniforms: &CudaSlice<f32>,
    out: &SampleOutputs<'_>,
    a: &SampleRowsArgs,
) -> Result<(i32, i32)> {
    check::dtype(OP, "logits", logits, DType::F32)?;
    check::len(OP, "logits", logits, a.n_rows * a.cols)?;
    check::idx_len(OP, "uniforms", uniforms, a.n_rows * 2)?;
    check::idx_len(OP, "scores", out.scores, a.n_rows * a.cols)?;
    check::idx_len(OP, "sampled", out.sampled, a.n_rows)?;
    if params.n_rows < a.n_rows {
        return Err(Error::Shape {
            op: OP,
            arg: "params",
            expected: format!(">= {} rows", a.n_rows),
            got: params.n_rows.to_string(),
        });
    }
    Ok((
        check::fits_i32(OP, "n_rows", a.n_rows)?,
        check::fits_i32(OP, "cols", a.cols)?,
    ))
}

/// Samples one id per row (no RAS): suppress ids outside `[0, cols)` are ignored, as the CPU's.
pub fn sample_rows(
    dev: &CudaDevice,
    logits: &CudaStorage,
    params: &RowParamsBuffer,
    uniforms: &CudaSlice<f32>,
    suppress: Option<&CudaSlice<i32>>,
    out: SampleOutputs<'_>,
    a: &SampleRowsArgs,
) -> Result<()> {
    let (n_rows, cols) = check_rows(logits, params, uniforms, &out, a)?;
    let n_suppress = check::fits_i32(OP, "suppress", suppress.map_or(0, |s| s.len()))?;
    let p = SamplingRowsParams {
        logits: logits.ptr(dev),
        scores: ptr(dev, out.scores),
        uniforms: ptr(dev, uniforms),
        row_params: ptr(dev, &params.buf),
        suppress: suppress.map_or(0, |s| ptr(dev, s)),
        sampled: ptr(dev, out.sampled),
        n_rows,
        cols,
        n_suppress,
        ..Default::default()
    };
    launch(dev, Kernel::SamplingRowsF32, rows_cfg(n_rows), &p)
}

/// The RAS history of a batch of audio sequences: `[n_seqs, ring_len, n_codebooks]` columns
/// (column `t` of a sequence at ring slot `t % ring_len`) and the columns pushed per sequence.
#[derive(Debug)]
pub struct RasHistory<'a> {
    pub history: &'a CudaSlice<i32>,
    pub hist_len: &'a CudaSlice<i32>,
    pub ring_len: usize,
    pub n_codebooks: usize,
}

/// Scratch and result buffers of [`sample_audio_rows`].
#[derive(Debug)]
pub struct AudioSampleOutputs<'a> {
    pub scores: &'a mut CudaSlice<f32>,
    pub sampled: &'a mut CudaSlice<i32>,
    pub ras_hit: &'a mut CudaSlice<i32>,
}

#[allow(clippy::too_many_arguments)]
/// Samples `[n_seqs, n_codebooks]` audio rows with RAS against `h` (one launch): the symbols
/// after RAS land in `out.sampled`, the re-draw flags in `out.ras_hit`.
pub fn sample_audio_rows(
    dev: &CudaDevice,
    logits: &CudaStorage,
    params: &RowParamsBuffer,
    uniforms: &CudaSlice<f32>,
    suppress: Option<&CudaSlice<i32>>,
    h: &RasHistory<'_>,
    out: AudioSampleOutputs<'_>,
    a: &SampleRowsArgs,
) -> Result<()> {
    let c = h.n_codebooks;
    if c == 0 || !a.n_rows.is_multiple_of(c) || h.ring_len == 0 {
        return Err(Error::Unsupported(format!(
            "{OP}: {} rows are not whole columns of {c} codebooks (ring {})",
            a.n_rows, h.ring_len
        )));
    }
    if params.max_ras_win > h.ring_len {
        return Err(Error::Unsupported(format!(
            "{OP}: ras_win_len {} exceeds the history ring ({} columns)",
            params.max_ras_win, h.ring_len
        )));
    }
    let n_seqs = a.n_rows / c;
    check::idx_len(OP, "history", h.history, n_seqs * h.ring_len * c)?;
    check::idx_len(OP, "hist_len", h.hist_len, n_seqs)?;
    check::idx_len(OP, "ras_hit", out.ras_hit, a.n_rows)?;
    let so = SampleOutputs {
        scores: out.scores,
        sampled: out.sampled,
    };
    let (n_rows, cols) = check_rows(logits, params, uniforms, &so, a)?;
    let n_suppress = check::fits_i32(OP, "suppress", suppress.map_or(0, |s| s.len()))?;
    let p = SamplingRowsParams {
        logits: logits.ptr(dev),
        scores: ptr(dev, so.scores),
        uniforms: ptr(dev, uniforms),
        row_params: ptr(dev, &params.buf),
        suppress: suppress.map_or(0, |s| ptr(dev, s)),
        sampled: ptr(dev, so.sampled),
        history: ptr(dev, h.history),
        hist_len: ptr(dev, h.hist_len),
        ras_hit: ptr(dev, out.ras_hit),
        n_rows,
        cols,
        n_suppress,
        ras: 1,
        n_codebooks: check::fits_i32(OP, "n_codebooks", c)?,
        ring_len: check::fits_i32(OP, "ring_len", h.ring_len)?,
    };
    // SAFETY (bounds, for launch.rs): check_rows sized logits/uniforms/scores/sampled for
    // n_rows rows; history is n_seqs·ring_len·C, hist_len n_seqs, ras_hit n_rows (checked
    // above) and every row's window ≤ ring_len.
    launch(dev, Kernel::SamplingRowsF32, rows_cfg(n_rows), &p)
}

/// Token ids and sizes the delay-pattern state machine needs (spec §8.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelayConfig {
    pub n_codebooks: usize,
    /// Symbols per codebook row (1026).
    pub codebook_rows: usize,
    pub stream_bos: u32,
    pub stream_eos: u32,
    pub audio_out_bos_token: u32,
    pub audio_out_token: u32,
    pub audio_eos_token: u32,
    pub use_delay_pattern: bool,
}

impl DelayConfig {
    pub fn from_model(cfg: &crate::config::ModelConfig) -> Self {
        Self {
            n_codebooks: cfg.n_codebooks,
            codebook_rows: cfg.codebook_rows(),
            stream_bos: cfg.stream_bos,
            stream_eos: cfg.stream_eos,
            audio_out_bos_token: cfg.audio_out_bos_token,
            audio_out_token: cfg.audio_out_token,
            audio_eos_token: cfg.audio_eos_token,
            use_delay_pattern: cfg.use_delay_pattern,
        }
    }
}

/// One audio step's result read back to the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioStepOut {
    /// Per sequence: the column (empty when the sequence had no audio step).
    pub columns: Vec<Vec<u32>>,
    /// Per sequence: `<|AUDIO_OUT|>`, `<|audio_eos|>`, or `None` (text mode).
    pub tokens: Vec<Option<u32>>,
}

/// Device-resident per-sequence sampling state for `n_seqs` sequences: delay counters, the
/// last text token (the mode), the `audio_out` history ring for RAS, and the step's buffers.
#[derive(Debug)]
pub struct DeviceSamplerState {
    cfg: DelayConfig,
    n_seqs: usize,
    ring_len: usize,
    last_token: CudaSlice<i32>,
    num_delay: CudaSlice<i32>,
    num_remaining: CudaSlice<i32>,
    history: CudaSlice<i32>,
    hist_len: CudaSlice<i32>,
    scores: CudaSlice<f32>,
    sampled: CudaSlice<i32>,
    ras_hit: CudaSlice<i32>,
    column_out: CudaSlice<i32>,
    token_out: CudaSlice<i32>,
}

fn i32_id(arg: &'static str, v: u32) -> Result<i32> {
    check::fits_i32(OP, arg, v as usize)
}

impl DeviceSamplerState {
    /// `ring_len` bounds every row's `ras_win_len` (the last `ring_len` columns are kept).
    pub fn new(dev: &CudaDevice, cfg: DelayConfig, n_seqs: usize, ring_len: usize) -> Result<Self> {
        if cfg.n_codebooks == 0 || cfg.n_codebooks > MAX_CODEBOOKS || ring_len == 0 || n_seqs == 0 {
            return Err(Error::Unsupported(format!(
                "{OP}: n_codebooks {} (1..={MAX_CODEBOOKS}), ring_len {ring_len}, n_seqs {n_seqs} \
                 (both ≥ 1)",
                cfg.n_codebooks
            )));
        }
        let c = cfg.n_codebooks;
        let rows = n_seqs * c;
        let minus_one = vec![-1i32; n_seqs];
        Ok(Self {
            cfg,
            n_seqs,
            ring_len,
            last_token: dev.upload(&minus_one)?,
            num_delay: dev.alloc_zeros(n_seqs)?,
            num_remaining: dev.upload(&minus_one)?,
            history: dev.alloc_zeros(n_seqs * ring_len * c)?,
            hist_len: dev.alloc_zeros(n_seqs)?,
            scores: dev.alloc_zeros(rows * cfg.codebook_rows)?,
            sampled: dev.alloc_zeros(rows)?,
            ras_hit: dev.alloc_zeros(rows)?,
            column_out: dev.alloc_zeros(rows)?,
            token_out: dev.alloc_zeros(n_seqs)?,
        })
    }

    pub fn n_seqs(&self) -> usize {
        self.n_seqs
    }

    /// Sets each sequence's last text token (the mode of its next step, spec §8.2), e.g. after
    /// a host-sampled text step.
    pub fn set_last_tokens(&mut self, dev: &CudaDevice, tokens: &[u32]) -> Result<()> {
        let host = self.per_seq_ids("tokens", tokens)?;
        dev.write(&mut self.last_token, &host)
    }

    /// Loads each sequence's `audio_out` so far (columns of `n_codebooks` symbols; only the
    /// last `ring_len` are kept) and resets its delay counters.
    pub fn load_history(&mut self, dev: &CudaDevice, per_seq: &[Vec<Vec<u32>>]) -> Result<()> {
        let c = self.cfg.n_codebooks;
        if per_seq.len() != self.n_seqs {
            return Err(self.seq_count_err("history", per_seq.len()));
        }
        let mut ring = vec![0i32; self.n_seqs * self.ring_len * c];
        let mut lens = Vec::with_capacity(self.n_seqs);
        for (s, cols) in per_seq.iter().enumerate() {
            let start = cols.len().saturating_sub(self.ring_len);
            for (t, col) in cols.iter().enumerate().skip(start) {
                if col.len() != c {
                    return Err(Error::Shape {
                        op: OP,
                        arg: "history column",
                        expected: format!("{c} symbols"),
                        got: col.len().to_string(),
                    });
                }
                let at = (s * self.ring_len + t % self.ring_len) * c;
                for (dst, &v) in ring[at..at + c].iter_mut().zip(col) {
                    *dst = i32_id("history symbol", v)?;
                }
            }
            lens.push(check::fits_i32(OP, "history length", cols.len())?);
        }
        dev.write(&mut self.history, &ring)?;
        dev.write(&mut self.hist_len, &lens)?;
        dev.write(&mut self.num_delay, &vec![0; self.n_seqs])?;
        dev.write(&mut self.num_remaining, &vec![-1; self.n_seqs])
    }

    /// One audio step for all sequences, with no host sync: sample the `[n_seqs, C, rows]`
    /// audio logits (RAS on), then run the state machine. Sequences whose last token is
    /// neither `<|audio_out_bos|>` nor `<|AUDIO_OUT|>` are left untouched (token −1).
    pub fn audio_step(
        &mut self,
        dev: &CudaDevice,
        logits: &CudaStorage,
        params: &RowParamsBuffer,
        uniforms: &CudaSlice<f32>,
        suppress: Option<&CudaSlice<i32>>,
    ) -> Result<()> {
        let c = self.cfg.n_codebooks;
        let a = SampleRowsArgs {
            n_rows: self.n_seqs * c,
            cols: self.cfg.codebook_rows,
        };
        let h = RasHistory {
            history: &self.history,
            hist_len: &self.hist_len,
            ring_len: self.ring_len,
            n_codebooks: c,
        };
        let out = AudioSampleOutputs {
            scores: &mut self.scores,
            sampled: &mut self.sampled,
            ras_hit: &mut self.ras_hit,
        };
        sample_audio_rows(dev, logits, params, uniforms, suppress, &h, out, &a)?;
        self.delay_step(dev)
    }

    /// The state machine alone (AUDIO_INIT steps need no logits; tests script `sampled`).
    pub fn delay_step(&mut self, dev: &CudaDevice) -> Result<()> {
        let cfg = self.cfg;
        let p = SamplingDelayParams {
            sampled: ptr(dev, &self.sampled),
            last_token: ptr(dev, &self.last_token),
            num_delay: ptr(dev, &self.num_delay),
            num_remaining: ptr(dev, &self.num_remaining),
            history: ptr(dev, &self.history),
            hist_len: ptr(dev, &self.hist_len),
            column_out: ptr(dev, &self.column_out),
            token_out: ptr(dev, &self.token_out),
            n_seqs: check::fits_i32(OP, "n_seqs", self.n_seqs)?,
            n_codebooks: cfg.n_codebooks as i32,
            ring_len: check::fits_i32(OP, "ring_len", self.ring_len)?,
            use_delay: cfg.use_delay_pattern as i32,
            audio_out_bos: i32_id("audio_out_bos_token", cfg.audio_out_bos_token)?,
            audio_out: i32_id("audio_out_token", cfg.audio_out_token)?,
            audio_eos: i32_id("audio_eos_token", cfg.audio_eos_token)?,
            stream_bos: i32_id("stream_bos", cfg.stream_bos)?,
            stream_eos: i32_id("stream_eos", cfg.stream_eos)?,
            _pad: 0,
        };
        launch(dev, Kernel::SamplingDelayStep, grid(self.n_seqs, 128), &p)
    }

    /// Overwrites this step's sampled symbols (`[n_seqs, C]`), for scripted replays.
    pub fn set_sampled(&mut self, dev: &CudaDevice, symbols: &[u32]) -> Result<()> {
        let host: Vec<i32> = symbols
            .iter()
            .map(|&v| i32_id("symbols", v))
            .collect::<Result<_>>()?;
        dev.write(&mut self.sampled, &host)
    }

    /// Reads back the step's columns and text tokens (the one host sync of an audio step).
    pub fn read_step(&self, dev: &CudaDevice) -> Result<AudioStepOut> {
        let c = self.cfg.n_codebooks;
        let cols = dev.download(&self.column_out)?;
        let toks = dev.download(&self.token_out)?;
        let mut out = AudioStepOut {
            columns: Vec::with_capacity(self.n_seqs),
            tokens: Vec::with_capacity(self.n_seqs),
        };
        for (s, &t) in toks.iter().enumerate() {
            if t < 0 {
                out.columns.push(Vec::new());
                out.tokens.push(None);
            } else {
                out.columns
                    .push(cols[s * c..(s + 1) * c].iter().map(|&v| v as u32).collect());
                out.tokens.push(Some(t as u32));
            }
        }
        Ok(out)
    }

    /// Per row of the last `audio_step`: the symbol after RAS, and whether RAS re-drew it.
    pub fn read_sampled(&self, dev: &CudaDevice) -> Result<(Vec<u32>, Vec<bool>)> {
        let s = dev.download(&self.sampled)?;
        let h = dev.download(&self.ras_hit)?;
        Ok((
            s.into_iter().map(|v| v as u32).collect(),
            h.into_iter().map(|v| v != 0).collect(),
        ))
    }

    /// The processed scores of the last `audio_step` (`[n_seqs·C, rows]`).
    pub fn read_scores(&self, dev: &CudaDevice) -> Result<Vec<f32>> {
        dev.download(&self.scores)
    }

    /// `(num_delay, num_remaining_delays)` per sequence (−1 = none).
    pub fn read_counters(&self, dev: &CudaDevice) -> Result<Vec<(i32, i32)>> {
        let d = dev.download(&self.num_delay)?;
        let r = dev.download(&self.num_remaining)?;
        Ok(d.into_iter().zip(r).collect())
    }

    fn per_seq_ids(&self, arg: &'static str, v: &[u32]) -> Result<Vec<i32>> {
        if v.len() != self.n_seqs {
            return Err(self.seq_count_err(arg, v.len()));
        }
        v.iter().map(|&t| i32_id(arg, t)).collect()
    }

    fn seq_count_err(&self, arg: &'static str, got: usize) -> Error {
        Error::Shape {
            op: OP,
            arg,
            expected: format!("{} sequences", self.n_seqs),
            got: got.to_string(),
        }
    }
}
