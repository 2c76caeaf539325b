//! The worker's spool: each task's output, one Arrow IPC stream file per output partition,
//! under `<root>/<job>/<stage>/<map partition>/<output partition>.arrow`. Spooling makes the
//! shuffle blocking and lets a consumer re-read a finished stage.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use datafusion::error::{DataFusionError, Result};

use tally_proto::plan as pb;

use crate::compression::WireCompression;
use crate::ids::{JobId, StageId, WorkerId};

/// One spooled file: output partition `out_partition` of task `map_partition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolLocation {
    pub worker_id: WorkerId,
    pub endpoint: String,
    pub job_id: JobId,
    pub stage_id: StageId,
    pub map_partition: u32,
    pub out_partition: u32,
    pub rows: u64,
    /// The holding worker's MAC of this piece (see `tickets`).
    pub mac: Vec<u8>,
}

impl SpoolLocation {
    /// The ticket that fetches this piece, sent with `compression`.
    pub fn ticket(&self, compression: WireCompression) -> pb::ShuffleTicket {
        pb::ShuffleTicket {
            job_id: self.job_id.to_string(),
            stage_id: self.stage_id.0,
            map_partition: self.map_partition,
            out_partition: self.out_partition,
            compression: pb::Compression::from(compression) as i32,
            mac: self.mac.clone(),
        }
    }

    pub fn to_proto(&self, compression: WireCompression) -> pb::ShuffleLocation {
        pb::ShuffleLocation {
            worker_id: self.worker_id.to_string(),
            flight_endpoint: self.endpoint.clone(),
            ticket: Some(self.ticket(compression)),
            rows: self.rows,
        }
    }
}

impl TryFrom<pb::ShuffleLocation> for SpoolLocation {
    type Error = DataFusionError;

    fn try_from(loc: pb::ShuffleLocation) -> Result<Self> {
        let ticket = loc.ticket.ok_or_else(|| {
            DataFusionError::Internal("shuffle location without ticket".to_string())
        })?;
        Ok(SpoolLocation {
            worker_id: WorkerId::from(loc.worker_id),
            endpoint: loc.flight_endpoint,
            job_id: JobId::from(ticket.job_id),
            stage_id: StageId(ticket.stage_id),
            map_partition: ticket.map_partition,
            out_partition: ticket.out_partition,
            rows: loc.rows,
            mac: ticket.mac,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder every job's output is spooled under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn job_dir(&self, job: &JobId) -> PathBuf {
        self.root.join(job.as_str())
    }

    pub fn file(
        &self,
        job: &JobId,
        stage: StageId,
        map_partition: u32,
        out_partition: u32,
    ) -> PathBuf {
        piece_path(self.job_dir(job), stage, map_partition, out_partition)
    }

    /// Where this worker keeps its copy of another worker's broadcast piece.
    pub fn broadcast_copy(
        &self,
        job: &JobId,
        stage: StageId,
        map_partition: u32,
        out_partition: u32,
    ) -> PathBuf {
        piece_path(
            self.job_dir(job).join("broadcast"),
            stage,
            map_partition,
            out_partition,
        )
    }

    /// Deletes everything a job spooled on this worker.
    pub fn remove_job(&self, job: &JobId) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.job_dir(job)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

fn piece_path(dir: PathBuf, stage: StageId, map_partition: u32, out_partition: u32) -> PathBuf {
    dir.join(stage.0.to_string())
        .join(map_partition.to_string())
        .join(format!("{out_partition}.arrow"))
}

/// Writes one output partition. The file appears under its final name only when complete,
/// so a reader never sees half a file.
pub struct SpoolFileWriter {
    path: PathBuf,
    tmp_path: PathBuf,
    writer: StreamWriter<BufWriter<File>>,
    pub rows: u64,
}

impl SpoolFileWriter {
    pub fn create(path: PathBuf, schema: &SchemaRef) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        }
        let tmp_path = path.with_extension("arrow.tmp");
        let file = File::create(&tmp_path).map_err(|e| io_error(&tmp_path, e))?;
        let writer = StreamWriter::try_new(BufWriter::new(file), schema)?;
        Ok(Self {
            path,
            tmp_path,
            writer,
            rows: 0,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        Ok(self.writer.write(batch)?)
    }

    /// Completes the file and returns its size in bytes. No fsync: a lost worker loses its
    /// tasks anyway, and an fsync would stall the thread for as long as the disk takes.
    pub fn finish(mut self) -> Result<u64> {
        self.writer.finish()?;
        let file = self
            .writer
            .into_inner()?
            .into_inner()
            .map_err(|e| io_error(&self.tmp_path, e.into_error()))?;
        drop(file);
        std::fs::rename(&self.tmp_path, &self.path).map_err(|e| io_error(&self.path, e))?;
        let bytes = std::fs::metadata(&self.path)
            .map_err(|e| io_error(&self.path, e))?
            .len();
        Ok(bytes)
    }
}

pub fn open_spool_file(path: &Path) -> Result<StreamReader<BufReader<File>>> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    Ok(StreamReader::try_new(BufReader::new(file), None)?)
}

fn io_error(path: &Path, e: std::io::Error) -> DataFusionError {
    DataFusionError::Execution(format!("spool file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn written_partition_reads_back_and_job_removal_deletes_it() {
        let dir = std::env::temp_dir().join(format!("tally-spool-{}", std::process::id()));
        let spool = Spool::new(&dir);
        let job = JobId::from("j1");
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .unwrap();
        let path = spool.file(&job, StageId(1), 0, 2);
        let mut writer = SpoolFileWriter::create(path.clone(), &schema).unwrap();
        writer.write(&batch).unwrap();
        writer.write(&batch).unwrap();
        assert_eq!(writer.rows, 6);
        let bytes = writer.finish().unwrap();
        assert!(bytes > 0);
        let rows: usize = open_spool_file(&path)
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum();
        assert_eq!(rows, 6);
        spool.remove_job(&job).unwrap();
        assert!(!path.exists());
        spool.remove_job(&job).unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }
}
