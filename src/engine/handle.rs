//! The engine thread and its handle: one thread owns the device (model, KV cache, codec) and
//! loops schedule -> execute -> output processing -> batched codec decode; callers on any
//! thread `submit` requests and read each one's event stream. Dropping a stream aborts its
//! request (its blocks return within one step); `abort` does so explicitly. A bounded number
//! of requests may be in flight (`max_queue`): past it `submit` answers `Error::Overloaded`
//! at once instead of queueing without bound. Stats for metrics are published after every
//! step. May use: `engine::{core, output}`, `codec`, `tokenizer`.
//!
//! Counterparts: vLLM `v1/engine/async_llm.py` + `core_client.py`; mistral.rs's engine thread
//! (`engine/add_request.rs`), without its global statics: everything lives in the handle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use super::core::{Engine, EngineConfig, EngineCounters};
use super::output::{OutputProcessor, RequestEvent, TtsRequest};
use crate::codec::model::AudioTokenizer;
use crate::delay::DelayPattern;
use crate::error::{Error, Result};
use crate::kv::prefix::PrefixStats;
use crate::model::Model;
use crate::scheduler::policy::SchedulerStats;
use crate::tokenizer::TextTokenizer;

/// Everything the engine thread owns, built on that thread (a CUDA context is then current
/// where it is used).
pub struct EngineParts {
    pub model: Arc<Model>,
    pub codec: AudioTokenizer,
    pub tokenizer: Arc<TextTokenizer>,
    pub config: EngineConfig,
}

/// Handle options.
#[derive(Clone, Copy, Debug)]
pub struct HandleConfig {
    /// Requests in flight (queued or running) before `submit` refuses.
    pub max_queue: usize,
}

impl Default for HandleConfig {
    fn default() -> Self {
        HandleConfig { max_queue: 1024 }
    }
}

/// A snapshot of the engine, published after every step.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineStats {
    /// Requests in flight (each may run several long-form chunks).
    pub requests: usize,
    pub running_seqs: usize,
    pub waiting_seqs: usize,
    pub kv_blocks_total: usize,
    /// Blocks held by sequences or by the prefix cache while referenced.
    pub kv_blocks_used: usize,
    pub kv_blocks_cached: usize,
    pub prefix: PrefixStats,
    pub sched: SchedulerStats,
    pub engine: EngineCounters,
    pub codec_decode_calls: u64,
    pub codec_windows: u64,
}

pub type RequestId = u64;

/// A submit on its way: the engine's reply, the request's events, a command sender for aborts.
type Submitted = (
    oneshot::Receiver<Result<RequestId>>,
    UnboundedReceiver<RequestEvent>,
    mpsc::Sender<Command>,
);

/// In-flight accounting shared by the handle and the thread: submits sent but not yet
/// handled (each decremented exactly once, by the thread), and requests the thread holds.
#[derive(Default)]
struct Counts {
    pending_submits: AtomicUsize,
    active: AtomicUsize,
}

impl Counts {
    fn in_flight(&self) -> usize {
        self.pending_submits.load(Ordering::SeqCst) + self.active.load(Ordering::SeqCst)
    }
}

enum Command {
    Submit {
        req: Box<TtsRequest>,
        events: UnboundedSender<RequestEvent>,
        reply: oneshot::Sender<Result<RequestId>>,
    },
    Abort(RequestId),
    /// Encode a mono clip (resampled to the codec rate first) to codec codes.
    Encode {
        samples: Vec<f32>,
        sample_rate_hz: u32,
        reply: oneshot::Sender<Result<Vec<Vec<u32>>>>,
    },
    /// Fault injection: the next step with work fails.
    FailNextStep,
    Shutdown,
}

/// The events of one request; dropping it aborts the request.
pub struct EventStream {
    id: RequestId,
    rx: UnboundedReceiver<RequestEvent>,
    cmd: mpsc::Sender<Command>,
    done: bool,
}

impl EventStream {
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The next event, waiting on the calling thread (not inside an async runtime).
    pub fn blocking_next(&mut self) -> Option<RequestEvent> {
        let ev = self.rx.blocking_recv();
        self.note(&ev);
        ev
    }

    /// The next event, for async callers.
    pub async fn next(&mut self) -> Option<RequestEvent> {
        let ev = self.rx.recv().await;
        self.note(&ev);
        ev
    }

