//! Tables: a name bound to Parquet or CSV files on the shared filesystem or in an S3 bucket.
//! The coordinator reads only their schemas and footers; workers read the data. The catalog
//! keeps them in the planning session and records them in the cluster state.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{CreateExternalTable, DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use tally_common::bucketing::BucketSpec;
use tally_common::kafka::{KafkaOptions, KafkaTopic};
use tally_common::object_stores::{ObjectStore, S3Options, register_bucket, s3_bucket};
use tally_meta::{SharedMetaStore, TableRecord, ViewManifest};

use super::bucketed_table::BucketedTable;
use super::data_roots::DataRoots;
use super::kafka_table::KafkaTable;
use super::s3_tables::register_s3_table;
use super::session::{base_config, base_runtime};
pub use super::table_format::TableFormat;
use super::table_pins::TablePins;
use super::views::{CompiledView, MaterializedViewTable, coverage_summary, generation_dir};
use crate::error::CoordinatorError;

#[derive(Debug, Clone)]
pub(crate) struct TableEntry {
    pub name: String,
    pub path: PathBuf,
    pub format: TableFormat,
    pub bucketing: Option<BucketSpec>,
    /// Set when the table is a materialized view.
    pub view: Option<ViewEntry>,
}

/// A materialized view: its manifest and the table that reads its current states.
#[derive(Debug, Clone)]
pub(crate) struct ViewEntry {
    pub manifest: ViewManifest,
    pub table: Arc<MaterializedViewTable>,
}

/// A table as `tally tables` lists it.
#[derive(Debug, Clone)]
pub(crate) struct TableView {
    pub name: String,
    pub path: PathBuf,
    pub format: TableFormat,
    pub schema: SchemaRef,
    /// e.g. "8 buckets by (o_orderkey)", when bucketed.
    pub bucketing: Option<String>,
    /// What a materialized view covers, e.g. "view of clicks: 12 inputs, 340 groups, ...".
    pub view: Option<String>,
}

/// The tables SQL can name: registered in the session every job's session starts from, and
/// recorded in the cluster state.
pub(crate) struct Catalog {
    base: SessionContext,
    tables: Mutex<BTreeMap<String, TableEntry>>,
    store: SharedMetaStore,
    /// Where tables may be read from and written to.
    pub data_roots: DataRoots,
    /// The options of every S3 bucket a table or view is in, for the workers. The cluster
    /// state records only those that are not secrets: after a restart these tables read with
    /// the recorded endpoint and region and the coordinator's environment's credentials.
    buckets: Mutex<BTreeMap<String, S3Options>>,
    /// Which tables running queries read, so partition swaps wait for them.
    pub pins: TablePins,
}

impl Catalog {
    pub(crate) fn new(store: SharedMetaStore, data_roots: DataRoots) -> Self {
        Self {
            base: SessionContext::new_with_config_rt(base_config(), base_runtime()),
            tables: Mutex::default(),
            store,
            data_roots,
            buckets: Mutex::default(),
            pins: TablePins::default(),
        }
    }

    /// The job settings that let workers read the S3 buckets of the tables (`tally.s3.*`).
    pub(crate) fn bucket_settings(&self) -> Vec<(String, String)> {
        let buckets = self.buckets.lock().expect("bucket list poisoned");
        buckets
            .iter()
            .map(|(bucket, options)| options.to_setting(bucket))
            .collect()
    }

    /// The options a bucket's tables were registered with (the environment alone for a
    /// bucket no table is in).
    pub(crate) fn bucket_options(&self, bucket: &str) -> S3Options {
        let buckets = self.buckets.lock().expect("bucket list poisoned");
        buckets.get(bucket).cloned().unwrap_or_default()
    }

    /// The client of `bucket` built with `options`, registered for the planning sessions
    /// and, through the job settings, for the workers.
    pub(crate) fn use_bucket(
        &self,
        bucket: &str,
        options: S3Options,
    ) -> Result<Arc<dyn ObjectStore>, CoordinatorError> {
        let store = options
            .build(bucket)
            .map_err(CoordinatorError::from_datafusion)?;
        register_bucket(&self.base.runtime_env(), bucket, store.clone());
        let mut buckets = self.buckets.lock().expect("bucket list poisoned");
        buckets.insert(bucket.to_string(), options);
        Ok(store)
    }

    /// What the cluster state may record of the options of the bucket `location` is in.
    fn recordable_options(&self, location: &str) -> BTreeMap<String, String> {
        match s3_bucket(location) {
            Some(Ok(bucket)) => self.bucket_options(&bucket).recordable(),
            _ => BTreeMap::new(),
        }
    }

