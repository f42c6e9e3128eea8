//! The README's Layout promises that dependencies between `src/`'s modules point one way. This
//! reads the source and holds it to that: a module may name only modules in layers below its
//! own, and no two files of one module import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom, as the README's Layout lists them; a module may use any module below it.
const LAYERS: &[&[&str]] = &[
    &["main", "lib", "server", "scheduler", "demo"],
    &["wire"],
    &["commands"],
    &["session"],
    &["engine"],
    &["evaluation", "datasets"],
    &["features"],
    &["sql"],
    &["config", "copy"],
    &["catalog"],
    &["limits"],
    &["security", "metrics"],
    &["error", "macros"],
];

fn layer(module: &str) -> usize {
    LAYERS.iter().position(|l| l.contains(&module)).unwrap_or_else(|| panic!("module {module} is in no layer of the README's Layout"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::a` and `crate::a::b` paths a file names (outside comments).
fn named(text: &str) -> BTreeSet<(String, Option<String>)> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            let mut parts = code[i + "crate::".len()..].split("::").map(|p| {
                p.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>()
            });
            let first = parts.next().unwrap_or_default();
            out.insert((first, parts.next().filter(|s| !s.is_empty())));
        }
    }
    out
}

#[test]
fn dependencies_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    // Within a module: file -> files of the same module it names (`super::x` and `crate::m::x`).
    let mut within: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
        let module = parts[0].clone();
        let text = std::fs::read_to_string(file).expect("read");
        // Tests may reach anywhere: what is checked is the code that ships.
        let shipped = text.split("#[cfg(test)]").next().unwrap_or("");
        for (other, sub) in named(shipped) {
            if other == module {
                if let (Some(sub), [_, me]) = (sub, parts.as_slice()) {
                    within.entry((module.clone(), me.clone())).or_default().insert(sub);
                }
                continue;
            }
            if ["Error", "Result"].contains(&other.as_str()) {
                continue; // re-exported from `error` at the crate root
            }
            if layer(&other) <= layer(&module) {
                wrong.push(format!("{} names crate::{other}, which is not below {module}", rel.display()));
            }
        }
        // In `m/mod.rs`, `super` is the crate root, not a sibling.
        if let [_, me] = parts.as_slice() {
            if me != "mod" {
                for line in shipped.lines() {
                    let code = line.split("//").next().unwrap_or("");
                    let Some(rest) = code.trim_start().strip_prefix("use super::") else { continue };
                    let rest = rest.trim_start_matches('{');
                    for item in rest.split(',') {
                        let sub: String = item.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                        within.entry((module.clone(), me.clone())).or_default().insert(sub);
                    }
                }
            }
        }
    }
    for ((module, a), uses) in &within {
        for b in uses {
            if a < b && within.get(&(module.clone(), b.clone())).is_some_and(|u| u.contains(a)) {
                wrong.push(format!("{module}/{a}.rs and {module}/{b}.rs import each other"));
            }
        }
    }
    assert!(wrong.is_empty(), "dependencies against the README's Layout:\n{}", wrong.join("\n"));
}
