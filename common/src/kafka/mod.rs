//! Kafka topics as tables. A table names a topic (`host:port[,host:port]/topic`) and how its
//! record values are written (JSON or CSV). The coordinator fixes each partition's offset
//! range when a job is planned, so a query reads a consistent snapshot however many records
//! arrive while it runs; workers read their slices of those ranges straight from the brokers.

mod decode;
mod scan;

use std::collections::HashMap;
use std::time::Duration;

use datafusion::error::{DataFusionError, Result};
use rskafka::BackoffConfig;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};

pub use decode::{METADATA_COLUMNS, MalformedRecord, RecordDecoder, with_metadata_columns};
pub use scan::{KafkaScanExec, MALFORMED_RECORDS_METRIC};

/// How long a call to the brokers is retried before it fails with the brokers' last error:
/// an unreachable broker must fail a statement, not hang it.
const BROKER_DEADLINE: Duration = Duration::from_secs(10);

/// A topic and the brokers that serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTopic {
    /// `host:port`, comma-separated when several.
    pub brokers: String,
    pub topic: String,
}

impl KafkaTopic {
    /// Parses a table location, `host:port[,host:port...]/topic`.
    pub fn parse(location: &str) -> Result<Self> {
        let location = location.trim().trim_start_matches("kafka://");
        let bad = || {
            DataFusionError::Plan(format!(
                "Kafka location '{location}': write host:port/topic (e.g. \
                 'localhost:9092/clicks')"
            ))
        };
        let (brokers, topic) = location.rsplit_once('/').ok_or_else(bad)?;
        let every_broker_has_a_port = brokers.split(',').all(|b| {
            b.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        });
        if topic.is_empty() || brokers.is_empty() || !every_broker_has_a_port {
            return Err(bad());
        }
        Ok(Self {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
        })
    }

    pub fn location(&self) -> String {
        format!("{}/{}", self.brokers, self.topic)
    }

    pub async fn client(&self) -> Result<Client> {
        let backoff = BackoffConfig {
            deadline: Some(BROKER_DEADLINE),
            ..Default::default()
        };
        ClientBuilder::new(self.brokers.split(',').map(str::to_string).collect())
            .client_id("tally")
            .backoff_config(backoff)
            .build()
            .await
            .map_err(|e| self.error("cannot reach the brokers", &e))
    }

    pub async fn partition_client(
        &self,
        client: &Client,
        partition: i32,
    ) -> Result<PartitionClient> {
        client
            .partition_client(self.topic.clone(), partition, UnknownTopicHandling::Error)
            .await
            .map_err(|e| self.error(&format!("partition {partition}"), &e))
    }

    /// The topic's partitions, sorted; a missing topic is an error.
    pub async fn partitions(&self, client: &Client) -> Result<Vec<i32>> {
        let topics = client
            .list_topics()
            .await
            .map_err(|e| self.error("cannot list topics", &e))?;
        match topics.into_iter().find(|t| t.name == self.topic) {
            Some(topic) if !topic.partitions.is_empty() => {
                Ok(topic.partitions.into_iter().collect())
            }
            _ => Err(DataFusionError::Plan(format!(
                "Kafka topic '{}' does not exist on {}",
                self.topic, self.brokers
            ))),
        }
    }

    /// Every partition's offsets now: the records a job planned now reads.
    pub async fn watermarks(&self) -> Result<Vec<OffsetRange>> {
        let client = self.client().await?;
        let mut ranges = Vec::new();
        for partition in self.partitions(&client).await? {
            let partition_client = &self.partition_client(&client, partition).await?;
            let offset = |at| async move {
                partition_client
                    .get_offset(at)
                    .await
                    .map_err(|e| self.error(&format!("offsets of partition {partition}"), &e))
            };
            let start = offset(OffsetAt::Earliest).await?;
            // The end is the high watermark a fetch reports: some Kafka-compatible brokers
            // (tansu 0.6) answer ListOffsets(latest) with the last offset, not the next one.
            let latest = offset(OffsetAt::Latest).await?.max(start);
            let (_, end) = partition_client
                .fetch_records(latest, 1..1, 0)
                .await
                .map_err(|e| self.error(&format!("high watermark of partition {partition}"), &e))?;
            ranges.push(OffsetRange {
                partition,
                start,
                end,
            });
        }
        Ok(ranges)
    }

    fn error(&self, what: &str, error: &rskafka::client::error::Error) -> DataFusionError {
        // An I/O error: a broker may come back, so a task that met it may run again.
        DataFusionError::IoError(std::io::Error::other(format!(
            "Kafka topic '{}' on {}: {what}: {}",
            self.topic,
            self.brokers,
            crate::root_cause(error)
        )))
    }
}

/// How record values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// One JSON object per record.
    Json,
    /// One CSV line per record, columns in table order, no header.
    Csv,
}

