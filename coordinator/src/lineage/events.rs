//! OpenLineage run events (spec 2-0-2) for a job that writes a table: START when it is
//! submitted, COMPLETE or FAIL when it ends, under one run id, with the datasets it read
//! and wrote, their schemas, and the written table's column lineage.

use arrow::datatypes::Schema;
use serde_json::{Map, Value, json};

use super::columns::Sources;
use super::indirect::IndirectSources;

const PRODUCER: &str = "https://github.com/tally-engine/tally";
const RUN_EVENT: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
// The facet versions openlineage-python 1.54 models (its classes check them).
const SCHEMA_FACET: &str =
    "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const COLUMN_LINEAGE_FACET: &str = "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet";
const SQL_FACET: &str =
    "https://openlineage.io/spec/facets/1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet";
const JOB_TYPE_FACET: &str =
    "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet";
const ERROR_FACET: &str = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
const ENGINE_FACET: &str = "https://openlineage.io/spec/facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    Start,
    Complete,
    Fail,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Start => "START",
            Self::Complete => "COMPLETE",
            Self::Fail => "FAIL",
        }
    }
}

/// A table a job read or wrote.
#[derive(Debug, Clone)]
pub(crate) struct Dataset {
    /// The table's name in Tally's catalog.
    pub table: String,
    /// Where its files are: a local folder or `s3://bucket/prefix`.
    pub location: String,
    pub schema: Schema,
}

impl Dataset {
    /// OpenLineage's dataset naming: `file` and the path for local files, `s3://bucket`
    /// and the key prefix for S3; `tally` and the table's name otherwise.
    fn namespace_and_name(&self) -> (String, String) {
        match self.location.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                (
                    format!("s3://{bucket}"),
                    key.trim_end_matches('/').to_string(),
                )
            }
            None if self.location.starts_with('/') => (
                "file".to_string(),
                self.location.trim_end_matches('/').to_string(),
            ),
            // A Kafka topic or a table without files: Tally's own name for it.
            None => ("tally".to_string(), self.table.clone()),
        }
    }

    fn facets(&self) -> Map<String, Value> {
        let fields: Vec<Value> = self
            .schema
            .fields()
            .iter()
            .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
            .collect();
        let mut facets = Map::new();
        facets.insert(
            "schema".to_string(),
            facet(SCHEMA_FACET, json!({"fields": fields})),
        );
        facets
    }

    fn to_json(&self, extra: Map<String, Value>) -> Value {
        let (namespace, name) = self.namespace_and_name();
        let mut facets = self.facets();
        facets.extend(extra);
        json!({"namespace": namespace, "name": name, "facets": facets})
    }
}

/// What one run of a writing job is about, for all its events.
#[derive(Debug, Clone)]
pub(crate) struct WriteRun {
    pub run_id: uuid::Uuid,
    /// The job's namespace in the lineage platform (`--openlineage-namespace`).
    pub namespace: String,
    /// A name stable across runs of the same job: what it does to which table.
    pub job_name: String,
    pub sql: String,
    pub inputs: Vec<Dataset>,
    pub output: Dataset,
    /// The sources of each column of `output`, in its schema's order.
    pub lineage: Vec<Sources>,
    /// The table columns that filter, join, group or sort the rows written.
    pub indirect: IndirectSources,
    /// The datasets of the tables `lineage` names.
    pub sources: Vec<Dataset>,
}

impl WriteRun {
    /// The run event for `state` at `event_time` (RFC 3339); `error` for a FAIL.
    pub(crate) fn event(&self, state: RunState, event_time: &str, error: Option<&str>) -> Value {
        let mut run_facets = Map::new();
        run_facets.insert(
            "processing_engine".to_string(),
            facet(
                ENGINE_FACET,
                json!({"version": env!("CARGO_PKG_VERSION"), "name": "Tally"}),
            ),
        );
        if let Some(message) = error {
            run_facets.insert(
                "errorMessage".to_string(),
                facet(
                    ERROR_FACET,
                    json!({"message": message, "programmingLanguage": "SQL"}),
                ),
            );
        }
        let mut output_facets = Map::new();
        output_facets.insert(
            "columnLineage".to_string(),
            facet(
                COLUMN_LINEAGE_FACET,
                json!({"fields": self.column_fields(), "dataset": self.indirect_fields()}),
            ),
        );
        json!({
            "eventType": state.as_str(),
            "eventTime": event_time,
            "run": {"runId": self.run_id.to_string(), "facets": run_facets},
            "job": {
                "namespace": self.namespace,
                "name": self.job_name,
                "facets": {
                    "sql": facet(SQL_FACET, json!({"query": self.sql})),
                    "jobType": facet(
                        JOB_TYPE_FACET,
                        json!({"processingType": "BATCH", "integration": "TALLY", "jobType": "QUERY"}),
                    ),
                },
            },
            "inputs": self.inputs.iter().map(|d| d.to_json(Map::new())).collect::<Vec<_>>(),
            "outputs": [self.output.to_json(output_facets)],
            "producer": PRODUCER,
            "schemaURL": RUN_EVENT,
        })
    }

