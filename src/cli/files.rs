//! Which files the CLI reads.

use std::path::{Path, PathBuf};

/// What a directory contributes: data files, not the READMEs and scripts beside them.
const DATA_EXTENSIONS: [&str; 5] = ["json", "gz", "txt", "log", "zip"];

/// Files named on the command line, and data files inside named directories (sorted,
/// recursively). A path that does not exist is a usage error.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            collect_dir(path, &mut files)?;
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    Ok(files)
}

fn collect_dir(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_dir(&path, files)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| DATA_EXTENSIONS.contains(&e))
        {
            files.push(path);
        }
    }
    Ok(())
}
