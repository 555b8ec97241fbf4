//! No import circle between the files of `src/`: a file that imports from another must
//! not be imported back, directly or through others. A circle makes two files one unit
//! in all but name (neither can be read, tested or moved without the other).
//!
//! What counts is a `use crate::…` declaration outside the test modules, resolved to the
//! file that defines the item: through the `pub use` re-exports of a module's own file
//! (`store/dynamodb/mod.rs` re-exporting `request_failed` from `request.rs`), so that a
//! module's facade is not mistaken for its parts. Paths written inline
//! (`crate::incremental::X` in an expression) and `use super::…` are not read yet: read,
//! they show circles left for a later change (`config.rs` ↔ `incremental.rs` through the
//! defaults' constants, `store/mod.rs` → `publish` → `errors.rs` → `store/mod.rs`, and
//! the DynamoDB store's files, which split `impl DynamoStore` between them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::repo_path;

#[test]
fn no_import_circle_between_files_of_src() {
    let files = source_files();
    let graph = import_graph(&files);
    assert!(
        graph["pipeline.rs"].contains("config.rs"),
        "the reader finds no imports: {graph:#?}"
    );
    let circles: Vec<_> = circles(&graph)
        .iter()
        .map(|circle| describe(circle, &graph))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles between files of src/:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_reader_resolves_re_exports_and_skips_test_modules() {
    let files = BTreeMap::from([
        ("lib.rs".to_owned(), "pub mod a;\npub mod b;\n".to_owned()),
        (
            "a/mod.rs".to_owned(),
            "mod inner;\npub use inner::{Thing as Alias, other};\n".to_owned(),
        ),
        (
            "a/inner.rs".to_owned(),
            "use crate::b::{\n    self,\n    Gadget,\n};\n".to_owned(),
        ),
        (
            "b.rs".to_owned(),
            "use crate::a::Alias;\n\n#[cfg(test)]\nmod tests {\n    use crate::a::other;\n}\n"
                .to_owned(),
        ),
    ]);
    let graph = import_graph(&files);
    assert_eq!(graph["b.rs"], BTreeSet::from(["a/inner.rs".to_owned()]));
    assert_eq!(graph["a/inner.rs"], BTreeSet::from(["b.rs".to_owned()]));
    assert_eq!(
        circles(&graph),
        vec![BTreeSet::from(["a/inner.rs".to_owned(), "b.rs".to_owned()])]
    );
}

/// Every library source file, by its path under `src/` (the binaries are crates of
/// their own: their `crate::` is not the library's).
fn source_files() -> BTreeMap<String, String> {
    let root = repo_path("src");
    let mut files = BTreeMap::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                if path != root.join("bin") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.insert(
                    relative(&root, &path),
                    std::fs::read_to_string(&path).unwrap(),
                );
            }
        }
    }
    files
}

fn relative(root: &Path, path: &Path) -> String {
    let parts: Vec<_> = path
        .strip_prefix(root)
        .unwrap()
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// Which files each file imports from.
fn import_graph(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let modules = Modules::new(files);
    files
        .iter()
        .map(|(file, text)| {
            let imported = use_declarations(&without_test_modules(text))
                .into_iter()
                .filter(|path| path.first().is_some_and(|first| first == "crate"))
                .flat_map(|path| expand(&path[1..]))
                .map(|path| modules.defining_file(&path))
                .filter(|target| target != file)
                .collect();
            (file.clone(), imported)
        })
        .collect()
}

/// The text without `#[cfg(test)]` modules and test-only `use`s: what tests import is
/// not the product's shape. rustfmt closes a module at its own indentation.
fn without_test_modules(text: &str) -> String {
    let mut kept = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "#[cfg(test)]" {
            kept.push_str(line);
            kept.push('\n');
            continue;
        }
        let Some(next) = lines.next() else { break };
        let indent = &next[..next.len() - next.trim_start().len()];
        let item = next.trim();
        if item.starts_with("mod ") && item.ends_with('{') {
            let close = format!("{indent}}}");
            lines.by_ref().find(|inner| *inner == close);
        } else if is_use(item) {
            if !item.ends_with(';') {
                lines.by_ref().find(|inner| inner.trim_end().ends_with(';'));
            }
        } else {
            kept.push_str(next);
            kept.push('\n');
        }
    }
    kept
}

/// A line that begins a `use` declaration, of any visibility.
fn is_use(line: &str) -> bool {
    line.split_once("use ").is_some_and(|(visibility, _)| {
        matches!(visibility.trim(), "" | "pub" | "pub(crate)" | "pub(super)")
    })
}

/// Each `use` declaration (any visibility) as its path text, split at `::` outside
/// braces: `crate::a::{b, c::D}` is `["crate", "a", "{b, c::D}"]`.
fn use_declarations(text: &str) -> Vec<Vec<String>> {
    let mut declarations = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or_default().trim();
        match current.as_mut() {
            Some(path) => path.push_str(line),
            None if is_use(line) => {
                current = line.split_once("use ").map(|(_, rest)| rest.to_owned());
            }
            None => continue,
        }
        if let Some(path) = current.take_if(|path| path.ends_with(';')) {
            declarations.push(split_path(path.trim_end_matches(';')));
        }
    }
    declarations
}

fn split_path(path: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut part = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ':' if depth == 0 && chars.peek() == Some(&':') => {
                chars.next();
                parts.push(std::mem::take(&mut part));
                continue;
            }
            _ => {}
        }
        part.push(c);
    }
    parts.push(part);
    parts
}

