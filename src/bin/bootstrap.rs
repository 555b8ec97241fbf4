//! The Lambda function: configuration and client built once, then the runtime loop.

// The handler's future nests the pipeline's (store, lease, derive) deeply enough to pass
// the compiler's default query depth when its layout is computed.
#![recursion_limit = "256"]

use hsm_audit::config::{Config, Logging};
use hsm_audit::digest::anchor::Anchoring;
use hsm_audit::digest::kms::DigestSigner;
use hsm_audit::lambda::{deadline_of, serve_invocation};
use hsm_audit::publish::Publisher;
use hsm_audit::store::dynamodb::{DynamoStore, connect};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[global_allocator]
static ALLOCATOR: hsm_audit::Allocator = hsm_audit::Allocator;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON lines under the template's LoggingConfig (AWS_LAMBDA_LOG_FORMAT=JSON).
    Logging::from_env().init();
    let config = Config::from_env(None)?;
    let store = DynamoStore::new(connect().await, &config.table_name)
        .with_signer(DigestSigner::from_env().await)
        .with_anchoring(Anchoring::from_env().await?)
        .with_publisher(Publisher::from_env().await);
    let (store, config) = (&store, &config);
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = deadline_of(event.context.deadline);
        serve_invocation(
            event.payload,
            &event.context.request_id,
            deadline,
            store,
            config,
        )
        .await
    }))
    .await
}
