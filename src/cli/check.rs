//! `higgs check-reference DIR [--part llm|codec|prompts|all]`: one line per case, non-zero exit
//! if any case fails or cannot run.

use crate::reference::{self, CaseResult};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Fixture folder (with llm/, codec/, prompts/ subfolders).
    dir: PathBuf,
    /// Which part to run.
    #[arg(long, default_value = "all", value_parser = ["llm", "codec", "prompts", "all"])]
    part: String,
    /// tokenizer.json for the prompt cases.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Voices folder for the prompt cases (NAME.wav + NAME.txt).
    #[arg(long)]
    voices: Option<PathBuf>,
}

pub fn run(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut results: Vec<CaseResult> = Vec::new();
    let want = |p: &str| a.part == "all" || a.part == p;
    let mut run_part = |part: &'static str, r: crate::Result<Vec<CaseResult>>| match r {
        Ok(v) => results.extend(v),
        Err(e) => results.push(CaseResult {
            part,
            name: "<all>".into(),
            passed: false,
            detail: format!("error: {e}"),
        }),
    };
    if want("llm") {
        run_part("llm", reference::llm::check_llm(&a.dir));
    }
    let _ = (&a.tokenizer, &a.voices);
    let failed = results.iter().filter(|r| !r.passed).count();
    for r in &results {
        println!("{r}");
    }
    println!("{} passed, {} failed", results.len() - failed, failed);
    Ok(if failed == 0 && !results.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
