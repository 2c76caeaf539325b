//! Creating, refreshing and dropping materialized views. A create or refresh is one job:
//! partial states of the source files to read, unioned with the stored states to keep,
//! merged per group into buckets and written by the workers as the view's next generation;
//! the job's finalizer then commits the new manifest through the cluster state in one write.
//! A job that fails leaves the view exactly as it was (its half-written generation is
//! removed), and one view is refreshed by one job at a time.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arrow::array::{RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::union::UnionExec;
use tally_common::bucketing::{BucketSinkExec, bucket_of};
use tally_common::ids::JobId;
use tally_common::object_stores::s3_bucket;
use tally_meta::{CoveredInput, CoveredOffset, ViewManifest};

use super::catalog::Catalog;
use super::catalog::TableFormat;
use super::explain::to_ipc;
use super::session::JobSession;
use super::views::{
    CompiledView, InputChanges, RefreshMode, ViewCandidate, ViewLocation, ViewStatement,
    answer_from_views, current_inputs, inputs_of, kafka_ranges, now_ms, records_after, restrict_to,
    touched_buckets,
};
use crate::error::CoordinatorError;
use crate::jobs::JobManager;
use crate::lineage::recorder::{LineageRecorder, WrittenTable};
use crate::options::kafka_max_records_per_task;

/// Runs the view statements and keeps one refresh per view at a time.
pub(crate) struct ViewJobs {
    catalog: Arc<Catalog>,
    jobs: Arc<JobManager>,
    table_dir: PathBuf,
    /// View name -> the job refreshing it (`None` while that job is being planned).
    refreshing: Mutex<HashMap<String, Option<JobId>>>,
    /// OpenLineage events of refreshes, when `--openlineage-url` is set.
    lineage: Option<Arc<LineageRecorder>>,
}

/// What one refresh reads and keeps.
struct RefreshWork {
    /// Partial states of the source files to read.
    read: Option<Arc<dyn ExecutionPlan>>,
    /// Stored states to keep.
    keep: Option<Arc<dyn ExecutionPlan>>,
    /// Files read; records read when the source is a Kafka topic.
    inputs_read: usize,
    /// The inputs the view covers once this refresh commits.
    covers: Vec<CoveredInput>,
    /// The Kafka offsets the view covers once this refresh commits.
    offsets: Vec<CoveredOffset>,
    /// Buckets no new input can change: their files are carried into the next generation
    /// as they are (hard links), not rewritten.
    carried: BTreeSet<usize>,
}

impl ViewJobs {
    pub(crate) fn new(
        catalog: Arc<Catalog>,
        jobs: Arc<JobManager>,
        table_dir: PathBuf,
        lineage: Option<Arc<LineageRecorder>>,
    ) -> Self {
        Self {
            catalog,
            jobs,
            table_dir,
            refreshing: Mutex::default(),
            lineage,
        }
    }