    /// The session every job's session starts from.
    pub(crate) fn base(&self) -> &SessionContext {
        &self.base
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, TableEntry>> {
        self.tables.lock().expect("table list poisoned")
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.tables().contains_key(name)
    }

    /// Registers a table and records it in the cluster state.
    pub(crate) async fn register(
        &self,
        name: &str,
        path: &str,
        format: Option<TableFormat>,
    ) -> Result<TableView, CoordinatorError> {
        self.register_with(name, path, format, &HashMap::new())
            .await
    }

    /// Registers a table with its options (`aws.*` for an S3 location).
    pub(crate) async fn register_with(
        &self,
        name: &str,
        path: &str,
        format: Option<TableFormat>,
        options: &HashMap<String, String>,
    ) -> Result<TableView, CoordinatorError> {
        let entry = self.load(name, path, format, options).await?;
        let recorded = self.recordable_options(path);
        self.store
            .put_table(&TableRecord {
                name: entry.name.clone(),
                path: entry.path.to_string_lossy().to_string(),
                format: entry.format.as_str().to_string(),
                view: None,
                definition: None,
                options: recorded,
            })
            .await?;
        self.view(&entry.name).await
    }

    /// Registers a Kafka topic declared by `create` (whose text is `definition`) and records
    /// the statement in the cluster state, to be planned again after a restart.
    pub(crate) async fn register_kafka(
        &self,
        create: &CreateExternalTable,
        definition: &str,
    ) -> Result<TableView, CoordinatorError> {
        let entry = self.load_kafka(create).await?;
        self.store
            .put_table(&TableRecord {
                name: entry.name.clone(),
                path: entry.path.to_string_lossy().to_string(),
                format: entry.format.as_str().to_string(),
                view: None,
                definition: Some(definition.to_string()),
                options: BTreeMap::new(),
            })
            .await?;
        self.view(&entry.name).await
    }

    async fn load_kafka(
        &self,
        create: &CreateExternalTable,
    ) -> Result<TableEntry, CoordinatorError> {
        let name = create.name.table();
        check_table_name(name)?;
        let [location] = create.locations.as_slice() else {
            return Err(CoordinatorError::Query(
                "a Kafka table takes one LOCATION: 'host:port/topic'".to_string(),
            ));
        };
        let topic = KafkaTopic::parse(location).map_err(CoordinatorError::from_datafusion)?;
        let options = KafkaOptions::from_table_options(&create.options)
            .map_err(CoordinatorError::from_datafusion)?;
        if create.schema.fields().is_empty() {
            return Err(CoordinatorError::Query(format!(
                "Kafka table {name}: declare the columns of the record values, e.g. \
                 CREATE EXTERNAL TABLE {name} (ad BIGINT, country VARCHAR) STORED AS KAFKA ..."
            )));
        }
        let table = KafkaTable::open(topic.clone(), options, create.schema.as_arrow())
            .await
            .map_err(|e| {
                let message = format!("table {name}: {}", crate::error::one_line(&e.to_string()));
                match e {
                    DataFusionError::IoError(_) => CoordinatorError::Unavailable(message),
                    _ if message.contains("does not exist") => CoordinatorError::NotFound(message),
                    _ => CoordinatorError::Query(message),
                }
            })?;
        self.base
            .deregister_table(name)
            .map_err(CoordinatorError::from_datafusion)?;
        self.base
            .register_table(name, Arc::new(table))
            .map_err(CoordinatorError::from_datafusion)?;
        let entry = TableEntry {
            name: name.to_string(),
            path: PathBuf::from(topic.location()),
            format: TableFormat::Kafka,
            bucketing: None,
            view: None,
        };
        tracing::info!(table = %entry.name, topic = %topic.location(), "Kafka table registered");
        self.tables().insert(entry.name.clone(), entry.clone());
        Ok(entry)
    }

    async fn load(
        &self,
        name: &str,
        path: &str,
        format: Option<TableFormat>,
        options: &HashMap<String, String>,
    ) -> Result<TableEntry, CoordinatorError> {
        // Data roots guard the local filesystem; a bucket is guarded by its credentials.
        let entry = match s3_bucket(path) {
            Some(bucket) => {
                let bucket = bucket.map_err(CoordinatorError::from_datafusion)?;
                let options = S3Options::from_table_options(options)
                    .map_err(CoordinatorError::from_datafusion)?;
                check_table_name(name)?;
                let table =
                    register_s3_table(&self.base, name, path, &bucket, &options, format).await?;
                if let Some(spec) = &table.bucketing {
                    bucket_table(&self.base, name, spec).await?;
                }
                let mut buckets = self.buckets.lock().expect("bucket list poisoned");
                buckets.insert(bucket, options);
                TableEntry {
                    name: name.to_string(),
                    path: PathBuf::from(table.location),
                    format: table.format,
                    bucketing: table.bucketing,
                    view: None,
                }
            }
            None => {
                let path = self.data_roots.check(path)?;
                register_table(&self.base, name, &path.to_string_lossy(), format).await?
            }
        };
        tracing::info!(table = %entry.name, path = %entry.path.display(), format = entry.format.as_str(), "table registered");
        self.tables().insert(entry.name.clone(), entry.clone());
        Ok(entry)
    }

    /// Loads the tables the cluster state holds. Recorded tables were admitted when they were
    /// registered, so their folders are allowed again; a table whose files are gone stays
    /// recorded but unregistered.
    pub(crate) async fn restore(&self) -> Result<(), CoordinatorError> {
        let (views, tables): (Vec<_>, Vec<_>) = self
            .store
            .tables()
            .await?
            .into_iter()
            .partition(|t| t.view.is_some());
        for table in tables {
            if let Some(definition) = &table.definition {
                if let Err(error) = self.restore_declared(definition).await {
                    tracing::error!(table = %table.name, %error, "cannot load a recorded table");
                }
                continue;
            }
            let format = TableFormat::parse(&table.format)?;
            self.data_roots.allow(&table.path);
            let options: HashMap<String, String> = table.options.into_iter().collect();
            let loaded = self
                .load(&table.name, &table.path, Some(format), &options)
                .await;
            if let Err(error) = loaded {
                tracing::error!(table = %table.name, %error, "cannot load a recorded table");
            }
        }
        // Views after their sources: a view is planned against its source.
        for table in views {
            let Some(manifest) = table.view else { continue };
            self.data_roots.allow(&table.path);
            let loaded = async {
                if let Some(bucket) = s3_bucket(&table.path) {
                    let bucket = bucket.map_err(CoordinatorError::from_datafusion)?;
                    let options: HashMap<String, String> = table.options.into_iter().collect();
                    let options = S3Options::from_table_options(&options)
                        .map_err(CoordinatorError::from_datafusion)?;
                    self.use_bucket(&bucket, options)?;
                }
                let view = CompiledView::compile(&self.base.state(), &manifest.query).await?;
                let dir = Path::new(&table.path);
                let states = self.open_view(dir, &manifest, Arc::new(view))?;
                self.register_view(&table.name, dir, manifest, states)
            };
            if let Err(error) = loaded.await {
                tracing::error!(view = %table.name, %error, "cannot load a recorded materialized view");
            }
        }
        Ok(())
    }

    /// A table recorded by its `CREATE EXTERNAL TABLE` statement (a Kafka topic).
    async fn restore_declared(&self, definition: &str) -> Result<(), CoordinatorError> {
        let plan = self
            .base
            .state()
            .create_logical_plan(definition)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) => {
                self.load_kafka(&create).await.map(|_| ())
            }
            _ => Err(CoordinatorError::Internal(format!(
                "a recorded table definition is not CREATE EXTERNAL TABLE: {definition}"
            ))),
        }
    }

    /// Makes `manifest` the view's contents: recorded in the cluster state first (the commit
    /// point: a refresh that fails before it leaves the view as it was), then readable.
    pub(crate) async fn commit_view(
        &self,
        name: &str,
        dir: &Path,
        manifest: ViewManifest,
        view: Arc<CompiledView>,
    ) -> Result<(), CoordinatorError> {
        let table = self.open_view(dir, &manifest, view)?;
        self.store
            .put_table(&TableRecord {
                name: name.to_string(),
                path: dir.to_string_lossy().to_string(),
                format: TableFormat::Parquet.as_str().to_string(),
                view: Some(manifest.clone()),
                definition: None,
                options: self.recordable_options(&dir.to_string_lossy()),
            })
            .await?;
        self.register_view(name, dir, manifest, table)
    }

    fn open_view(
        &self,
        dir: &Path,
        manifest: &ViewManifest,
        view: Arc<CompiledView>,
    ) -> Result<Arc<MaterializedViewTable>, CoordinatorError> {
        let spec = BucketSpec::new(manifest.bucket_by.clone(), manifest.buckets)
            .map_err(CoordinatorError::from_datafusion)?;
        let states = generation_dir(dir, manifest.generation);
        MaterializedViewTable::open(view, &states, spec)
            .map(Arc::new)
            .map_err(CoordinatorError::from_datafusion)
    }

    fn register_view(
        &self,
        name: &str,
        dir: &Path,
        manifest: ViewManifest,
        table: Arc<MaterializedViewTable>,
    ) -> Result<(), CoordinatorError> {
        self.base
            .deregister_table(name)
            .map_err(CoordinatorError::from_datafusion)?;
        self.base
            .register_table(name, table.clone())
            .map_err(CoordinatorError::from_datafusion)?;
        let bucketing = BucketSpec::new(manifest.bucket_by.clone(), manifest.buckets).ok();
        tracing::info!(view = %name, generation = manifest.generation, "materialized view registered");
        self.tables().insert(
            name.to_string(),
            TableEntry {
                name: name.to_string(),
                path: dir.to_path_buf(),
                format: TableFormat::Parquet,
                bucketing,
                view: Some(ViewEntry { manifest, table }),
            },
        );
        Ok(())
    }

    /// Every materialized view, by name.
    pub(crate) fn views(&self) -> Vec<(String, ViewEntry)> {
        self.tables()
            .values()
            .filter_map(|e| e.view.clone().map(|v| (e.name.clone(), v)))
            .collect()
    }

    /// The table or view registered as `name`.
    pub(crate) fn entry(&self, name: &str) -> Option<TableEntry> {
        self.tables().get(name).cloned()
    }

    pub(crate) async fn list(&self) -> Result<Vec<TableView>, CoordinatorError> {
        let names: Vec<String> = self.tables().keys().cloned().collect();
        let mut tables = Vec::new();
        for name in names {
            tables.push(self.view(&name).await?);
        }
        Ok(tables)
    }

    async fn view(&self, name: &str) -> Result<TableView, CoordinatorError> {
        let entry = self
            .tables()
            .get(name)
            .cloned()
            .ok_or_else(|| CoordinatorError::NotFound(format!("no table named {name}")))?;
        let table = self
            .base
            .table_provider(name)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        let view = match &entry.view {
            Some(view) => {
                Some(coverage_summary(&self.base.state(), &view.manifest, &view.table).await)
            }
            None => None,
        };
        Ok(TableView {
            name: entry.name,
            path: entry.path,
            format: entry.format,
            schema: table.schema(),
            bucketing: entry.bucketing.map(|b| b.to_string()),
            view,
        })
    }

    /// Drops a table from the session and the cluster state.
    pub(crate) async fn drop_table(
        &self,
        name: &str,
        if_exists: bool,
    ) -> Result<(), CoordinatorError> {
        let existed = self.tables().remove(name).is_some();
        self.base
            .deregister_table(name)
            .map_err(CoordinatorError::from_datafusion)?;
        if !existed && !if_exists {
            return Err(CoordinatorError::NotFound(format!("no table named {name}")));
        }
        self.store.delete_table(name).await?;
        Ok(())
    }
}

