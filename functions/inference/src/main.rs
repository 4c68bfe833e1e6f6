//! Lambda function for the inference routes: sets up logging and state, then serves.

use std::sync::Arc;

use lambda_http::{run, service_fn, Error, Request};
use shoprec::handlers::{handle, AppState, Function};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shoprec::telemetry::init_json_logs();
    let state = Arc::new(AppState::from_env(Function::Inference).await?);

    run(service_fn(move |request: Request| {
        let state = state.clone();
        async move { Ok::<_, Error>(handle(&state, request).await) }
    }))
    .await
}
