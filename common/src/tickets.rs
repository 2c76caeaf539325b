//! Shuffle tickets as capabilities. The worker that spools a piece mints its ticket: an
//! HMAC-SHA256 over the job, stage, map partition and output partition, under a key drawn at
//! random when the worker starts and never sent anywhere. The coordinator passes the MAC along
//! with the piece's location; `DoGet` serves only tickets whose MAC this worker made. A ticket
//! cannot be guessed, nor edited to name another job's or partition's piece, and its job ID
//! can be trusted as a path component once the MAC checks out.

use ring::hmac;
use ring::rand::SystemRandom;
use tally_proto::plan::ShuffleTicket;

use crate::ids::{JobId, StageId};

pub struct TicketKey {
    key: hmac::Key,
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(..)")
    }
}

impl Default for TicketKey {
    fn default() -> Self {
        Self::random()
    }
}

impl TicketKey {
    pub fn random() -> Self {
        Self {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
                .expect("the system random generator works"),
        }
    }

    /// The MAC of piece (`map_partition`, `out_partition`) of `stage` of `job`.
    pub fn sign(
        &self,
        job: &JobId,
        stage: StageId,
        map_partition: u32,
        out_partition: u32,
    ) -> Vec<u8> {
        let message = message(job.as_str(), stage.0, map_partition, out_partition);
        hmac::sign(&self.key, &message).as_ref().to_vec()
    }

    /// True when `ticket` carries the MAC this key made for exactly its piece.
    pub fn verify(&self, ticket: &ShuffleTicket) -> bool {
        let message = message(
            &ticket.job_id,
            ticket.stage_id,
            ticket.map_partition,
            ticket.out_partition,
        );
        hmac::verify(&self.key, &message, &ticket.mac).is_ok()
    }
}

/// Length-prefixed, so no two pieces share a message.
fn message(job: &str, stage: u32, map_partition: u32, out_partition: u32) -> Vec<u8> {
    let mut message = Vec::with_capacity(job.len() + 20);
    message.extend_from_slice(&(job.len() as u64).to_be_bytes());
    message.extend_from_slice(job.as_bytes());
    for number in [stage, map_partition, out_partition] {
        message.extend_from_slice(&number.to_be_bytes());
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(job: &str, stage: u32, map: u32, out: u32, mac: Vec<u8>) -> ShuffleTicket {
        ShuffleTicket {
            job_id: job.to_string(),
            stage_id: stage,
            map_partition: map,
            out_partition: out,
            compression: 0,
            mac,
        }
    }

    #[test]
    fn a_ticket_is_valid_only_for_its_own_piece_and_key() {
        let key = TicketKey::random();
        let mac = key.sign(&JobId::from("job1"), StageId(2), 3, 4);
        assert!(key.verify(&ticket("job1", 2, 3, 4, mac.clone())));
        assert!(!key.verify(&ticket("job2", 2, 3, 4, mac.clone())));
        assert!(!key.verify(&ticket("job1", 1, 3, 4, mac.clone())));
        assert!(!key.verify(&ticket("job1", 2, 4, 4, mac.clone())));
        assert!(!key.verify(&ticket("job1", 2, 3, 5, mac.clone())));
        assert!(!key.verify(&ticket("job1", 2, 3, 4, Vec::new())));
        assert!(!TicketKey::random().verify(&ticket("job1", 2, 3, 4, mac)));
    }
}
