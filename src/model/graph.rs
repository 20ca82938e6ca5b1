//! CUDA step graphs: an all-audio decode step (every sequence feeding one audio column, the
//! steady state of TTS) is captured once per (batch bucket, block-table width, KV cache) and
//! replayed, so the ~600 launches of a 28-layer step cost one graph launch. The captured code is
//! the ordinary forward (`Model::forward_eager`), not a copy: its per-step inputs (codes,
//! positions, KV slots, block tables, RoPE frequencies) are read through
//! `CudaDevice::upload_cached`, which during capture hands out one persistent buffer per role;
//! before each replay the host rewrites those buffers in place. Batches are padded up to the
//! bucket with rows that write no KV (slot −1) and whose outputs are dropped. A capture that
//! fails (an op that would upload, sync or allocate persistently) marks its key and the step
//! runs eagerly, as it does with graphs off. Shapes baked into a graph (rows, block-table
//! width, split-KV plan) are fixed by its key; attention reads each row's real length from
//! the positions buffer, and the split-KV kernel's last split always runs to the end of the
//! context, so any length within the table is computed exactly.
//! May use: model, ops, backend::cuda, kv::cache.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::CudaSlice;

use super::batch::{is_every_row, BatchInputs, RowInput};
use super::llm::{ForwardOptions, ForwardOutput, Model};
use crate::backend::cuda::CudaDevice;
use crate::error::{Error, Result};
use crate::kv::cache::KvCache;
use crate::ops::{self, AttnPath};
use crate::tensor::{Device, Storage, Tensor};

/// Batch sizes a graph is captured for; a batch runs in the smallest bucket that holds it.
const BUCKETS: &[usize] = &[
    1, 2, 4, 8, 12, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256,
];
/// Narrowest block table a graph is captured with (tables grow by doubling).
const MIN_TABLE_BLOCKS: usize = 16;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct GraphKey {
    batch: usize,
    max_blocks: usize,
    kv: u64,
}

/// A persistent input buffer the graph reads, rewritten before each replay.
enum Staged {
    I32(Arc<CudaSlice<i32>>),
    F32(Arc<CudaSlice<f32>>),
}

struct StepGraph {
    graph: cudarc::driver::CudaGraph,
    inputs: Vec<(&'static str, Staged)>,
    /// Final-norm hidden states of all `batch` rows, written by the graph.
    hidden: Tensor,
}

/// SAFETY: a `CudaGraph` is a pair of driver handles without thread affinity; every access
/// goes through the `Mutex` in `StepGraphs`, which is the serialisation the driver asks for.
struct SendGraph(StepGraph);
unsafe impl Send for SendGraph {}

#[derive(Default)]
struct Inner {
    graphs: HashMap<GraphKey, SendGraph>,
    failed: HashSet<GraphKey>,
}

/// The graphs of one model (see the module doc).
pub(crate) struct StepGraphs {
    enabled: AtomicBool,
    inner: Mutex<Inner>,
    captures: AtomicU64,
    replays: AtomicU64,
}

impl Default for StepGraphs {
    fn default() -> Self {
        StepGraphs {
            enabled: AtomicBool::new(std::env::var("HIGGS_CUDA_GRAPHS").map_or(true, |v| v != "0")),
            inner: Mutex::default(),
            captures: AtomicU64::new(0),
            replays: AtomicU64::new(0),
        }
    }
}

/// (graphs captured, steps replayed) so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraphStats {
    pub captures: u64,
    pub replays: u64,
}

fn bucket(n: usize) -> Option<usize> {
    BUCKETS.iter().copied().find(|&b| b >= n)
}

impl StepGraphs {
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> GraphStats {
        GraphStats {
            captures: self.captures.load(Ordering::Relaxed),
            replays: self.replays.load(Ordering::Relaxed),
        }
    }

    /// Drops every graph bound to KV cache `kv` (its buffers are going away).
    pub fn forget_kv(&self, kv: u64) {
        if let Ok(mut g) = self.inner.lock() {
            g.graphs.retain(|k, _| k.kv != kv);
            g.failed.retain(|k| k.kv != kv);
        }
    }

