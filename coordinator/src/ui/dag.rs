//! A job's stages drawn as a graph: one box per stage, an arrow from each stage to the stage
//! that reads it, labelled with the bytes and rows that crossed between workers, and one last
//! arrow to the client with the answer's size. Laid out and rendered to SVG on the server by
//! `layout-rs` (a Graphviz-style layered layout), so the browser needs no script to draw it.

use layout::backends::svg::SVGWriter;
use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::style::StyleAttr;
use layout::std_shapes::render::get_shape_size;
use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
use layout::topo::layout::VisualGraph;
use tally_common::job_status::{JobStatus, StageState};

use super::format::{grouped, human_bytes};

const FONT_SIZE: usize = 14;

/// What one arrow of the graph says: the producing stage (None for the client) and what it
/// carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DagEdge {
    pub from: u32,
    /// The reading stage, or None for the client fetching the answer.
    pub to: Option<u32>,
    pub bytes: u64,
    pub rows: u64,
}

/// The arrows of a job's graph: a stage's shuffle figures on the arrow to its reader, the
/// answer's on the arrow from the final stage to the client.
pub(crate) fn edges(job: &JobStatus) -> Vec<DagEdge> {
    let mut edges = Vec::new();
    for stage in &job.stages {
        for input in &stage.input_stages {
            if let Some(producer) = job.stages.iter().find(|s| s.stage_id == *input) {
                edges.push(DagEdge {
                    from: producer.stage_id.0,
                    to: Some(stage.stage_id.0),
                    bytes: producer.shuffle_bytes,
                    rows: producer.shuffle_rows,
                });
            }
        }
    }
    // The final stage is the one no other stage reads.
    let last = job.stages.iter().find(|candidate| {
        !job.stages
            .iter()
            .any(|s| s.input_stages.contains(&candidate.stage_id))
    });
    if let Some(last) = last {
        edges.push(DagEdge {
            from: last.stage_id.0,
            to: None,
            bytes: job.result_bytes,
            rows: job.result_rows,
        });
    }
    edges
}

/// The label on an arrow: exact bytes first (what the metrics say), then a readable size.
pub(crate) fn edge_label(edge: &DagEdge) -> String {
    let target = match edge.to {
        Some(stage) => format!("stage {} → {stage}", edge.from),
        None => format!("stage {} → client", edge.from),
    };
    format!(
        "{target}\n{} B ({})\n{} rows",
        grouped(edge.bytes),
        human_bytes(edge.bytes),
        grouped(edge.rows)
    )
}

fn state_color(state: StageState) -> &'static str {
    match state {
        StageState::Pending => "#eeeeee",
        StageState::Running => "#fff3b0",
        StageState::Succeeded => "#d4f5d4",
        StageState::Failed => "#f8c8c8",
    }
}

/// The job's stage graph as an SVG document (empty for a job without stages: DDL, EXPLAIN).
pub(crate) fn render_svg(job: &JobStatus) -> String {
    if job.stages.is_empty() {
        return String::new();
    }
    let mut graph = VisualGraph::new(Orientation::TopToBottom);
    let mut handles = Vec::new();
    for stage in &job.stages {
        let text = format!(
            "stage {}\n{}\n{}/{} tasks · {}",
            stage.stage_id,
            stage.output,
            stage.tasks_succeeded,
            stage.tasks_total,
            stage_state_name(stage.state)
        );
        let look = StyleAttr::new(
            Color::fast("black"),
            1,
            Color::from_name(state_color(stage.state)).or(Some(Color::fast("white"))),
            6,
            FONT_SIZE,
        );
        let shape = ShapeKind::new_box(&text);
        let size = get_shape_size(Orientation::TopToBottom, &shape, FONT_SIZE, false);
        let element = Element::create_with_properties(
            shape,
            look,
            Orientation::TopToBottom,
            size,
            format!("class=\"stage\" data-stage=\"{}\"", stage.stage_id),
        );
        handles.push((stage.stage_id.0, graph.add_node(element)));
    }
    let client_shape = ShapeKind::new_circle("client");
    let client_size = get_shape_size(Orientation::TopToBottom, &client_shape, FONT_SIZE, true);
    let client = graph.add_node(Element::create_with_properties(
        client_shape,
        StyleAttr::new(
            Color::fast("black"),
            1,
            Some(Color::fast("white")),
            0,
            FONT_SIZE,
        ),
        Orientation::TopToBottom,
        client_size,
        "class=\"client\"",
    ));
    let handle = |id: u32| handles.iter().find(|(s, _)| *s == id).map(|(_, h)| *h);
    for edge in edges(job) {
        let (Some(from), Some(to)) = (
            handle(edge.from),
            match edge.to {
                Some(stage) => handle(stage),
                None => Some(client),
            },
        ) else {
            continue;
        };
        let target = edge.to.map_or("client".to_string(), |s| s.to_string());
        let mut arrow = Arrow::simple_with_properties(
            &edge_label(&edge),
            format!(
                "class=\"edge\" data-from=\"{}\" data-to=\"{target}\" data-bytes=\"{}\" data-rows=\"{}\"",
                edge.from, edge.bytes, edge.rows
            ),
        );
        arrow.look.font_size = FONT_SIZE - 2;
        arrow.look.line_width = 1;
        graph.add_edge(arrow, from, to);
    }
    let mut svg = SVGWriter::new();
    graph.do_it(false, false, false, &mut svg);
    // Inline in a page: the XML declaration before the element has no place there.
    let svg = svg.finalize();
    match svg.find("<svg") {
        Some(start) => svg[start..].to_string(),
        None => svg,
    }
}

fn stage_state_name(state: StageState) -> &'static str {
    match state {
        StageState::Pending => "pending",
        StageState::Running => "running",
        StageState::Succeeded => "done",
        StageState::Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::test_support::three_stage_job;

    #[test]
    fn each_arrow_carries_its_producers_shuffle_figures_and_the_last_one_the_answer() {
        let job = three_stage_job();
        let edges = edges(&job);
        assert_eq!(
            edges,
            vec![
                DagEdge {
                    from: 1,
                    to: Some(3),
                    bytes: 1000,
                    rows: 10
                },
                DagEdge {
                    from: 2,
                    to: Some(3),
                    bytes: 2_500_000,
                    rows: 250
                },
                DagEdge {
                    from: 3,
                    to: None,
                    bytes: 77,
                    rows: 3
                },
            ]
        );
        let svg = render_svg(&job);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("stage 2 → 3"), "{svg}");
        assert!(svg.contains("2,500,000 B (2.4 MiB)"), "{svg}");
        assert!(
            svg.contains("data-from=\"1\" data-to=\"3\" data-bytes=\"1000\""),
            "{svg}"
        );
        assert!(svg.contains("stage 3 → client"), "{svg}");
    }
}
