//! The configuration API from the command line, for the quickstart in
//! `docs/configuration-etcd.md`. Talks to layotto-rs on 127.0.0.1:34904 (or `$LAYOTTO_ADDRESS`),
//! store `config_demo`, app `app1`, group `application`, label `prod`:
//!
//! ```text
//! cargo run --example configuration -- save KEY CONTENT [TAG=VALUE...]
//! cargo run --example configuration -- get [KEY...]
//! cargo run --example configuration -- delete KEY...
//! cargo run --example configuration -- subscribe
//! ```
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line client: the answers are its output"
)]

use std::collections::HashMap;

use futures_util::{StreamExt, stream};
use layotto_proto::runtime::{
    ConfigurationItem, DeleteConfigurationRequest, GetConfigurationRequest,
    SaveConfigurationRequest, SubscribeConfigurationRequest, runtime_client::RuntimeClient,
};

const STORE: &str = "config_demo";
const APP: &str = "app1";
const GROUP: &str = "application";
const LABEL: &str = "prod";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::var("LAYOTTO_ADDRESS").unwrap_or_else(|_| "127.0.0.1:34904".into());
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut client = RuntimeClient::new(channel);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keys = args.iter().skip(1).cloned().collect::<Vec<_>>();
    match args.first().map(String::as_str) {
        Some("save") if args.len() >= 3 => {
            let tags = args[3..]
                .iter()
                .filter_map(|tag| tag.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let item = ConfigurationItem {
                key: args[1].clone(),
                content: args[2].clone(),
                group: GROUP.into(),
                label: LABEL.into(),
                tags,
                metadata: HashMap::new(),
            };
            client
                .save_configuration(SaveConfigurationRequest {
                    store_name: STORE.into(),
                    app_id: APP.into(),
                    items: vec![item],
                    metadata: HashMap::new(),
                })
                .await?;
            println!("saved {}", args[1]);
        }
        Some("get") => {
            let items = client
                .get_configuration(GetConfigurationRequest {
                    store_name: STORE.into(),
                    app_id: APP.into(),
                    group: GROUP.into(),
                    label: LABEL.into(),
                    keys,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .items;
            for item in items {
                println!("{} = {:?} tags {:?}", item.key, item.content, item.tags);
            }
        }
        Some("delete") if !keys.is_empty() => {
            client
                .delete_configuration(DeleteConfigurationRequest {
                    store_name: STORE.into(),
                    app_id: APP.into(),
                    group: GROUP.into(),
                    label: LABEL.into(),
                    keys,
                    metadata: HashMap::new(),
                })
                .await?;
            println!("deleted");
        }
        Some("subscribe") => {
            let request = SubscribeConfigurationRequest {
                store_name: STORE.into(),
                app_id: APP.into(),
                group: GROUP.into(),
                label: LABEL.into(),
                ..Default::default()
            };
            // The request stream stays open: the subscription lasts until Ctrl-C.
            let requests = stream::iter([request]).chain(stream::pending());
            // Answered once the watch is in place; from then on every change arrives.
            let mut changes = client.subscribe_configuration(requests).await?.into_inner();
            println!("subscribed to {APP} in {STORE}; waiting for changes");
            while let Some(change) = changes.message().await? {
                for item in change.items {
                    if item.metadata.get("deleted").is_some_and(|d| d == "true") {
                        println!("deleted {}", item.key);
                    } else {
                        println!(
                            "changed {} = {:?} tags {:?}",
                            item.key, item.content, item.tags
                        );
                    }
                }
            }
        }
        _ => {
            eprintln!(
                "usage: configuration save KEY CONTENT [TAG=VALUE...] | get [KEY...] | delete KEY... | subscribe"
            );
            std::process::exit(2);
        }
    }
    Ok(())
}
