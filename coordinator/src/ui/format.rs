//! Numbers and text as the pages show them.

use tally_common::job_status::{StageState, TaskState};

/// `1234567` as `1,234,567`.
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) use tally_common::binary_bytes as human_bytes;

/// A stage's state as the pages and the JSON API name it.
pub(crate) fn stage_state(state: StageState) -> &'static str {
    match state {
        StageState::Pending => "PENDING",
        StageState::Running => "RUNNING",
        StageState::Succeeded => "SUCCEEDED",
        StageState::Failed => "FAILED",
    }
}

/// A task's state as the pages and the JSON API name it.
pub(crate) fn task_state(state: TaskState) -> &'static str {
    match state {
        TaskState::Pending => "PENDING",
        TaskState::Running => "RUNNING",
        TaskState::Succeeded => "SUCCEEDED",
        TaskState::Failed => "FAILED",
        TaskState::Cancelled => "CANCELLED",
    }
}

/// A duration in milliseconds as `850 ms`, `12.3 s` or `4m05s`.
pub(crate) fn duration_ms(ms: u128) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Text made safe to place in HTML, in elements and in quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(2_500_000), "2,500,000");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2_500_000), "2.4 MiB");
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(12_345), "12.3 s");
        assert_eq!(duration_ms(245_000), "4m05s");
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