    /// Runs the step through a graph when it is an all-audio decode step on CUDA; `None`
    /// means "run it eagerly".
    pub fn forward(
        &self,
        model: &Model,
        inputs: &BatchInputs,
        kv: &mut KvCache,
        opts: &ForwardOptions,
    ) -> Result<Option<ForwardOutput>> {
        let Device::Cuda(dev) = model.device() else {
            return Ok(None);
        };
        if !self.enabled() || !eligible(model, inputs, opts) {
            return Ok(None);
        }
        let n = inputs.rows.len();
        let Some(b) = bucket(n) else {
            return Ok(None);
        };
        let padded = pad(model, inputs, b);
        let key = GraphKey {
            batch: b,
            max_blocks: padded.max_blocks,
            kv: kv.id(),
        };
        let contents = staged_contents(model, &padded);
        let first_n: Vec<u32> = (0..n as u32).collect();
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| Error::Other("step graph lock poisoned".into()))?;
        if let Some(SendGraph(g)) = inner.graphs.get_mut(&key) {
            for ((role, buf), (r2, host)) in g.inputs.iter_mut().zip(&contents) {
                debug_assert_eq!(role, r2);
                write_staged(dev, buf, host)?;
            }
            g.graph.launch().map_err(|e| Error::Kernel {
                kernel: "cuGraphLaunch".into(),
                reason: e.to_string(),
            })?;
            self.replays.fetch_add(1, Ordering::Relaxed);
            let hidden = ops::gather_rows(&g.hidden, &first_n)?;
            return Ok(Some(ForwardOutput {
                hidden,
                layers: Vec::new(),
            }));
        }
        if inner.failed.contains(&key) {
            return Ok(None);
        }
        // First step of this key: run it eagerly on the padded batch (its result is this step's
        // output, and it warms cuBLAS and the pool), then capture the same forward.
        let all: Vec<u32> = (0..b as u32).collect();
        let fopts = ForwardOptions {
            out_rows: all,
            capture_layers: false,
        };
        let out = model.forward_eager(&padded, kv, &fopts)?;
        let hidden_now = ops::gather_rows(&out.hidden, &first_n)?;
        match self.capture(dev, model, &padded, kv, &fopts, &contents) {
            Ok(g) => {
                inner.graphs.insert(key, SendGraph(g));
                self.captures.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!(
                    "warning: no CUDA graph for decode batch {b} (table {} blocks): {e}; this shape runs eagerly",
                    padded.max_blocks
                );
                inner.failed.insert(key);
            }
        }
        Ok(Some(ForwardOutput {
            hidden: hidden_now,
            layers: Vec::new(),
        }))
    }

    fn capture(
        &self,
        dev: &Arc<CudaDevice>,
        model: &Model,
        padded: &BatchInputs,
        kv: &mut KvCache,
        fopts: &ForwardOptions,
        contents: &[(&'static str, HostList)],
    ) -> Result<StepGraph> {
        let cfg = &model.cfg;
        // Nothing may be freed or grown inside the capture: drop this step's eager uploads and
        // size the split-KV workspace for any split plan first.
        dev.begin_step();
        dev.decode_workspace()?.reserve(
            dev,
            padded.rows.len() * cfg.n_heads * crate::backend::cuda::attn_decode::MAX_SPLITS,
            cfg.head_dim,
        )?;
        let mut staged = HashMap::new();
        let mut inputs = Vec::with_capacity(contents.len());
        for (role, host) in contents {
            let (buf, any): (Staged, Arc<dyn std::any::Any + Send + Sync>) = match host {
                HostList::I32(v) => {
                    let s = Arc::new(dev.upload(v)?);
                    (Staged::I32(s.clone()), s)
                }
                HostList::F32(v) => {
                    let s = Arc::new(dev.upload(v)?);
                    (Staged::F32(s.clone()), s)
                }
            };
            staged.insert(*role, (host.bytes().to_vec(), any));
            inputs.push((*role, buf));
        }
        let mut hidden = Tensor::zeros(
            vec![padded.rows.len(), cfg.hidden],
            model.activation_dtype(),
            model.device(),
        )?;
        let (graph, ()) = dev.capture_graph(staged, || {
            let out = model.forward_eager(padded, kv, fopts)?;
            let (Storage::Cuda(dst), Storage::Cuda(src)) =
                (hidden.storage_mut(), out.hidden.storage())
            else {
                return Err(Error::Other(
                    "step graph: hidden state not on the device".into(),
                ));
            };
            dst.data.copy_from(dev, &src.data)
        })?;
        graph.upload().map_err(|e| Error::Kernel {
            kernel: "cuGraphUpload".into(),
            reason: e.to_string(),
        })?;
        Ok(StepGraph {
            graph,
            inputs,
            hidden,
        })
    }
}

/// A role's host contents.
enum HostList {
    I32(Vec<i32>),
    F32(Vec<f32>),
}

impl HostList {
    fn bytes(&self) -> &[u8] {
        match self {
            HostList::I32(v) => bytemuck::cast_slice(v),
            HostList::F32(v) => bytemuck::cast_slice(v),
        }
    }
}

fn write_staged(dev: &CudaDevice, buf: &mut Staged, host: &HostList) -> Result<()> {
    let busy = || Error::Other("step graph input still shared".into());
    match (buf, host) {
        (Staged::I32(b), HostList::I32(v)) => dev.write(Arc::get_mut(b).ok_or_else(busy)?, v),
        (Staged::F32(b), HostList::F32(v)) => dev.write(Arc::get_mut(b).ok_or_else(busy)?, v),
        _ => Err(Error::Other("step graph input changed type".into())),
    }
}

/// An all-audio decode step the device attention kernels run: one audio row per sequence, in
/// sequence order, every row returned.
fn eligible(model: &Model, inputs: &BatchInputs, opts: &ForwardOptions) -> bool {
    let cfg = &model.cfg;
    let n = inputs.rows.len();
    n > 0
        && !opts.capture_layers
        && inputs.rows.iter().all(RowInput::is_audio)
        && is_every_row(&inputs.query_seq, n)
        && is_every_row(&opts.out_rows, n)
        && inputs.block_tables.len() == n * inputs.max_blocks
        && ops::choose_attn_path(
            cfg.n_heads,
            cfg.n_kv_heads,
            cfg.head_dim,
            &inputs.query_seq,
            n,
        ) == AttnPath::Decode
}

/// `inputs` padded to `b` sequences and a power-of-two block-table width.
fn pad(model: &Model, inputs: &BatchInputs, b: usize) -> BatchInputs {
    let n = inputs.rows.len();
    let c = model.cfg.n_codebooks;
    let mb = inputs.max_blocks.next_power_of_two().max(MIN_TABLE_BLOCKS);
    let mut p = BatchInputs {
        rows: inputs.rows.clone(),
        positions: inputs.positions.clone(),
        query_seq: (0..b as u32).collect(),
        slot_mapping: inputs.slot_mapping.clone(),
        block_size: inputs.block_size,
        block_tables: vec![0; b * mb],
        max_blocks: mb,
        // No key flags: in an all-audio step fast-forward layers skip every row and the
        // other layers attend without a key mask, so nothing reads them (an op that did would
        // fail its length check, not read garbage). Building them would cost b·max_ctx bytes
        // per replayed step.
        audio_keys: Vec::new(),
        max_ctx: mb * inputs.block_size,
    };
    for s in 0..n {
        let src = &inputs.block_tables[s * inputs.max_blocks..(s + 1) * inputs.max_blocks];
        p.block_tables[s * mb..s * mb + inputs.max_blocks].copy_from_slice(src);
    }
    for _ in n..b {
        // Padding: attends key 0 of block 0 (finite), writes no KV, output dropped.
        p.rows.push(RowInput::Audio {
            codes: vec![0; c],
            out: true,
        });
        p.positions.push(0);
        p.slot_mapping.push(-1);
    }
    p
}

/// What the captured forward reads per role, in a fixed order: exactly the lists its ops pass
/// to `upload_cached` for an all-audio batch (checked at capture, where a mismatch fails it).
fn staged_contents(model: &Model, p: &BatchInputs) -> Vec<(&'static str, HostList)> {
    let codes: Vec<i32> = p
        .rows
        .iter()
        .flat_map(|r| match r {
            RowInput::Audio { codes, .. } => codes.iter().map(|&c| c as i32).collect(),
            RowInput::Text(_) => Vec::new(),
        })
        .collect();
    vec![
        ("audio_codes", HostList::I32(codes)),
        ("positions", HostList::I32(p.positions.clone())),
        ("slots", HostList::I32(p.slot_mapping.clone())),
        ("block_tables", HostList::I32(p.block_tables.clone())),
        ("inv_freq", HostList::F32(model.inv_freq().to_vec())),
    ]
}
