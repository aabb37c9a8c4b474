//! The health aggregator binary: load config, start telemetry, build, run.

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let settings = chatbot_common::server::start_process("health-aggregator");
    health_aggregator::build(&settings)?
        .run_until_stopped()
        .await
}
