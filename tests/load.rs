//! Load and fault test of `higgs serve` (CPU, fixture model, 127.0.0.1 only, bounded in count
//! and time): clients mixing streamed and whole responses, every format, preset, smart and
//! custom voices, while some disconnect at random points, some send malformed requests and
//! some read slowly. Every completed audio must equal its solo run byte for byte, every
//! malformed request must get an OpenAI error, nothing may be lost, the server's memory must
//! stay flat, all KV blocks must be free at the end and the process must never restart. Also:
//! SIGTERM under load drains (in-flight requests finish, new ones get 503, the process exits),
//! and custom voices survive `kill -9` at any moment.
//!
//! Sizes: `HIGGS_LOAD_REQUESTS` (default 240) and `HIGGS_LOAD_CLIENTS` (default 16);
//! `scripts/load-test.sh` runs 2,000 requests from 64 clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

#[path = "common/server_harness.rs"]
mod harness;
use harness::*;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of a process, bytes (Linux).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

const TEXTS: [&str; 4] = [
    "The quick brown fox jumps over the lazy dog.",
    "She sells shells by the shore.",
    "Every morning the baker opens the shop.",
    "Rain streams across the valley.",
];
const FORMATS: [&str; 6] = ["pcm", "mp3", "opus", "wav", "flac", "aac"];

fn templates(custom: &str) -> Vec<Value> {
    (0..12)
        .map(|i| {
            let voice = match i % 3 {
                0 => json!("alloy"),
                1 => json!("baker"),
                _ => json!({"id": custom}),
            };
            json!({
                "model": "higgs-test",
                "input": TEXTS[i % 4],
                "voice": voice,
                "response_format": FORMATS[i % 6],
                "seed": 1000 + i,
                "max_new_tokens": 16 + (i % 4) * 6,
            })
        })
        .collect()
}

fn with(mut v: Value, k: &str, x: Value) -> Value {
    v[k] = x;
    v
}