    pub(crate) async fn run(
        self: &Arc<Self>,
        statement: ViewStatement,
        sql: &str,
        session: JobSession,
        workers: usize,
    ) -> Result<JobId, CoordinatorError> {
        match statement {
            ViewStatement::Create {
                name,
                query,
                bucket_by,
                buckets,
                location,
            } => {
                if self.catalog.contains(&name) {
                    return Err(CoordinatorError::Query(format!(
                        "a table or view named {name} already exists"
                    )));
                }
                let view = CompiledView::compile(&session.ctx.state(), &query).await?;
                let source = &view.definition.source;
                if self.catalog.entry(source).is_some_and(|e| e.view.is_some()) {
                    return Err(CoordinatorError::Query(format!(
                        "{source} is a materialized view: a view reads a table of files"
                    )));
                }
                let location = match location {
                    Some(location) if s3_bucket(&location).is_some() => {
                        self.locate(location.trim_end_matches('/'))?
                    }
                    Some(dir) => ViewLocation::Local(self.catalog.data_roots.check(&dir)?),
                    None => {
                        let dir = self.table_dir.join(&name);
                        ViewLocation::Local(self.catalog.data_roots.check(&dir.to_string_lossy())?)
                    }
                };
                if !location.is_empty().await? {
                    return Err(CoordinatorError::Query(format!(
                        "cannot create view {name} at {}: it is not empty",
                        location.root().display()
                    )));
                }
                let bucket_by = bucket_by.unwrap_or_else(|| {
                    view.definition
                        .dimensions
                        .iter()
                        .map(|d| d.name.clone())
                        .collect()
                });
                let buckets = buckets.unwrap_or(session.partitions().max(1));
                view.bucket_spec(&bucket_by, buckets)?;
                let manifest = ViewManifest {
                    query,
                    source: source.clone(),
                    bucket_by,
                    buckets,
                    generation: 0,
                    inputs: Vec::new(),
                    offsets: Vec::new(),
                    groups: 0,
                    refreshed_at_ms: 0,
                };
                self.lock(&name)?;
                self.refresh(
                    sql,
                    &name,
                    location,
                    manifest,
                    view,
                    RefreshMode::Full,
                    session,
                    workers,
                )
                .await
            }
            ViewStatement::Refresh { name, mode } => {
                let entry = self.catalog.entry(&name).ok_or_else(|| {
                    CoordinatorError::NotFound(format!("no materialized view named {name}"))
                })?;
                let Some(current) = entry.view else {
                    return Err(CoordinatorError::Query(format!(
                        "{name} is a table, not a materialized view"
                    )));
                };
                // Planned again in this job's session: the source's files are listed now.
                let view =
                    CompiledView::compile(&session.ctx.state(), &current.manifest.query).await?;
                let location = self.locate(&entry.path.to_string_lossy())?;
                self.lock(&name)?;
                self.refresh(
                    sql,
                    &name,
                    location,
                    current.manifest,
                    view,
                    mode,
                    session,
                    workers,
                )
                .await
            }
            ViewStatement::Drop { name, if_exists } => {
                match self.catalog.entry(&name) {
                    Some(entry) if entry.view.is_some() => {
                        let location = self.locate(&entry.path.to_string_lossy())?;
                        self.lock(&name)?;
                        let dropped = self.catalog.drop_table(&name, false).await;
                        self.unlock(&name);
                        dropped?;
                        location.remove_all().await;
                    }
                    Some(_) => {
                        return Err(CoordinatorError::Query(format!(
                            "{name} is a table, not a materialized view: DROP TABLE {name}"
                        )));
                    }
                    None if if_exists => {}
                    None => {
                        return Err(CoordinatorError::NotFound(format!(
                            "no materialized view named {name}"
                        )));
                    }
                }
                let id = JobId::new_random();
                self.jobs.insert_finished(
                    id.clone(),
                    sql.to_string(),
                    Arc::new(Schema::empty()),
                    vec![],
                );
                Ok(id)
            }
        }
    }

