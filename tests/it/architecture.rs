//! The module graph of `src/`: no cycle between the top-level modules, and the README shows the
//! graph as it is (a failure prints the block to paste).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn top_level_modules_form_no_cycle_and_the_readme_shows_the_graph() {
    let graph = module_graph(Path::new(SRC));
    assert!(graph.contains_key("tasks") && graph.contains_key("http"), "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("a cycle between modules: {}", cycle.join(" -> "));
    }
    let block = render(&graph);
    let readme = std::fs::read_to_string(README).unwrap();
    assert!(readme.contains(&block), "README.md's \"Who imports whom\" is out of date; it should show:\n\n{block}");
}

/// The seams hold (issue 14): the code that serves the API, runs tasks and sessions, sends
/// webhooks and counts statistics works through `Store` and `Queue` alone; which store is
/// configured (file, memory, Redis) is known only to the store and queue implementations and to
/// the start-up that opens them.
#[test]
fn only_the_store_and_the_queue_know_which_backend_runs() {
    let graph = module_graph(Path::new(SRC));
    for module in ["api", "tasks", "sessions", "webhook", "http", "stats", "events", "housekeeping", "app"] {
        let uses = &graph[module];
        assert!(!uses.contains("redis_link"), "{module} imports redis_link");
        let path = Path::new(SRC).join(module);
        let files = if path.is_dir() { rust_files(&path) } else { vec![path.with_extension("rs")] };
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                assert!(
                    !code.contains("StorageType") && !code.to_lowercase().contains("redis"),
                    "{}:{}: a backend named outside the store and the queue: {line}",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}

/// Each top-level module (a file or a folder of `src/`), with the other top-level modules its
/// code names as `crate::<module>`.
fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "main" || name == "lib" {
            continue;
        }
        let mut uses = BTreeSet::new();
        for file in rust_files(&path) {
            uses.extend(crate_paths(&std::fs::read_to_string(file).unwrap()));
        }
        uses.remove(&name);
        graph.insert(name, uses);
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for uses in graph.values_mut() {
        uses.retain(|u| modules.contains(u));
    }
    graph
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return if path.extension().is_some_and(|e| e == "rs") { vec![path.to_path_buf()] } else { vec![] };
    }
    std::fs::read_dir(path).unwrap().flat_map(|e| rust_files(&e.unwrap().path())).collect()
}

/// The first segment of every `crate::...` path in `code` (comments left out), groups included.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let code: String = code.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            found.extend(top_level_items(group).iter().map(|item| first_segment(item)).filter(|s| !s.is_empty()));
        } else {
            found.insert(first_segment(rest));
        }
    }
    found
}

/// The comma-separated items of a `{...}` group (its text after the `{`), nested groups kept whole.
fn top_level_items(group: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
}

fn first_segment(path: &str) -> String {
    path.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn render(graph: &Graph) -> String {
    let width = graph.keys().map(String::len).max().unwrap_or(0);
    let lines: Vec<String> = graph
        .iter()
        .map(|(m, uses)| {
            let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
            format!("{m:width$} -> {}", if uses.is_empty() { "(nothing)".to_string() } else { uses.join(" ") })
        })
        .collect();
    format!("```\n{}\n```", lines.join("\n"))
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph: Graph = [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec![])]
        .into_iter()
        .map(|(m, uses)| (m.to_string(), uses.into_iter().map(str::to_string).collect()))
        .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let code = "use crate::{app::App, config::{self, Config}};\n// crate::nope\nlet x = crate::tasks::get();";
    assert_eq!(crate_paths(code).into_iter().collect::<Vec<_>>(), ["app", "config", "tasks"]);
}