    fn note(&mut self, ev: &Option<RequestEvent>) {
        if matches!(
            ev,
            None | Some(RequestEvent::Finished { .. }) | Some(RequestEvent::Failed(_))
        ) {
            self.done = true;
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.cmd.send(Command::Abort(self.id));
        }
    }
}

/// Submits requests to the engine thread. Cloneable; the thread stops when the last handle
/// is dropped (or on `shutdown`), after failing what is still in flight.
#[derive(Clone)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

struct Inner {
    cmd: Mutex<mpsc::Sender<Command>>,
    stats: Arc<Mutex<EngineStats>>,
    counts: Arc<Counts>,
    cfg: HandleConfig,
    tokenizer: Arc<TextTokenizer>,
    model: Arc<Model>,
    sample_rate: usize,
    engine_cfg: EngineConfig,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(tx) = self.cmd.lock() {
            let _ = tx.send(Command::Shutdown);
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl EngineHandle {
    /// Starts the engine thread; `build` runs on it and loads the model and codec. Returns
    /// once they are loaded (or with the loading error).
    pub fn spawn<F>(build: F, cfg: HandleConfig) -> Result<EngineHandle>
    where
        F: FnOnce() -> Result<EngineParts> + Send + 'static,
    {
        Self::spawn_in(build, cfg, None, "higgs-engine".into())
    }

    /// [`EngineHandle::spawn`] with the engine's CPU compute confined to `threads` (a rayon
    /// pool of its own, so replicas sharing one host split its cores instead of contending
    /// for the global pool) and a thread name (`higgs-engine-1`, ...).
    pub fn spawn_in<F>(
        build: F,
        cfg: HandleConfig,
        threads: Option<Arc<rayon::ThreadPool>>,
        name: String,
    ) -> Result<EngineHandle>
    where
        F: FnOnce() -> Result<EngineParts> + Send + 'static,
    {
        let (cmd_tx, cmd_rx) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let stats = Arc::new(Mutex::new(EngineStats::default()));
        let counts = Arc::new(Counts::default());
        let (stats2, counts2) = (stats.clone(), counts.clone());
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || match threads {
                Some(pool) => {
                    pool.install(move || engine_main(build, ready_tx, cmd_rx, stats2, counts2))
                }
                None => engine_main(build, ready_tx, cmd_rx, stats2, counts2),
            })
            .map_err(|e| Error::Other(format!("cannot start the engine thread: {e}")))?;
        let (tokenizer, model, sample_rate, engine_cfg) = ready_rx
            .recv()
            .map_err(|_| Error::Other("the engine thread died while loading".into()))??;
        Ok(EngineHandle {
            inner: Arc::new(Inner {
                cmd: Mutex::new(cmd_tx),
                stats,
                counts,
                cfg,
                tokenizer,
                model,
                sample_rate,
                engine_cfg,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    pub fn tokenizer(&self) -> &Arc<TextTokenizer> {
        &self.inner.tokenizer
    }

    /// The model (its config; the engine thread does all compute).
    pub fn model(&self) -> &Arc<Model> {
        &self.inner.model
    }

    /// Output sample rate (24 kHz for the released codec).
    pub fn sample_rate(&self) -> usize {
        self.inner.sample_rate
    }

    pub fn stats(&self) -> EngineStats {
        self.inner.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// The engine's sizing (batch rows, sequences, KV blocks).
    pub fn engine_config(&self) -> &EngineConfig {
        &self.inner.engine_cfg
    }

    /// Requests in flight past which `submit` refuses.
    pub fn max_queue(&self) -> usize {
        self.inner.cfg.max_queue
    }

    /// Requests submitted and not yet finished (queued, waiting for admission or running).
    pub fn in_flight(&self) -> usize {
        self.inner.counts.in_flight()
    }

    /// The engine thread is still running (false once it stopped or died).
    pub fn is_alive(&self) -> bool {
        self.inner
            .thread
            .lock()
            .map(|t| t.as_ref().is_some_and(|t| !t.is_finished()))
            .unwrap_or(false)
    }

    fn sender(&self) -> Result<mpsc::Sender<Command>> {
        self.inner
            .cmd
            .lock()
            .map(|tx| tx.clone())
            .map_err(|_| Error::Other("engine handle poisoned".into()))
    }

    fn begin_submit(&self, req: TtsRequest) -> Result<Submitted> {
        let limit = self.inner.cfg.max_queue;
        let counts = &self.inner.counts;
        let now = counts.in_flight();
        if now >= limit {
            return Err(Error::Overloaded(format!(
                "{now} requests in flight, the queue holds {limit}; retry later"
            )));
        }
        counts.pending_submits.fetch_add(1, Ordering::SeqCst);
        let (ev_tx, ev_rx) = unbounded_channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        let cmd = self.sender()?;
        if cmd
            .send(Command::Submit {
                req: Box::new(req),
                events: ev_tx,
                reply: reply_tx,
            })
            .is_err()
        {
            counts.pending_submits.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Other("the engine thread has stopped".into()));
        }
        Ok((reply_rx, ev_rx, cmd))
    }

    /// Queues a request; returns once the engine accepted it (its prompt is built and it can
    /// fit) or with the reason it refused. Blocking: not for async contexts.
    pub fn submit(&self, req: TtsRequest) -> Result<EventStream> {
        let (reply, rx, cmd) = self.begin_submit(req)?;
        let id = reply
            .blocking_recv()
            .map_err(|_| Error::Other("the engine thread has stopped".into()))??;
        Ok(EventStream {
            id,
            rx,
            cmd,
            done: false,
        })
    }

    /// `submit` for async callers.
    pub async fn submit_async(&self, req: TtsRequest) -> Result<EventStream> {
        let (reply, rx, cmd) = self.begin_submit(req)?;
        let id = reply
            .await
            .map_err(|_| Error::Other("the engine thread has stopped".into()))??;
        Ok(EventStream {
            id,
            rx,
            cmd,
            done: false,
        })
    }

    fn begin_encode(
        &self,
        samples: Vec<f32>,
        sample_rate_hz: u32,
    ) -> Result<oneshot::Receiver<Result<Vec<Vec<u32>>>>> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Command::Encode {
                samples,
                sample_rate_hz,
                reply,
            })
            .map_err(|_| Error::Other("the engine thread has stopped".into()))?;
        Ok(rx)
    }

    /// Codec codes `[n_q][T]` of a mono clip at `sample_rate_hz` (resampled to the codec's
    /// rate as voice prompts are). Runs on the engine thread, between steps. Blocking.
    pub fn encode(&self, samples: Vec<f32>, sample_rate_hz: u32) -> Result<Vec<Vec<u32>>> {
        self.begin_encode(samples, sample_rate_hz)?
            .blocking_recv()
            .map_err(|_| Error::Other("the engine thread has stopped".into()))?
    }

    /// `encode` for async callers.
    pub async fn encode_async(
        &self,
        samples: Vec<f32>,
        sample_rate_hz: u32,
    ) -> Result<Vec<Vec<u32>>> {
        self.begin_encode(samples, sample_rate_hz)?
            .await
            .map_err(|_| Error::Other("the engine thread has stopped".into()))?
    }

    /// Aborts a request (no-op when it already ended).
    pub fn abort(&self, id: RequestId) {
        if let Ok(tx) = self.sender() {
            let _ = tx.send(Command::Abort(id));
        }
    }

    /// Fault injection for tests: the next engine step with work fails, failing the requests
    /// in it.
    pub fn fail_next_step(&self) {
        if let Ok(tx) = self.sender() {
            let _ = tx.send(Command::FailNextStep);
        }
    }

    /// Stops the engine thread now: requests in flight fail ("the engine stopped"), later
    /// submits are refused. (Dropping the last handle does the same and waits for the thread.)
    pub fn shutdown(&self) {
        if let Ok(tx) = self.sender() {
            let _ = tx.send(Command::Shutdown);
        }
    }

    /// Waits until the engine has no request in flight or `timeout` passes; true when idle.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            let s = self.stats();
            if self.inner.counts.in_flight() == 0
                && s.requests == 0
                && s.running_seqs == 0
                && s.waiting_seqs == 0
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }
}

/// What the loaded engine tells its handle.
type Ready = (Arc<TextTokenizer>, Arc<Model>, usize, EngineConfig);

/// The engine thread's body: load, report ready, loop until shutdown.
fn engine_main<F>(
    build: F,
    ready_tx: mpsc::Sender<Result<Ready>>,
    cmd_rx: mpsc::Receiver<Command>,
    stats: Arc<Mutex<EngineStats>>,
    counts: Arc<Counts>,
) where
    F: FnOnce() -> Result<EngineParts>,
{
    let (p, engine) = match build().and_then(|p| {
        let engine = Engine::new(p.model.clone(), p.config)?;
        Ok((p, engine))
    }) {
        Ok(x) => x,
        Err(e) => {
            let _ = ready_tx.send(Err(e));
            return;
        }
    };
    let _ = ready_tx.send(Ok((
        p.tokenizer.clone(),
        p.model.clone(),
        p.codec.sample_rate(),
        p.config,
    )));
    let mut l = EngineLoop {
        engine,
        codec: p.codec,
        tokenizer: p.tokenizer,
        out: OutputProcessor::new(DelayPattern::of(&p.model.cfg)),
        stats,
        counts,
    };
    l.run(cmd_rx);
}

struct EngineLoop {
    engine: Engine,
    codec: AudioTokenizer,
    tokenizer: Arc<TextTokenizer>,
    out: OutputProcessor<UnboundedSender<RequestEvent>>,
    stats: Arc<Mutex<EngineStats>>,
    counts: Arc<Counts>,
}

impl EngineLoop {
    fn run(&mut self, rx: mpsc::Receiver<Command>) {
        loop {
            // Idle: block for the next command; busy: take what is there and step.
            let first = if self.out.num_requests() == 0 && !self.engine.has_work() {
                match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => break,
                }
            } else {
                None
            };
            let mut stop = false;
            for c in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                if !self.command(c) {
                    stop = true;
                }
            }
            if stop {
                break;
            }
            if self.engine.has_work() {
                match self.engine.step() {
                    Ok(events) => self.out.process(&mut self.engine, &self.tokenizer, events),
                    Err(e) => self.out.fail_all(&mut self.engine, &e),
                }
            }
            self.out.decode_ready(&mut self.engine, &self.codec);
            self.publish();
        }
        let err = Error::Other("the engine stopped".into());
        self.out.fail_all(&mut self.engine, &err);
        self.publish();
    }

    /// Handles one command; false on shutdown.
    fn command(&mut self, c: Command) -> bool {
        match c {
            Command::Submit { req, events, reply } => {
                let id = self.engine.next_arrival();
                let r = self
                    .out
                    .submit(
                        &mut self.engine,
                        &self.codec,
                        &self.tokenizer,
                        id,
                        *req,
                        events,
                    )
                    .map(|()| id);
                self.counts
                    .active
                    .store(self.out.num_requests(), Ordering::SeqCst);
                self.counts.pending_submits.fetch_sub(1, Ordering::SeqCst);
                if reply.send(r).is_err() {
                    // The submitter went away before hearing back.
                    let _ = self.out.abort(&mut self.engine, id);
                }
            }
            Command::Abort(id) => {
                let _ = self.out.abort(&mut self.engine, id);
            }
            Command::Encode {
                samples,
                sample_rate_hz,
                reply,
            } => {
                let rate = self.codec.sample_rate() as u32;
                let r = crate::audio::resample::resample(&samples, sample_rate_hz, rate)
                    .and_then(|x| self.codec.encode(&x));
                let _ = reply.send(r);
            }
            Command::FailNextStep => self.engine.fail_next_step(),
            Command::Shutdown => return false,
        }
        true
    }

    fn publish(&mut self) {
        let n = self.out.num_requests();
        self.counts.active.store(n, Ordering::SeqCst);
        let sched = self.engine.scheduler();
        let kv = sched.kv();
        let s = EngineStats {
            requests: n,
            running_seqs: sched.num_running(),
            waiting_seqs: sched.num_waiting(),
            kv_blocks_total: kv.num_blocks(),
            kv_blocks_used: kv.num_blocks() - kv.num_free_blocks(),
            kv_blocks_cached: kv.num_cached_blocks(),
            prefix: kv.prefix_stats(),
            sched: sched.stats(),
            engine: self.engine.counters(),
            codec_decode_calls: self.out.decode_calls,
            codec_windows: self.out.decoded_windows,
        };
        if let Ok(mut st) = self.stats.lock() {
            *st = s;
        }
    }
}