    /// `plan` with the aggregations that an up-to-date view can answer read from the view's
    /// states (see `views/rewrite.rs`), and the names of the views used.
    pub(crate) async fn answer_from_views(
        &self,
        state: &SessionState,
        plan: LogicalPlan,
    ) -> Result<(LogicalPlan, Vec<String>), CoordinatorError> {
        let mut sources = HashSet::new();
        plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                sources.insert(scan.table_name.table().to_string());
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(CoordinatorError::from_datafusion)?;
        let mut candidates = Vec::new();
        for (name, view) in self.catalog.views() {
            if !sources.contains(&view.manifest.source) {
                continue;
            }
            // Records a view over a topic has not read yet are not files to read alongside.
            let over_kafka = self
                .catalog
                .entry(&view.manifest.source)
                .is_some_and(|e| e.format == TableFormat::Kafka);
            if over_kafka {
                continue;
            }
            // A view whose covered files all stand unchanged answers, with the files it does
            // not cover yet read alongside; one whose files changed or vanished does not.
            let Ok((_, current)) = current_inputs(state, view.table.compiled()).await else {
                continue;
            };
            let changes = InputChanges::between(&view.manifest.inputs, &current);
            if changes.rewritten().is_empty() {
                candidates.push(ViewCandidate {
                    name,
                    table: view.table,
                    uncovered: changes.new.into_iter().map(|i| i.path).collect(),
                });
            }
        }
        if candidates.is_empty() {
            return Ok((plan, Vec::new()));
        }
        let analyzed = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})
            .map_err(CoordinatorError::from_datafusion)?;
        answer_from_views(analyzed, &candidates).map_err(CoordinatorError::from_datafusion)
    }

    /// Where the view at `path` (a folder or `s3://bucket/prefix`) keeps its states; a
    /// bucket is read with the options its tables were registered with, or the environment.
    fn locate(&self, path: &str) -> Result<ViewLocation, CoordinatorError> {
        match s3_bucket(path) {
            Some(bucket) => {
                let bucket = bucket.map_err(CoordinatorError::from_datafusion)?;
                let store = self
                    .catalog
                    .use_bucket(&bucket, self.catalog.bucket_options(&bucket))?;
                Ok(ViewLocation::s3(path, &bucket, store))
            }
            None => Ok(ViewLocation::Local(PathBuf::from(path))),
        }
    }

    fn lock(&self, name: &str) -> Result<(), CoordinatorError> {
        let mut refreshing = self.refreshing.lock().expect("refresh locks poisoned");
        match refreshing.get(name) {
            Some(None) => {
                return Err(CoordinatorError::Conflict(format!(
                    "view {name} is being refreshed: run this once that refresh has ended"
                )));
            }
            // A job that has ended holds nothing, even before its watcher lets go.
            Some(Some(job)) if self.jobs.with_job(job, |j| !j.is_finished()) == Some(true) => {
                return Err(CoordinatorError::Conflict(format!(
                    "view {name} is being refreshed by job {job}: run this once that job has \
                     ended"
                )));
            }
            _ => {}
        }
        refreshing.insert(name.to_string(), None);
        Ok(())
    }

    fn unlock(&self, name: &str) {
        self.refreshing
            .lock()
            .expect("refresh locks poisoned")
            .remove(name);
    }

    /// Lets go of `name` if `job` still holds it (a later refresh may hold it by now).
    fn unlock_after(&self, name: &str, job: &JobId) {
        let mut refreshing = self.refreshing.lock().expect("refresh locks poisoned");
        if refreshing.get(name) == Some(&Some(job.clone())) {
            refreshing.remove(name);
        }
    }

    /// Starts the job that writes the view's next generation; the lock on `name` is held
    /// and released when the job ends (or at once when no job starts).
    #[allow(clippy::too_many_arguments)]
    async fn refresh(
        self: &Arc<Self>,
        sql: &str,
        name: &str,
        location: ViewLocation,
        manifest: ViewManifest,
        view: CompiledView,
        mode: RefreshMode,
        session: JobSession,
        workers: usize,
    ) -> Result<JobId, CoordinatorError> {
        let started = self
            .start_refresh(sql, name, location, manifest, view, mode, session, workers)
            .await;
        match &started {
            Ok((id, true)) => {
                self.refreshing
                    .lock()
                    .expect("refresh locks poisoned")
                    .insert(name.to_string(), Some(id.clone()));
                let this = self.clone();
                let (id, name) = (id.clone(), name.to_string());
                tokio::spawn(async move {
                    this.jobs.finished(&id).await;
                    this.unlock_after(&name, &id);
                });
            }
            Ok((_, false)) | Err(_) => self.unlock(name),
        }
        started.map(|(id, _)| id)
    }

    /// The refresh job's id, and whether a job runs (false: nothing to do, answered at once).
    #[allow(clippy::too_many_arguments)]
    async fn start_refresh(
        self: &Arc<Self>,
        sql: &str,
        name: &str,
        location: ViewLocation,
        manifest: ViewManifest,
        view: CompiledView,
        mode: RefreshMode,
        mut session: JobSession,
        workers: usize,
    ) -> Result<(JobId, bool), CoordinatorError> {
        let state = session.ctx.state();
        let id = JobId::new_random();
        let Some(work) = self
            .plan_work(&state, name, &manifest, &view, &mode)
            .await?
        else {
            let answer = answer(
                name,
                "none (nothing new)",
                0,
                covered_count(&manifest),
                manifest.groups,
                0,
            )?;
            self.jobs
                .insert_finished(id.clone(), sql.to_string(), answer.0, answer.1);
            return Ok((id, false));
        };
        if workers == 0 {
            return Err(CoordinatorError::NoWorkers);
        }
        let spec = view.bucket_spec(&manifest.bucket_by, manifest.buckets)?;
        let states = match (work.read, work.keep) {
            (Some(read), Some(keep)) => {
                UnionExec::try_new(vec![keep, read]).map_err(CoordinatorError::from_datafusion)?
            }
            (Some(only), None) | (None, Some(only)) => only,
            (None, None) => {
                return Err(CoordinatorError::Query(format!(
                    "view {name}: the source {} has no files to read",
                    manifest.source
                )));
            }
        };
        let merged = view
            .merge(states, &spec)
            .map_err(CoordinatorError::from_datafusion)?;
        let generation = manifest.generation + 1;
        // Left by a refresh that failed: never part of the view.
        location.remove_generation(generation).await;
        let sink = Arc::new(BucketSinkExec::new(merged, location.generation(generation)));
        // Task `b` writes bucket `b`: the merge must never be gathered into one task.
        session.rules.final_gather_max_groups = 0;
        if let Some(Ok(bucket)) = s3_bucket(&location.root().to_string_lossy()) {
            let (key, value) = self.catalog.bucket_options(&bucket).to_setting(&bucket);
            session.worker_settings.0.insert(key, value);
        }
        let distributed = session.distribute(&id, sink, workers)?;
        tracing::info!(job_id = %id, view = %name, mode = mode.as_str(), inputs_read = work.inputs_read, "view refresh submitted");

        let written = WrittenTable {
            table: name.to_string(),
            location: location.root().to_string_lossy().to_string(),
            schema: Schema::empty(),
            action: "refresh_view",
        };
        let view_query = manifest.query.clone();
        let catalog = self.catalog.clone();
        let name = name.to_string();
        let location = Arc::new(location);
        let failed = location.clone();
        let view = Arc::new(view);
        let inputs_read = work.inputs_read;
        let covers = work.covers;
        let offsets = work.offsets;
        let carried = work.carried;
        let mode_name = match &mode {
            RefreshMode::Range(predicate) => format!("range ({predicate})"),
            other => other.as_str().to_string(),
        };
        self.jobs.start_finalized(
            id.clone(),
            sql.to_string(),
            Arc::new(session.worker_settings.0),
            distributed,
            &session.rules,
            move || async move {
                location
                    .carry_buckets(manifest.generation, generation, &carried)
                    .await?;
                let groups = location.rows_in(generation).await?;
                let manifest = ViewManifest {
                    generation,
                    inputs: covers,
                    offsets,
                    groups,
                    refreshed_at_ms: now_ms(),
                    ..manifest
                };
                catalog
                    .commit_view(&name, location.root(), manifest.clone(), view)
                    .await?;
                location
                    .remove_generations_before(generation.saturating_sub(1))
                    .await;
                let rewritten = (manifest.buckets - carried.len()) as u64;
                answer(
                    &name,
                    &mode_name,
                    inputs_read,
                    covered_count(&manifest),
                    groups,
                    rewritten,
                )
                .map(Some)
            },
        );
        let jobs = self.jobs.clone();
        let watched = id.clone();
        tokio::spawn(async move {
            if !jobs.finished(&watched).await {
                failed.remove_generation(generation).await;
            }
        });
        if let Some(lineage) = &self.lineage {
            // The view's columns come from its query, whatever the refresh read this time.
            match super::spark::logical_plan(&state, &view_query).await {
                Ok(query) => {
                    let written = WrittenTable {
                        schema: query.schema().as_arrow().clone(),
                        ..written
                    };
                    lineage.follow_write(&self.jobs, &self.catalog, &id, sql, &query, written);
                }
                Err(e) => tracing::warn!(job_id = %id, "no lineage for the refresh: {e}"),
            }
        }
        Ok((id, true))
    }

    /// What a refresh in `mode` reads and keeps; `None` when there is nothing to do.
    async fn plan_work(
        &self,
        state: &SessionState,
        name: &str,
        manifest: &ViewManifest,
        view: &CompiledView,
        mode: &RefreshMode,
    ) -> Result<Option<RefreshWork>, CoordinatorError> {
        let (source_scan, current) = current_inputs(state, view).await?;
        let changes = InputChanges::between(&manifest.inputs, &current);
        let stored = || async {
            let entry = self.catalog.entry(name).and_then(|e| e.view);
            match entry {
                Some(entry) => entry
                    .table
                    .states()
                    .scan(state, None, &[], None)
                    .await
                    .map(Some)
                    .map_err(CoordinatorError::from_datafusion),
                None => Ok(None),
            }
        };
        let partial = |scan: Arc<dyn ExecutionPlan>| {
            view.partial(scan)
                .map_err(CoordinatorError::from_datafusion)
        };
        if kafka_ranges(&source_scan).is_some() {
            let covered = match mode {
                RefreshMode::Full => &[][..],
                RefreshMode::Incremental => &manifest.offsets[..],
                RefreshMode::Range(_) => {
                    return Err(CoordinatorError::Query(format!(
                        "view {name} reads the Kafka topic {}: refresh it with the new records \
                         (REFRESH MATERIALIZED VIEW {name}) or with every record the topic holds \
                         (FULL), not by range",
                        manifest.source
                    )));
                }
            };
            let max_records = kafka_max_records_per_task(state.config_options());
            let read = records_after(name, source_scan, covered, max_records)?;
            let keep = match mode {
                RefreshMode::Incremental if read.records == 0 => return Ok(None),
                RefreshMode::Incremental => stored().await?,
                _ => None,
            };
            return Ok(Some(RefreshWork {
                read: Some(partial(read.plan)?),
                keep,
                inputs_read: read.records as usize,
                covers: Vec::new(),
                offsets: read.covers,
                carried: BTreeSet::new(),
            }));
        }
        match mode {
            RefreshMode::Full => Ok(Some(RefreshWork {
                read: Some(partial(source_scan)?),
                keep: None,
                inputs_read: current.len(),
                covers: current,
                offsets: Vec::new(),
                carried: BTreeSet::new(),
            })),
            RefreshMode::Incremental => {
                let rewritten = changes.rewritten();
                if let Some(first) = rewritten.first() {
                    return Err(CoordinatorError::Query(format!(
                        "view {name}: {} covered input(s) changed or vanished since the last \
                         refresh (e.g. {}): run REFRESH MATERIALIZED VIEW {name} FULL, or \
                         REFRESH MATERIALIZED VIEW {name} WHERE <the range they hold>",
                        rewritten.len(),
                        first.path
                    )));
                }
                if changes.new.is_empty() {
                    return Ok(None);
                }
                let paths: HashSet<String> = changes.new.iter().map(|i| i.path.clone()).collect();
                let read = restrict_to(source_scan, &paths)
                    .map_err(CoordinatorError::from_datafusion)?
                    .map(partial)
                    .transpose()?;
                let mut covers = manifest.inputs.clone();
                covers.extend(changes.new.iter().cloned());
                covers.sort();
                let spec = view.bucket_spec(&manifest.bucket_by, manifest.buckets)?;
                let carried: BTreeSet<usize> = match touched_buckets(view, &spec, &changes.new) {
                    Some(touched) => (0..spec.buckets).filter(|b| !touched.contains(b)).collect(),
                    None => BTreeSet::new(),
                };
                // Only the stored states of the buckets that change are read and merged.
                let keep = match stored().await? {
                    Some(stored) if !carried.is_empty() => {
                        let files: HashSet<String> = inputs_of(&stored)
                            .map_err(CoordinatorError::from_datafusion)?
                            .into_iter()
                            .map(|f| f.path)
                            .filter(|path| {
                                let name = path.rsplit('/').next().unwrap_or_default();
                                bucket_of(name).is_some_and(|b| !carried.contains(&b))
                            })
                            .collect();
                        restrict_to(stored, &files).map_err(CoordinatorError::from_datafusion)?
                    }
                    other => other,
                };
                Ok(Some(RefreshWork {
                    read,
                    keep,
                    inputs_read: changes.new.len(),
                    covers,
                    offsets: Vec::new(),
                    carried,
                }))
            }
            RefreshMode::Range(predicate) => {
                let (over_states, over_source) = range_predicates(state, view, predicate)?;
                // The covered files as they are now; new files stay for an incremental refresh.
                let covered: HashSet<&str> =
                    manifest.inputs.iter().map(|i| i.path.as_str()).collect();
                let covers: Vec<CoveredInput> = current
                    .into_iter()
                    .filter(|i| covered.contains(i.path.as_str()))
                    .collect();
                let source = LogicalPlanBuilder::from(view.definition.input.clone())
                    .filter(over_source)
                    .and_then(|b| b.build())
                    .map_err(CoordinatorError::from_datafusion)?;
                let scan = state
                    .create_physical_plan(&source)
                    .await
                    .map_err(CoordinatorError::from_datafusion)?;
                let paths: HashSet<String> = covers.iter().map(|i| i.path.clone()).collect();
                let read = restrict_to(scan, &paths)
                    .map_err(CoordinatorError::from_datafusion)?
                    .map(partial)
                    .transpose()?;
                let keep = match stored().await? {
                    Some(stored) => {
                        let outside = Expr::IsNotTrue(Box::new(over_states));
                        let schema = DFSchema::try_from(view.state_schema.as_ref().clone())
                            .map_err(CoordinatorError::from_datafusion)?;
                        let outside = state
                            .create_physical_expr(outside, &schema)
                            .map_err(CoordinatorError::from_datafusion)?;
                        Some(Arc::new(
                            FilterExec::try_new(outside, stored)
                                .map_err(CoordinatorError::from_datafusion)?,
                        ) as Arc<dyn ExecutionPlan>)
                    }
                    None => None,
                };
                Ok(Some(RefreshWork {
                    read,
                    keep,
                    inputs_read: paths.len(),
                    covers,
                    offsets: Vec::new(),
                    carried: BTreeSet::new(),
                }))
            }
        }
    }
}