/// Sends `body` to /v1/audio/speech on a raw socket.
fn raw_speech(addr: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /v1/audio/speech HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

/// A streamed request read in small pieces with pauses; returns the de-chunked body.
fn slow_read(base: &str, body: &Value) -> Result<Vec<u8>, String> {
    let r = agent()
        .post(format!("{base}/v1/audio/speech"))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("HTTP {}", r.status()));
    }
    let mut reader = r.into_body().into_reader();
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                std::thread::sleep(Duration::from_millis(3));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Malformed or invalid requests and the status each must get.
fn malformed(rng: &mut impl Rng, base: &str, addr: &str) -> Result<(), String> {
    let (status, reply) = match rng.gen_range(0..9) {
        0 => (
            400,
            post_raw(
                base,
                "/v1/audio/speech",
                "application/json",
                b"{\"input\": \"x",
                None,
            ),
        ),
        1 => (400, post(base, "/v1/audio/speech", &json!({"input": 7}))),
        2 => (
            404,
            post(
                base,
                "/v1/audio/speech",
                &json!({"input": "hi", "voice": "nobody"}),
            ),
        ),
        3 => (
            400,
            post(
                base,
                "/v1/audio/speech",
                &json!({"input": "a ".repeat(3000)}),
            ),
        ),
        4 => (
            400,
            post(
                base,
                "/v1/audio/speech",
                &json!({"input": "x <|eot_id|> y"}),
            ),
        ),
        5 => (
            400,
            post(
                base,
                "/v1/audio/speech",
                &json!({"input": "hi", "response_format": "midi"}),
            ),
        ),
        6 => (
            400,
            post(
                base,
                "/v1/chat/completions",
                &json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "bm90IGF1ZGlv"}}]}]}),
            ),
        ),
        7 => (
            404,
            post(
                base,
                "/v1/audio/speech",
                &json!({"input": "hi", "model": "tts-1"}),
            ),
        ),
        _ => {
            // Not HTTP at all: the connection gets a 400 or is closed, never a crash.
            let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let junk: Vec<u8> = (0..200).map(|_| rng.gen::<u8>()).collect();
            let _ = s.write_all(&junk);
            let _ = s.write_all(b"\r\n\r\n");
            let mut b = Vec::new();
            let _ = s.read_to_end(&mut b);
            let text = String::from_utf8_lossy(&b);
            if !(b.is_empty() || text.starts_with("HTTP/1.1 4")) {
                return Err(format!("garbage got {text:?}"));
            }
            return Ok(());
        }
    };
    if reply.status != status {
        return Err(format!(
            "malformed request got {} (wanted {status}): {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ));
    }
    let v: Value = serde_json::from_slice(&reply.body).map_err(|e| e.to_string())?;
    if !v["error"]["message"].is_string() {
        return Err(format!("no OpenAI error object: {v}"));
    }
    Ok(())
}

fn create_voice(base: &str) -> String {
    let wav = clip_wav();
    let (ctype, body) = multipart(&[
        ("name", None, b"loadvoice"),
        ("transcript", None, b"She sells shells by the shore."),
        ("audio_sample", Some("clip.wav"), &wav),
    ]);
    let r = post_raw(base, "/v1/audio/voices", &ctype, &body, None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().unwrap().to_string()
}

/// What the load phase saw: per kind (whole ok, streamed ok, disconnected, malformed, slow
/// readers), and the failures.
struct Phase {
    counts: [usize; 5],
    failures: Vec<String>,
}

/// `n` requests from `clients` threads with the fault mix of the module doc; request `i`'s
/// choices come from seed `seed + i`.
#[allow(clippy::too_many_arguments)]
fn run_phase(
    n: usize,
    clients: usize,
    seed: u64,
    base: &str,
    addr: &str,
    tpl: &[Value],
    whole: &[Vec<u8>],
    streamed: &[Vec<u8>],
) -> Phase {
    let next = AtomicUsize::new(0);
    let counts = Mutex::new([0usize; 5]); // ok, streamed ok, disconnected, malformed, slow
    let failures = Mutex::new(Vec::<String>::new());
    std::thread::scope(|sc| {
        for _ in 0..clients {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed + i as u64);
                let k = rng.gen_range(0..tpl.len());
                let roll = rng.gen_range(0..100);
                let (slot, result) = if roll < 20 {
                    // Disconnect at a random point: before the head, mid-body, or at once.
                    let stream = rng.gen_bool(0.5);
                    let body = if stream {
                        with(tpl[k].clone(), "stream_format", json!("audio"))
                    } else {
                        tpl[k].clone()
                    };
                    let mut sock = raw_speech(addr, &body.to_string());
                    let want = rng.gen_range(0..4000);
                    let mut buf = vec![0u8; want];
                    let _ = sock.read(&mut buf);
                    drop(sock);
                    (2, Ok(()))
                } else if roll < 30 {
                    (3, malformed(&mut rng, base, addr))
                } else if roll < 35 {
                    let body = with(tpl[k].clone(), "stream_format", json!("audio"));
                    let r = slow_read(base, &body).and_then(|b| {
                        if b == streamed[k] {
                            Ok(())
                        } else {
                            Err(format!(
                                "slow read of template {k}: {} bytes differ from solo",
                                b.len()
                            ))
                        }
                    });
                    (4, r)
                } else if rng.gen_bool(0.5) {
                    let r = post(base, "/v1/audio/speech", &tpl[k]);
                    let ok = r.status == 200 && r.body == whole[k];
                    (
                        0,
                        if ok {
                            Ok(())
                        } else {
                            Err(format!(
                                "whole template {k}: HTTP {} with {} bytes",
                                r.status,
                                r.body.len()
                            ))
                        },
                    )
                } else {
                    let r = post(
                        base,
                        "/v1/audio/speech",
                        &with(tpl[k].clone(), "stream_format", json!("audio")),
                    );
                    let ok = r.status == 200 && r.body == streamed[k];
                    (
                        1,
                        if ok {
                            Ok(())
                        } else {
                            Err(format!(
                                "streamed template {k}: HTTP {} with {} bytes",
                                r.status,
                                r.body.len()
                            ))
                        },
                    )
                };
                counts.lock().unwrap()[slot] += 1;
                if let Err(e) = result {
                    failures.lock().unwrap().push(format!("request {i}: {e}"));
                }
            });
        }
    });
    Phase {
        counts: counts.into_inner().unwrap(),
        failures: failures.into_inner().unwrap(),
    }
}