pub(crate) fn check_table_name(name: &str) -> Result<(), CoordinatorError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(CoordinatorError::Query(format!(
            "invalid table name '{name}': use letters, digits and _"
        )));
    }
    Ok(())
}

/// Registers `path` as table `name` in `ctx`, replacing a table of the same name.
pub(crate) async fn register_table(
    ctx: &SessionContext,
    name: &str,
    path: &str,
    format: Option<TableFormat>,
) -> Result<TableEntry, CoordinatorError> {
    check_table_name(name)?;
    let path = std::fs::canonicalize(path).map_err(|e| {
        CoordinatorError::NotFound(format!("table {name}: cannot open {path}: {e}"))
    })?;
    let format = match format {
        Some(format) => format,
        None => TableFormat::guess(&path)?,
    };
    let location = path.to_string_lossy().to_string();
    let location = if path.is_dir() && !location.ends_with('/') {
        format!("{location}/")
    } else {
        location
    };
    format
        .register(
            ctx,
            name,
            &location,
            !path.is_dir(),
            &path.display().to_string(),
        )
        .await?;
    let bucketing = match format {
        TableFormat::Parquet if path.is_dir() => {
            BucketSpec::read(&path).map_err(CoordinatorError::from_datafusion)?
        }
        _ => None,
    };
    if let Some(spec) = &bucketing {
        bucket_table(ctx, name, spec).await?;
    }
    Ok(TableEntry {
        name: name.to_string(),
        path,
        format,
        bucketing,
        view: None,
    })
}

/// Replaces the files of table `name` in `ctx` with the same files read by bucket.
async fn bucket_table(
    ctx: &SessionContext,
    name: &str,
    spec: &BucketSpec,
) -> Result<(), CoordinatorError> {
    let files = ctx
        .table_provider(name)
        .await
        .map_err(CoordinatorError::from_datafusion)?;
    spec.partitioning(&files.schema())
        .map_err(|e| CoordinatorError::Query(format!("table {name}: {e}")))?;
    ctx.deregister_table(name)
        .map_err(CoordinatorError::from_datafusion)?;
    ctx.register_table(name, Arc::new(BucketedTable::new(files, spec.clone())))
        .map_err(CoordinatorError::from_datafusion)?;
    Ok(())
}