/// The paths a declaration names: `a::{self, b::{C, D as E}}` is `a`, `a::b::C`,
/// `a::b::D as E`.
fn expand(path: &[String]) -> Vec<Vec<String>> {
    let Some((last, prefix)) = path.split_last() else {
        return Vec::new();
    };
    let Some(group) = last.strip_prefix('{').and_then(|g| g.strip_suffix('}')) else {
        return vec![path.to_vec()];
    };
    split_group(group)
        .into_iter()
        .flat_map(|member| {
            let member = split_path(member.trim());
            if member == ["self"] {
                vec![prefix.to_vec()]
            } else {
                expand(&[prefix, &member[..]].concat())
            }
        })
        .collect()
}

fn split_group(group: &str) -> Vec<&str> {
    let mut members = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                members.push(&group[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    members.push(&group[start..]);
    members.retain(|member| !member.trim().is_empty());
    members
}

/// The crate's modules: which file is each, and what each re-exports.
struct Modules {
    /// Module path (`["store", "dynamodb"]`) to its file (`store/dynamodb/mod.rs`).
    files: BTreeMap<Vec<String>, String>,
    /// Per module, each name it re-exports and the absolute path it stands for.
    re_exports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
}

impl Modules {
    fn new(files: &BTreeMap<String, String>) -> Self {
        let modules = files
            .keys()
            .map(|file| (module_path(file), file.clone()))
            .collect();
        // Only a public `use` re-exports; a private one imports.
        let re_exports = files
            .iter()
            .map(|(file, text)| {
                let module = module_path(file);
                let names = use_declarations(&public_declarations(text))
                    .into_iter()
                    .flat_map(|path| expand(&path))
                    .filter_map(|path| re_export(&module, &path))
                    .collect();
                (module, names)
            })
            .collect();
        Modules {
            files: modules,
            re_exports,
        }
    }

    /// The file that defines what `path` (after `crate::`) names.
    fn defining_file(&self, path: &[String]) -> String {
        let mut path = path.to_vec();
        for _ in 0..8 {
            let (module, rest) = self.longest_module(&path);
            let target = rest
                .first()
                .and_then(|name| self.re_exports.get(&module)?.get(original(name)));
            match target {
                Some(target) if *target != path => {
                    path = [&target[..], &rest[1..]].concat();
                }
                _ => return self.files[&module].clone(),
            }
        }
        panic!("re-exports of {path:?} go round in circles")
    }

    fn longest_module(&self, path: &[String]) -> (Vec<String>, Vec<String>) {
        (0..=path.len())
            .rev()
            .map(|n| (path[..n].to_vec(), path[n..].to_vec()))
            .find(|(module, _)| self.files.contains_key(module))
            .expect("lib.rs is the root module")
    }
}

/// The `pub` and `pub(crate)` `use` declarations of a file, one after another.
fn public_declarations(text: &str) -> String {
    let mut kept = String::new();
    let mut inside = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if !inside && (trimmed.starts_with("pub use ") || trimmed.starts_with("pub(crate) use ")) {
            inside = true;
        }
        if inside {
            kept.push_str(trimmed);
            kept.push('\n');
            inside = !trimmed.ends_with(';');
        }
    }
    kept
}

/// A re-export's name and absolute target: `pub use inner::{Thing as Alias}` in module
/// `a` is `Alias` → `a::inner::Thing`.
fn re_export(module: &[String], path: &[String]) -> Option<(String, Vec<String>)> {
    let last = path.last()?;
    let name = alias(last).to_owned();
    let mut target: Vec<String> = match path.first()?.as_str() {
        "crate" => path[1..].to_vec(),
        "self" => [module, &path[1..]].concat(),
        "super" => {
            let mut base = module.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|part| part == "super") {
                base.pop();
                rest = &rest[1..];
            }
            [&base[..], rest].concat()
        }
        _ => [module, path].concat(),
    };
    *target.last_mut()? = original(last).to_owned();
    Some((name, target))
}

/// The name a path's last part binds: `D as E` binds `E`.
fn alias(part: &str) -> &str {
    part.rsplit(" as ").next().unwrap_or(part)
}

/// The name a path's last part refers to: `D as E` refers to `D`.
fn original(part: &str) -> &str {
    part.split(" as ").next().unwrap_or(part)
}

fn module_path(file: &str) -> Vec<String> {
    let stem = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The groups of files that import each other, directly or not (each of two files or
/// more), in file order.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reach: BTreeMap<&String, BTreeSet<&String>> = graph
        .keys()
        .map(|file| (file, reachable(graph, file)))
        .collect();
    let mut circles: Vec<BTreeSet<String>> = Vec::new();
    for (file, from_file) in &reach {
        if circles.iter().any(|circle| circle.contains(*file)) {
            continue;
        }
        let circle: BTreeSet<String> = from_file
            .iter()
            .filter(|other| reach[*other].contains(file))
            .map(|other| (*other).clone())
            .collect();
        if circle.len() > 1 {
            circles.push(circle);
        }
    }
    circles
}

fn reachable<'a>(
    graph: &'a BTreeMap<String, BTreeSet<String>>,
    from: &'a String,
) -> BTreeSet<&'a String> {
    let mut seen = BTreeSet::from([from]);
    let mut pending = vec![from];
    while let Some(file) = pending.pop() {
        for next in graph.get(file).into_iter().flatten() {
            if seen.insert(next) {
                pending.push(next);
            }
        }
    }
    seen
}

fn describe(circle: &BTreeSet<String>, graph: &BTreeMap<String, BTreeSet<String>>) -> String {
    let edges: Vec<String> = circle
        .iter()
        .flat_map(|file| {
            graph[file]
                .iter()
                .filter(|target| circle.contains(*target))
                .map(move |target| format!("  {file} → {target}"))
        })
        .collect();
    edges.join("\n")
}