#[test]
fn load_with_faults_loses_nothing_and_leaks_nothing() {
    let n = env_usize("HIGGS_LOAD_REQUESTS", 240);
    let clients = env_usize("HIGGS_LOAD_CLIENTS", 16);
    let mut s = Server::start("load", &["--max-queue", "4096"]);
    let pid = s.child.id();
    let base = s.base.clone();
    let addr = s.addr();
    let custom = create_voice(&base);
    let tpl = templates(&custom);
    // Solo runs: the expected bytes, whole and streamed.
    let whole: Vec<Vec<u8>> = tpl
        .iter()
        .map(|t| {
            let r = post(&base, "/v1/audio/speech", t);
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            r.body
        })
        .collect();
    let streamed: Vec<Vec<u8>> = tpl
        .iter()
        .map(|t| {
            post(
                &base,
                "/v1/audio/speech",
                &with(t.clone(), "stream_format", json!("audio")),
            )
            .body
        })
        .collect();
    // Warm-up: a quarter of the load with the same mix (allocator arenas, thread pools and
    // stacks, caches reach their working size).
    let warm = run_phase(
        (n / 4).max(8 * clients),
        clients,
        0x3a43_0000,
        &base,
        &addr,
        &tpl,
        &whole,
        &streamed,
    );
    assert!(
        warm.failures.is_empty(),
        "warm-up failures:\n{}",
        warm.failures.join("\n")
    );
    wait_for(
        &s,
        "the engine to go idle",
        Duration::from_secs(120),
        || metric(&base, "higgs_requests_in_flight") == 0.0,
    );
    let rss_warm = rss_bytes(pid);
    let t0 = Instant::now();
    let phase = run_phase(
        n,
        clients,
        0x10ad_0000,
        &base,
        &addr,
        &tpl,
        &whole,
        &streamed,
    );
    let secs = t0.elapsed().as_secs_f64();
    wait_for(
        &s,
        "the engine to go idle",
        Duration::from_secs(120),
        || {
            metric(&base, "higgs_requests_in_flight") == 0.0
                && metric(&base, "higgs_kv_blocks_used") == 0.0
        },
    );
    let rss_end = rss_bytes(pid);
    let c = phase.counts;
    let failures = phase.failures;
    println!(
        "load: {n} requests from {clients} clients in {secs:.1} s: {} whole and {} streamed \
         matched their solo runs, {} disconnected, {} malformed answered, {} slow readers; RSS \
         after warm-up {:.1} MB, at the end {:.1} MB",
        c[0],
        c[1],
        c[2],
        c[3],
        c[4],
        rss_warm as f64 / 1e6,
        rss_end as f64 / 1e6
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(c.iter().sum::<usize>(), n, "every request accounted for");
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "the server process exited:\n{}",
        s.log()
    );
    // Memory flat: within 10% of the warmed-up size plus 8 MiB. glibc's per-thread arenas
    // keep settling after the warm-up: measured here, the process ends near 37 MB after 240
    // requests, 38.8 MB after 960 and 39.6 MB after 2,000, 2-4 MB above its warmed-up size
    // however long the run (a plateau, not a slope), which alone broke a bare 10% bound
    // about one run in three. A leak of a request's audio (~100 KB a second of speech) over
    // these 240 requests is 24 MB; `scripts/load-test.sh` (2,000 requests) catches a leak of
    // 4 KB a request.
    let allowed = rss_warm as f64 * 1.10 + 8.0 * 1024.0 * 1024.0;
    assert!(
        rss_end as f64 <= allowed,
        "RSS grew from {rss_warm} to {rss_end} bytes (allowed {allowed:.0}) over {n} requests"
    );
    // Still serving, same process.
    let r = post(&base, "/v1/audio/speech", &tpl[0]);
    assert_eq!(r.body, whole[0]);
    assert_eq!(s.child.id(), pid);
}

/// Frames sent so far, or None once the server no longer answers.
fn metric_or_none(base: &str) -> Option<f64> {
    let r = agent().get(format!("{base}/metrics")).call().ok()?;
    let text = r.into_body().read_to_string().ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("higgs_generated_frames_total "))
        .and_then(|v| v.trim().parse().ok())
}

/// Sends SIGTERM to the server.
fn sigterm(s: &Server) {
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
}