    /// The column lineage facet's `dataset`: input fields that shape every output row.
    fn indirect_fields(&self) -> Vec<Value> {
        self.indirect
            .iter()
            .filter_map(|(column, ways)| {
                let dataset = self.sources.iter().find(|d| d.table == column.table)?;
                let (namespace, name) = dataset.namespace_and_name();
                let transformations: Vec<Value> = ways
                    .iter()
                    .map(|how| json!({"type": "INDIRECT", "subtype": how.subtype(), "description": "", "masking": false}))
                    .collect();
                Some(json!({
                    "namespace": namespace,
                    "name": name,
                    "field": column.column,
                    "transformations": transformations,
                }))
            })
            .collect()
    }

    /// The column lineage facet's `fields`: per output column, its input fields.
    fn column_fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        for (field, sources) in self.output.schema.fields().iter().zip(&self.lineage) {
            let inputs: Vec<Value> = sources
                .iter()
                .filter_map(|(column, how)| {
                    let dataset = self.sources.iter().find(|d| d.table == column.table)?;
                    let (namespace, name) = dataset.namespace_and_name();
                    Some(json!({
                        "namespace": namespace,
                        "name": name,
                        "field": column.column,
                        "transformations": [{"type": "DIRECT", "subtype": how.subtype(), "description": "", "masking": false}],
                    }))
                })
                .collect();
            if !inputs.is_empty() {
                fields.insert(field.name().clone(), json!({"inputFields": inputs}));
            }
        }
        fields
    }
}

fn facet(schema_url: &str, body: Value) -> Value {
    let mut facet = Map::new();
    facet.insert("_producer".to_string(), json!(PRODUCER));
    facet.insert("_schemaURL".to_string(), json!(schema_url));
    if let Value::Object(fields) = body {
        facet.extend(fields);
    }
    Value::Object(facet)
}

#[cfg(test)]
mod tests {
    use super::super::columns::{Derivation, SourceColumn};
    use super::*;
    use arrow::datatypes::{DataType, Field};

    #[test]
    fn an_event_names_datasets_as_openlineage_does_and_carries_column_lineage() {
        let clicks = Dataset {
            table: "clicks".to_string(),
            location: "/data/clicks/".to_string(),
            schema: Schema::new(vec![Field::new("clicks", DataType::Int64, false)]),
        };
        let output = Dataset {
            table: "daily".to_string(),
            location: "s3://reports/daily/".to_string(),
            schema: Schema::new(vec![Field::new("total", DataType::Int64, true)]),
        };
        let run = WriteRun {
            run_id: uuid::Uuid::new_v4(),
            namespace: "tally".to_string(),
            job_name: "create_table.daily".to_string(),
            sql: "CREATE TABLE daily AS SELECT sum(clicks) AS total FROM clicks".to_string(),
            inputs: vec![clicks.clone()],
            output,
            lineage: vec![Sources::from([(
                SourceColumn {
                    table: "clicks".to_string(),
                    column: "clicks".to_string(),
                },
                Derivation::Aggregation,
            )])],
            indirect: IndirectSources::new(),
            sources: vec![clicks],
        };
        let event = run.event(RunState::Fail, "2026-12-03T18:00:00.000Z", Some("boom"));
        assert_eq!(event["eventType"], "FAIL");
        assert_eq!(event["inputs"][0]["namespace"], "file");
        assert_eq!(event["inputs"][0]["name"], "/data/clicks");
        assert_eq!(event["outputs"][0]["namespace"], "s3://reports");
        assert_eq!(event["outputs"][0]["name"], "daily");
        let input =
            &event["outputs"][0]["facets"]["columnLineage"]["fields"]["total"]["inputFields"][0];
        assert_eq!(input["name"], "/data/clicks");
        assert_eq!(input["field"], "clicks");
        assert_eq!(input["transformations"][0]["subtype"], "AGGREGATION");
        assert_eq!(event["run"]["facets"]["errorMessage"]["message"], "boom");
    }
}
