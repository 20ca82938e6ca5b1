//! Build script: with `--features cuda`, compiles every `kernels/*.cu` into a fatbin (sm_80 and
//! sm_90a cubins plus compute_80 PTX, so one binary runs on A100/H100/H200 and JITs on newer
//! parts) and generates `OUT_DIR/kernels.rs`: one image constant per file, a `Module` enum and a
//! `Kernel` enum parsed from the entry names ptxas reports, so Rust never types a kernel name.
//! Without the feature it does nothing. See STYLE.md §2 (build.rs) and README "CUDA build".
//!
//! nvcc is found through `NVCC`, `CUDA_HOME/bin/nvcc`, `PATH`, then the project-local
//! `.cuda-toolchain/` made by `scripts/install-cuda-toolchain.sh`; if none exists the build fails
//! naming all of them (a CUDA build must never silently skip its kernels).
//! The ptxas resource report (registers, shared memory, spills per entry and arch) is written to
//! `OUT_DIR/kernel-resources.txt` and copied to `<target dir>/kernel-resources.txt`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `-gencode` pairs: cubins for Ampere and Hopper (sm_90a unlocks wgmma/TMA), plus compute_80 PTX
/// as the forward-compatible fallback the driver can JIT.
const GENCODE: &[&str] = &[
    "arch=compute_80,code=sm_80",
    "arch=compute_90a,code=sm_90a",
    "arch=compute_80,code=compute_80",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo:rerun-if-changed=kernels");
    for var in ["NVCC", "CUDA_HOME", "HIGGS_NVCC_FLAGS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let nvcc = find_nvcc(&manifest_dir);
    let sources = kernel_sources(&manifest_dir.join("kernels"));

    // nvcc is single-threaded per file and slow; compile files in parallel.
    let results: Vec<(PathBuf, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = sources
            .iter()
            .map(|src| {
                let nvcc = &nvcc;
                let out_dir = &out_dir;
                s.spawn(move || compile(nvcc, src, out_dir))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("nvcc worker thread panicked"))
            })
            .collect()
    });

    let mut report = String::new();
    let mut modules = Vec::new();
    for (src, (fatbin, ptxas_log)) in sources.iter().zip(results) {
        let stem = file_stem(src);
        let entries = parse_entries(&ptxas_log);
        if entries.is_empty() {
            panic!("kernels/{stem}.cu defines no extern \"C\" __global__ entry point");
        }
        let _ = writeln!(report, "==== kernels/{stem}.cu ====\n{ptxas_log}");
        modules.push((stem, fatbin, entries));
    }

    let generated = generate(&modules);
    write(&out_dir.join("kernels.rs"), &generated);
    write(&out_dir.join("kernel-resources.txt"), &report);
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out: four levels up is the target dir.
    if let Some(target_dir) = out_dir.ancestors().nth(4) {
        let _ = std::fs::write(target_dir.join("kernel-resources.txt"), &report);
    }
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("cargo did not set {key}"))
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_else(|| panic!("kernel file name is not UTF-8: {}", path.display()))
        .to_string()
}

fn find_nvcc(manifest_dir: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("NVCC") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return p;
        }
        panic!("NVCC={} does not exist", p.display());
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        let p = PathBuf::from(home).join("bin").join("nvcc");
        if p.is_file() {
            return p;
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("nvcc");
            if p.is_file() {
                return p;
            }
        }
    }
    let local = manifest_dir.join(".cuda-toolchain/nvidia/cu13/bin/nvcc");
    if local.is_file() {
        return local;
    }
    panic!(
        "--features cuda needs nvcc (CUDA 13.0) and none was found. Looked at $NVCC, \
         $CUDA_HOME/bin/nvcc, every directory on $PATH, and {}. Install the pinned toolchain \
         with scripts/install-cuda-toolchain.sh, or set NVCC or CUDA_HOME.",
        local.display()
    );
}

fn kernel_sources(dir: &Path) -> Vec<PathBuf> {
    let rd = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    v.sort();
    v
}