/// Posts `body` on fresh connections until the draining server answers 503 (for at most 10 s
/// after `t0`, the signal) and returns that answer. A refused connection fails the test with
/// `why()` (what was still in flight) and the server log.
fn probe_until_503(s: &Server, body: &Value, t0: Instant, why: impl Fn() -> String) -> Reply {
    while t0.elapsed() < Duration::from_secs(10) {
        let sent = agent()
            .post(format!("{}/v1/audio/speech", s.base))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes());
        if let Err(e) = &sent {
            panic!(
                "probe while draining failed ({e}) {:.0} ms after SIGTERM: {}\n{}",
                t0.elapsed().as_secs_f64() * 1e3,
                why(),
                s.log()
            );
        }
        let r = finish(sent);
        if r.status == 503 {
            return r;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no 503 while draining\n{}", s.log());
}

/// Waits (at most 30 s) for the server to exit after `what`, and checks it exited 0.
fn wait_exit(s: &mut Server, what: &str) {
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the server did not exit after {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}\n{}", s.log());
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits() {
    let mut s = Server::start("sigterm", &["--shutdown-timeout", "60"]);
    let base = s.base.clone();
    // Long-form work, chunked a word at a time, so the requests stay in flight for hundreds of
    // engine steps after the signal: one sentence (about 25 frames with the fixture weights)
    // ends within ~50 ms, and on a loaded 2-core CI machine the server then drained and exited
    // before the first probe below could connect.
    let body = json!({"input": TEXTS.join(" "), "response_format": "pcm", "stream_format": "audio",
        "seed": 3, "max_new_tokens": 40, "chunk_method": "word", "chunk_max_word_num": 1});
    let solo = post(&base, "/v1/audio/speech", &body).body;
    let solo_frames = solo.len() / 1920;
    assert!(
        solo_frames > 100,
        "the long-form request made only {solo_frames} frames: too short to keep a drain open"
    );
    // Slow readers keep their responses in flight while the signal arrives.
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (b, body) = (base.clone(), body.clone());
            std::thread::spawn(move || slow_read(&b, &body))
        })
        .collect();
    wait_for(&s, "the requests to start", Duration::from_secs(60), || {
        metric(&base, "higgs_generated_frames_total") > solo_frames as f64
    });
    sigterm(&s);
    // New work is refused while the old finishes.
    let t0 = Instant::now();
    let r = probe_until_503(&s, &body, t0, || {
        format!(
            "frames sent {:?} of {}: the server stopped accepting before its requests finished?",
            metric_or_none(&base),
            4 * solo_frames
        )
    });
    assert!(r.header("retry-after").is_some());
    r.expect_error(503, None);
    assert_eq!(get(&base, "/health").status, 503);
    for r in readers {
        let got = r.join().unwrap().expect("an in-flight request completes");
        assert_eq!(got, solo, "a drained request still gets its whole audio");
    }
    wait_exit(&mut s, "draining");
    assert!(s.log().contains("shutting down"), "{}", s.log());
}

