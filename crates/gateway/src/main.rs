//! The gateway binary: load config, start telemetry, build, run.

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let settings = chatbot_common::server::start_process("gateway");
    gateway::build(&settings)?.run_until_stopped().await
}