/// `predicate` over the view's dimensions, as a filter on its stored states and as a filter
/// on the source rows (each dimension replaced by its expression).
fn range_predicates(
    state: &SessionState,
    view: &CompiledView,
    predicate: &str,
) -> Result<(Expr, Expr), CoordinatorError> {
    let dimensions: Vec<&str> = view
        .definition
        .dimensions
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    let dimension_fields = view
        .state_schema
        .project(&(0..dimensions.len()).collect::<Vec<_>>())
        .map_err(|e| CoordinatorError::Internal(e.to_string()))?;
    let over_dimensions =
        DFSchema::try_from(dimension_fields).map_err(CoordinatorError::from_datafusion)?;
    let over_states = state
        .create_logical_expr(predicate, &over_dimensions)
        .map_err(|e| {
            CoordinatorError::Query(format!(
                "REFRESH ... WHERE {predicate} may name only the view's dimensions ({}): {}",
                dimensions.join(", "),
                crate::error::one_line(&e.to_string())
            ))
        })?;
    let over_source = over_states
        .clone()
        .transform(|expr| {
            Ok(match &expr {
                Expr::Column(column) => match view.definition.dimension(&column.name) {
                    Some(dimension) => Transformed::yes(dimension.expr.clone()),
                    None => Transformed::no(expr),
                },
                _ => Transformed::no(expr),
            })
        })
        .data()
        .map_err(CoordinatorError::from_datafusion)?;
    Ok((over_states, over_source))
}

