//! `higgs serve` as a child process on the fixture model (127.0.0.1, ephemeral port) and a
//! small blocking HTTP client, shared by tests/server.rs and tests/load.rs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference")
}

pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("higgs-server-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A test clip: two tones, 1.5 s at 16 kHz (the server resamples it).
pub fn clip_wav() -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
    for i in 0..24_000 {
        let t = i as f32 / 16_000.0;
        let v = 0.4 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
            + 0.2 * (2.0 * std::f32::consts::PI * 660.0 * t).sin();
        w.write_sample((v * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
    cur.into_inner()
}

/// A preset folder in the reference's form (NAME.wav + NAME.txt).
pub fn preset_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tmpdir("presets");
        std::fs::write(d.join("baker.wav"), clip_wav()).unwrap();
        std::fs::write(d.join("baker.txt"), "The baker opens the shop.").unwrap();
        d
    })
    .clone()
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    pub fn start(name: &str, extra: &[&str]) -> Server {
        let f = fixtures();
        let log =
            std::env::temp_dir().join(format!("higgs-server-{name}-{}.log", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_higgs"))
            .args(["serve", "--model"])
            .arg(f.join("llm"))
            .arg("--audio-tokenizer")
            .arg(f.join("codec"))
            .arg("--tokenizer")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy-tokenizer.json"))
            .arg("--voices-dir")
            .arg(preset_dir())
            .args([
                "--port",
                "0",
                "--max-new-tokens",
                "30",
                "--max-context",
                "8192",
            ])
            .args(["--served-model-name", "higgs-test"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_default();
        let Some(base) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            panic!(
                "server did not start: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Server {
            child,
            base: base.to_string(),
            log,
        }
    }

    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// An OpenAI error object with this status and (when given) this `param`.
    pub fn expect_error(&self, status: u16, param: Option<&str>) -> String {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        let e = &v["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(e["type"].is_string(), "{v}");
        if let Some(p) = param {
            assert_eq!(e["param"], p, "{v}");
        }
        e["message"].as_str().unwrap().to_string()
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build(),
    )
}

pub fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.unwrap();
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = r
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

pub fn get(base: &str, path: &str) -> Reply {
    finish(agent().get(format!("{base}{path}")).call())
}

pub fn delete(base: &str, path: &str) -> Reply {
    finish(agent().delete(format!("{base}{path}")).call())
}

pub fn post_raw(base: &str, path: &str, ctype: &str, body: &[u8], key: Option<&str>) -> Reply {
    let mut req = agent()
        .post(format!("{base}{path}"))
        .header("Content-Type", ctype);
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    finish(req.send(body))
}

pub fn post(base: &str, path: &str, body: &Value) -> Reply {
    post_raw(
        base,
        path,
        "application/json",
        body.to_string().as_bytes(),
        None,
    )
}

/// `data:` payloads of an SSE body.
pub fn sse_events(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data event: {e:?}"))
                .to_string()
        })
        .collect()
}

pub fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

pub fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "higgs-test-boundary-7d2f";
    let mut body = Vec::new();
    for (name, filename, data) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: audio/wav\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub fn metric(base: &str, name: &str) -> f64 {
    let text = String::from_utf8(get(base, "/metrics").body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

pub fn wait_for(s: &Server, what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        if t0.elapsed() > timeout {
            let m = String::from_utf8_lossy(&get(&s.base, "/metrics").body).into_owned();
            let m: Vec<&str> = m.lines().filter(|l| !l.starts_with('#')).take(12).collect();
            panic!(
                "timed out waiting for {what}\nmetrics:\n{}\nserver log:\n{}",
                m.join("\n"),
                s.log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
