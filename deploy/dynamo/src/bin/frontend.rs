//! `higgs-dynamo-frontend`: Dynamo's OpenAI HTTP frontend (the `dynamo-llm` library code that
//! `python -m dynamo.frontend` runs), here as one binary for hosts without Dynamo's Python
//! packages. It watches discovery for registered models and routes `/v1/audio/speech` to the
//! Higgs workers with the chosen router mode.

use clap::Parser;
use dynamo_llm::entrypoint::input::{run_input, Input};
use dynamo_llm::entrypoint::{EngineConfig, RouterConfig};
use dynamo_llm::local_model::LocalModelBuilder;
use dynamo_runtime::pipeline::RouterMode;
use dynamo_runtime::{DistributedRuntime, Worker};

#[derive(Parser)]
#[command(about = "Dynamo's OpenAI frontend for Higgs Audio workers")]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    http_host: String,
    #[arg(long, default_value_t = 8000)]
    http_port: u16,
    /// How requests are spread over the workers of a model.
    #[arg(long, default_value = "least-loaded", value_parser = ["round-robin", "random", "power-of-two", "least-loaded"])]
    router_mode: String,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    dynamo_runtime::logging::init();
    let mode = match a.router_mode.as_str() {
        "round-robin" => RouterMode::RoundRobin,
        "random" => RouterMode::Random,
        "power-of-two" => RouterMode::PowerOfTwoChoices,
        _ => RouterMode::LeastLoaded,
    };
    Worker::from_settings()?.execute(move |rt| async move {
        let drt = DistributedRuntime::from_settings(rt).await?;
        let model = LocalModelBuilder::default()
            .http_host(Some(a.http_host.clone()))
            .http_port(a.http_port)
            .router_config(Some(RouterConfig {
                router_mode: mode,
                ..RouterConfig::default()
            }))
            .build()
            .await?;
        eprintln!(
            "higgs-dynamo-frontend: http://{}:{} ({} routing)",
            a.http_host, a.http_port, a.router_mode
        );
        let cfg = EngineConfig::Dynamic {
            model: Box::new(model),
            chat_engine_factory: None,
            prefill_load_estimator: None,
        };
        run_input(drt, Input::Http, cfg).await
    })
}