/// What a record whose value does not parse as one row does to a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMalformed {
    /// The job fails, naming the partition and offset.
    Fail,
    /// The record is skipped and counted (`malformed_records` in the scan's metrics).
    Skip,
}

/// A Kafka table's options (`OPTIONS ('format' 'json', 'on_malformed' 'skip')`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaOptions {
    pub format: ValueFormat,
    pub on_malformed: OnMalformed,
}

impl KafkaOptions {
    /// Reads the table options; unknown ones are refused so a typo is not silently ignored.
    pub fn from_table_options(options: &HashMap<String, String>) -> Result<Self> {
        let mut parsed = Self {
            format: ValueFormat::Json,
            on_malformed: OnMalformed::Fail,
        };
        for (key, value) in options {
            let key = key.strip_prefix("format.").unwrap_or(key);
            match (
                key.to_ascii_lowercase().as_str(),
                value.to_ascii_lowercase().as_str(),
            ) {
                ("format", "json") => parsed.format = ValueFormat::Json,
                ("format", "csv") => parsed.format = ValueFormat::Csv,
                ("on_malformed", "fail") => parsed.on_malformed = OnMalformed::Fail,
                ("on_malformed", "skip") => parsed.on_malformed = OnMalformed::Skip,
                ("format" | "on_malformed", _) => {
                    return Err(DataFusionError::Plan(format!(
                        "Kafka table option {key} = '{value}': format takes json or csv, \
                         on_malformed takes fail or skip"
                    )));
                }
                _ => {
                    return Err(DataFusionError::Plan(format!(
                        "unknown Kafka table option '{key}': a Kafka table takes format and \
                         on_malformed"
                    )));
                }
            }
        }
        Ok(parsed)
    }

    pub fn format_name(&self) -> &'static str {
        match self.format {
            ValueFormat::Json => "json",
            ValueFormat::Csv => "csv",
        }
    }
}

/// Records `start..end` of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OffsetRange {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

impl OffsetRange {
    pub fn records(&self) -> u64 {
        (self.end - self.start).max(0) as u64
    }
}

/// Cuts each range into slices of at most `max_records` records: one scan task each. Empty
/// ranges give no slice.
pub fn slices(ranges: &[OffsetRange], max_records: u64) -> Vec<OffsetRange> {
    let max_records = max_records.clamp(1, i64::MAX as u64) as i64;
    let mut slices = Vec::new();
    for range in ranges {
        let mut start = range.start;
        while start < range.end {
            let end = start.saturating_add(max_records).min(range.end);
            slices.push(OffsetRange {
                partition: range.partition,
                start,
                end,
            });
            start = end;
        }
    }
    slices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_brokers_and_a_topic() {
        let topic = KafkaTopic::parse("localhost:9092,b2:9093/clicks").unwrap();
        assert_eq!(topic.brokers, "localhost:9092,b2:9093");
        assert_eq!(topic.topic, "clicks");
        assert_eq!(
            KafkaTopic::parse("kafka://h:1/t").unwrap().location(),
            "h:1/t"
        );
        for bad in [
            "localhost:9092",
            "clicks",
            "localhost/clicks",
            "h:x/t",
            "h:1/",
        ] {
            let error = KafkaTopic::parse(bad).unwrap_err().to_string();
            assert!(error.contains("host:port/topic"), "{bad}: {error}");
        }
    }

    #[test]
    fn options_are_checked() {
        let options = |pairs: &[(&str, &str)]| {
            KafkaOptions::from_table_options(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let csv = options(&[("format", "CSV"), ("on_malformed", "skip")]).unwrap();
        assert_eq!(csv.format, ValueFormat::Csv);
        assert_eq!(csv.on_malformed, OnMalformed::Skip);
        assert_eq!(options(&[]).unwrap().format, ValueFormat::Json);
        assert!(
            options(&[("format", "avro")])
                .unwrap_err()
                .to_string()
                .contains("json or csv")
        );
        assert!(
            options(&[("fromat", "json")])
                .unwrap_err()
                .to_string()
                .contains("unknown")
        );
    }

    #[test]
    fn ranges_are_cut_into_bounded_slices() {
        let ranges = [
            OffsetRange {
                partition: 0,
                start: 0,
                end: 5,
            },
            OffsetRange {
                partition: 1,
                start: 3,
                end: 3,
            },
            OffsetRange {
                partition: 2,
                start: 10,
                end: 12,
            },
        ];
        let cut = slices(&ranges, 2);
        let spans: Vec<_> = cut.iter().map(|s| (s.partition, s.start, s.end)).collect();
        assert_eq!(spans, vec![(0, 0, 2), (0, 2, 4), (0, 4, 5), (2, 10, 12)]);
        assert_eq!(slices(&ranges, u64::MAX).len(), 2);
    }
}
