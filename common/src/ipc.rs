//! Arrow IPC encoding of schemas (carried in protos) and of spooled stage outputs.

use std::io::Cursor;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

/// The schema as an IPC stream with no batches.
pub fn schema_to_bytes(schema: &Schema) -> Result<Vec<u8>, ArrowError> {
    let mut bytes = Vec::new();
    StreamWriter::try_new(&mut bytes, schema)?.finish()?;
    Ok(bytes)
}

pub fn schema_from_bytes(bytes: &[u8]) -> Result<SchemaRef, ArrowError> {
    if bytes.is_empty() {
        return Ok(Arc::new(Schema::empty()));
    }
    Ok(StreamReader::try_new(Cursor::new(bytes), None)?.schema())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};

    #[test]
    fn schema_survives_ipc_round_trip() {
        let schema = Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Decimal128(15, 2), true),
        ]);
        let decoded = schema_from_bytes(&schema_to_bytes(&schema).unwrap()).unwrap();
        assert_eq!(decoded.as_ref(), &schema);
    }
}