/// Compiles one file to `OUT_DIR/<stem>.fatbin`; returns its path and ptxas's `-v` log.
fn compile(nvcc: &Path, src: &Path, out_dir: &Path) -> (PathBuf, String) {
    let stem = file_stem(src);
    let fatbin = out_dir.join(format!("{stem}.fatbin"));
    let mut cmd = Command::new(nvcc);
    cmd.args(["-fatbin", "-std=c++17", "-O3", "-lineinfo", "-Xptxas", "-v"]);
    for g in GENCODE {
        cmd.args(["-gencode", g]);
    }
    // The pip toolchain keeps CCCL headers apart; harmless for a full toolkit.
    if let Some(root) = nvcc.parent().and_then(|b| b.parent()) {
        cmd.arg(format!("-I{}", root.join("include").display()));
        cmd.arg(format!("-I{}", root.join("include/cccl").display()));
    }
    if let Ok(extra) = std::env::var("HIGGS_NVCC_FLAGS") {
        cmd.args(extra.split_whitespace());
    }
    cmd.arg("-o").arg(&fatbin).arg(src);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", nvcc.display()));
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        panic!(
            "nvcc failed on {}:\n{log}{}",
            src.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    (fatbin, log)
}

/// Unmangled entry names from ptxas lines `Compiling entry function 'name' for 'sm_XX'`.
/// Mangled (`_Z…`) names are internal template kernels and never get a `Kernel` variant.
fn parse_entries(ptxas_log: &str) -> Vec<String> {
    let mut names: Vec<String> = ptxas_log
        .lines()
        .filter_map(|l| l.split("Compiling entry function '").nth(1))
        .filter_map(|rest| rest.split('\'').next())
        .filter(|n| !n.starts_with("_Z"))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn generate(modules: &[(String, PathBuf, Vec<String>)]) -> String {
    let mut s = String::from("// @generated by build.rs from kernels/*.cu; do not edit.\n\n");
    for (stem, fatbin, _) in modules {
        let _ = writeln!(
            s,
            "/// Fatbin of `kernels/{stem}.cu`.\npub const {}: &[u8] = include_bytes!({:?});",
            stem.to_ascii_uppercase(),
            fatbin.display().to_string()
        );
    }
    s.push_str("\n/// One loadable image per `kernels/*.cu` file.\n");
    s.push_str("#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]\npub enum Module {\n");
    for (stem, _, _) in modules {
        let _ = writeln!(s, "    {},", pascal(stem));
    }
    s.push_str("}\n\nimpl Module {\n");
    let _ = writeln!(s, "    pub const COUNT: usize = {};", modules.len());
    s.push_str("    pub const ALL: [Module; Self::COUNT] = [");
    for (stem, _, _) in modules {
        let _ = write!(s, "Module::{}, ", pascal(stem));
    }
    s.push_str("];\n    pub fn index(self) -> usize {\n        self as usize\n    }\n");
    s.push_str("    pub fn name(self) -> &'static str {\n        match self {\n");
    for (stem, _, _) in modules {
        let _ = writeln!(s, "            Module::{} => {stem:?},", pascal(stem));
    }
    s.push_str(
        "        }\n    }\n    pub fn image(self) -> &'static [u8] {\n        match self {\n",
    );
    for (stem, _, _) in modules {
        let _ = writeln!(
            s,
            "            Module::{} => {},",
            pascal(stem),
            stem.to_ascii_uppercase()
        );
    }
    s.push_str("        }\n    }\n}\n\n");

    s.push_str("/// Every `extern \"C\"` entry point, named after its symbol.\n");
    s.push_str("#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]\npub enum Kernel {\n");
    for (_, _, entries) in modules {
        for e in entries {
            let _ = writeln!(s, "    {},", pascal(e));
        }
    }
    s.push_str("}\n\nimpl Kernel {\n    pub const ALL: &'static [Kernel] = &[\n");
    for (_, _, entries) in modules {
        for e in entries {
            let _ = writeln!(s, "        Kernel::{},", pascal(e));
        }
    }
    s.push_str("    ];\n    pub fn name(self) -> &'static str {\n        match self {\n");
    for (_, _, entries) in modules {
        for e in entries {
            let _ = writeln!(s, "            Kernel::{} => {e:?},", pascal(e));
        }
    }
    s.push_str("        }\n    }\n    pub fn module(self) -> Module {\n        match self {\n");
    for (stem, _, entries) in modules {
        for e in entries {
            let _ = writeln!(
                s,
                "            Kernel::{} => Module::{},",
                pascal(e),
                pascal(stem)
            );
        }
    }
    s.push_str("        }\n    }\n}\n");
    s
}