#[test]
fn sigterm_waits_for_a_voice_upload_still_arriving() {
    let store = tmpdir("drain-upload");
    let store_arg = store.display().to_string();
    let mut s = Server::start(
        "drain-upload",
        &["--voices-store", &store_arg, "--shutdown-timeout", "60"],
    );
    let base = s.base.clone();
    let addr = s.addr();
    let (ctype, body) = multipart(&[
        ("name", None, b"late"),
        ("transcript", None, b"The baker opens the shop."),
        ("audio_sample", Some("clip.wav"), &clip_wav()),
    ]);
    // Headers and half the body now, the rest after the signal.
    let mut up = TcpStream::connect(&addr).unwrap();
    up.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        up,
        "POST /v1/audio/voices HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let half = body.len() / 2;
    up.write_all(&body[..half]).unwrap();
    up.flush().unwrap();
    wait_for(
        &s,
        "the upload's handler to start",
        Duration::from_secs(60),
        || metric(&base, "higgs_http_requests_in_flight") >= 1.0,
    );
    sigterm(&s);
    // No speech is running, but the upload is: the server keeps accepting and refuses new
    // work with 503 (a server that thought itself idle stopped accepting at once).
    let probe = json!({"input": "hi", "response_format": "pcm", "max_new_tokens": 4});
    let t0 = Instant::now();
    probe_until_503(&s, &probe, t0, || {
        "the server stopped accepting while an upload was still arriving".into()
    });
    // Still accepting well after the signal (the first probe may have been accepted before
    // the server saw it).
    std::thread::sleep(Duration::from_millis(300));
    for path in ["/v1/audio/speech", "/health"] {
        let sent = if path == "/health" {
            agent().get(format!("{base}{path}")).call()
        } else {
            agent()
                .post(format!("{base}{path}"))
                .header("Content-Type", "application/json")
                .send(probe.to_string().as_bytes())
        };
        match sent {
            Ok(r) => assert_eq!(r.status().as_u16(), 503, "{path} while draining"),
            Err(e) => panic!(
                "{path} failed ({e}) {:.0} ms after SIGTERM: the server stopped accepting while \
                 an upload was still arriving\n{}",
                t0.elapsed().as_secs_f64() * 1e3,
                s.log()
            ),
        }
    }
    // The upload finishes and is stored whole.
    up.write_all(&body[half..]).unwrap();
    let mut reply = Vec::new();
    up.read_to_end(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "the upload in flight at SIGTERM failed:\n{reply}\n{}",
        s.log()
    );
    let json_start = reply.find("\r\n\r\n").unwrap() + 4;
    let v: Value = serde_json::from_str(reply[json_start..].trim()).unwrap_or_else(|e| {
        panic!("upload reply is not JSON ({e}): {reply}");
    });
    let id = v["id"].as_str().expect("a voice id").to_string();
    wait_exit(&mut s, "the upload finished");
    let saved = std::fs::read(store.join(format!("{id}.json"))).expect("the voice file");
    assert!(serde_json::from_slice::<Value>(&saved).is_ok());
}

#[test]
fn custom_voices_survive_kill_9_at_any_moment() {
    let store = tmpdir("kill9");
    let store_arg = store.display().to_string();
    let wav = clip_wav();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut created: Vec<String> = Vec::new();
    for round in 0..4 {
        let mut s = Server::start(&format!("kill9-{round}"), &["--voices-store", &store_arg]);
        // Everything created before the last kill is still there and usable.
        let listed = get(&s.base, "/v1/audio/voices").json();
        for id in &created {
            assert!(
                listed["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v["id"] == id.as_str()),
                "round {round}: voice {id} lost"
            );
        }
        if let Some(id) = created.last() {
            let r = post(
                &s.base,
                "/v1/audio/speech",
                &json!({"input": "hi", "voice": {"id": id}, "response_format": "pcm", "max_new_tokens": 12}),
            );
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
        // Uploads race a SIGKILL at a random moment.
        let base = s.base.clone();
        let wav2 = wav.clone();
        let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
        let uploader = std::thread::spawn(move || {
            let mut ok = Vec::new();
            for k in 0..50 {
                let (ctype, body) = multipart(&[
                    ("name", None, format!("v{k}").as_bytes()),
                    ("transcript", None, b"The baker opens the shop."),
                    ("audio_sample", Some("clip.wav"), &wav2),
                ]);
                let r = agent()
                    .post(format!("{base}/v1/audio/voices"))
                    .header("Content-Type", &ctype)
                    .send(&body[..]);
                match r {
                    Ok(mut r) if r.status() == 200 => {
                        let v: Value =
                            serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
                        ok.push(v["id"].as_str().unwrap().to_string());
                        let _ = first_tx.send(());
                    }
                    _ => break,
                }
            }
            ok
        });
        // The kill lands at a random moment after the round's first upload is stored (so the
        // rounds always have voices to lose, even when a loaded machine makes uploads slow),
        // most often in the middle of a later one.
        let _ = first_rx.recv_timeout(Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
        let _ = s.child.kill(); // SIGKILL
        let _ = s.child.wait();
        created.extend(uploader.join().unwrap());
        // No half-written voice file is left under a voice's name.
        for e in std::fs::read_dir(&store).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                let text = std::fs::read(e.path()).unwrap();
                assert!(
                    serde_json::from_slice::<Value>(&text).is_ok(),
                    "{name} is not a whole voice file"
                );
            }
        }
    }
    assert!(!created.is_empty(), "no upload finished before the kills");
    println!(
        "kill -9: {} voices created across 4 kills, none lost",
        created.len()
    );
}
