//! Lambda function for the events table's stream: sets up logging and the
//! store, then folds each batch of new events into live profiles.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shoprec::config::{dynamodb_client, load_sdk_config, Config};
use shoprec::store::DynamoStore;
use shoprec::stream::handle_stream_event;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shoprec::telemetry::init_json_logs();
    let config = Config::from_env()?;
    let sdk_config = load_sdk_config().await;
    let store = Arc::new(DynamoStore::new(dynamodb_client(&sdk_config), config.tables));

    run(service_fn(move |event: LambdaEvent<Event>| {
        let store = store.clone();
        async move { Ok::<_, Error>(handle_stream_event(&store, event.payload).await) }
    }))
    .await
}