/// Files covered; for a view over a Kafka topic, the offsets it has read (records, when the
/// partitions start at offset 0).
fn covered_count(manifest: &ViewManifest) -> u64 {
    if manifest.offsets.is_empty() {
        manifest.inputs.len() as u64
    } else {
        manifest.offsets.iter().map(|o| o.next.max(0) as u64).sum()
    }
}

/// The one-row answer of a create or refresh.
fn answer(
    view: &str,
    refresh: &str,
    inputs_read: usize,
    inputs_covered: u64,
    groups: u64,
    buckets_rewritten: u64,
) -> Result<(arrow::datatypes::SchemaRef, Vec<u8>), CoordinatorError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("view", DataType::Utf8, false),
        Field::new("refresh", DataType::Utf8, false),
        Field::new("inputs_read", DataType::UInt64, false),
        Field::new("inputs_covered", DataType::UInt64, false),
        Field::new("groups", DataType::UInt64, false),
        Field::new("buckets_rewritten", DataType::UInt64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![view])),
            Arc::new(StringArray::from(vec![refresh])),
            Arc::new(UInt64Array::from(vec![inputs_read as u64])),
            Arc::new(UInt64Array::from(vec![inputs_covered])),
            Arc::new(UInt64Array::from(vec![groups])),
            Arc::new(UInt64Array::from(vec![buckets_rewritten])),
        ],
    )
    .map_err(|e| CoordinatorError::Internal(e.to_string()))?;
    let bytes = to_ipc(&batch).map_err(|e| CoordinatorError::Internal(e.to_string()))?;
    Ok((schema, bytes))
}
