//! The cluster a one-shot command (`tally sql`, `check`, `profile`) talks to: a running
//! coordinator given with `--coordinator`, or an embedded cluster made for this one command
//! and torn down after it, with the `--table`s registered either way.

use tally_coordinator::CoordinatorConfig;

use super::{LineageArgs, TargetArgs, parse_tables};
use crate::client::Client;
use crate::error::ClientError;
use crate::local::{LocalCluster, LocalClusterOptions};

pub(crate) struct Target {
    cluster: Option<LocalCluster>,
    pub(crate) client: Client,
}

impl Target {
    /// Connects (or starts the embedded cluster) and registers the `--table`s.
    pub(crate) async fn open(
        args: &TargetArgs,
        lineage: Option<&LineageArgs>,
    ) -> Result<Self, ClientError> {
        let tables = parse_tables(&args.tables)?;
        let target = match &args.coordinator {
            Some(endpoint) => Target {
                cluster: None,
                client: args.security.connect(endpoint).await?,
            },
            None => {
                let mut coordinator = CoordinatorConfig {
                    data_roots: args.data_roots.roots(),
                    table_dir: args.data_roots.table_dir(),
                    security: args.security.for_server()?,
                    ..Default::default()
                };
                if let Some(lineage) = lineage {
                    lineage.apply(&mut coordinator)?;
                }
                let cluster = LocalCluster::start_with(LocalClusterOptions {
                    workers: args.workers,
                    coordinator,
                    ..Default::default()
                })
                .await?;
                let client = match cluster.client().await {
                    Ok(client) => client,
                    Err(e) => {
                        cluster.shutdown().await;
                        return Err(e);
                    }
                };
                Target {
                    cluster: Some(cluster),
                    client,
                }
            }
        };
        for (name, path) in &tables {
            // The tables of an embedded cluster are the operator's own; a running
            // coordinator checks them against its data roots.
            let registered = match &target.cluster {
                Some(cluster) => cluster.register_table(name, path).await,
                None => target.client.register_table(name, path).await.map(|_| ()),
            };
            if let Err(e) = registered {
                target.close().await;
                return Err(e);
            }
        }
        Ok(target)
    }

    /// Stops the embedded cluster, if there is one.
    pub(crate) async fn close(self) {
        if let Some(cluster) = self.cluster {
            cluster.shutdown().await;
        }
    }
}
