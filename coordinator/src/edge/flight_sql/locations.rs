//! Where a Flight client fetches a piece of an answer: a worker's Flight endpoint as a Flight
//! location URI (`grpc+tcp://host:port`, or `grpc+tls://` when the cluster speaks TLS).

use tally_common::security::ClusterSecurity;

pub(super) fn flight_location(endpoint: &str, security: &ClusterSecurity) -> String {
    let url = security.url(endpoint);
    if let Some(rest) = url.strip_prefix("https://") {
        format!("grpc+tls://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("grpc+tcp://{rest}")
    } else {
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_endpoints_become_flight_uris_with_tls_when_it_is_on() {
        let plain = ClusterSecurity::default();
        assert_eq!(
            flight_location("10.0.0.7:41234", &plain),
            "grpc+tcp://10.0.0.7:41234"
        );
        assert_eq!(
            flight_location("https://w1:5000", &plain),
            "grpc+tls://w1:5000"
        );
    }
}
