//! Modules depend one way: no file under `src/` imports from a file that imports it back,
//! directly or through others.
//!
//! Every path a library file names (`use crate::…`, `super::…`, `self::…`, a child module's
//! name, or an inline `crate::a::b::f()`) is resolved to the file that defines the longest
//! matching module; `mod x;` declarations are not imports, and a file's own `#[cfg(test)]`
//! module is left out (its `use super::*` is the file itself). The graph of files must be
//! acyclic. The binary's `src/main.rs` and `src/cli/` sit above the library and are not part
//! of the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file of the library under `dir`, as (module path, file).
fn library_files(src: &Path, dir: &Path, out: &mut Vec<(Vec<String>, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(src).unwrap();
        if rel == Path::new("main.rs") || rel.starts_with("cli") {
            continue;
        }
        if path.is_dir() {
            library_files(src, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut module: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                module.pop();
            }
            out.push((module, path));
        }
    }
}

/// The source without comments and string literals.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        // Drop string literals (paths in messages are not imports).
        let mut in_str = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split_whitespace().next().unwrap_or("").to_string()];
    };
    let prefix = tree[..open].trim_end_matches("::").to_string();
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| match p.as_str() {
            "self" => prefix.clone(),
            _ if prefix.is_empty() => p,
            _ => format!("{prefix}::{p}"),
        })
        .collect()
}

/// How many inline `mod name { … }` blocks enclose each byte of `code`.
fn inline_mod_depth(code: &str) -> Vec<usize> {
    let (mut stack, mut depth) = (Vec::new(), vec![0; code.len() + 1]);
    for (i, c) in code.char_indices() {
        match c {
            '{' => {
                let words: Vec<&str> = code[..i].split_whitespace().rev().take(2).collect();
                stack.push(words.len() == 2 && words[1] == "mod");
            }
            '}' => {
                stack.pop();
            }
            _ => {}
        }
        depth[i + 1] = stack.iter().filter(|&&m| m).count();
    }
    depth
}

/// The paths a file names, each with the inline-module depth it is named at: its `use` trees,
/// expanded, and inline `crate::`/`super::` paths.
fn paths_named(code: &str) -> Vec<(String, usize)> {
    let depth = inline_mod_depth(code);
    let mut paths = Vec::new();
    for (i, _) in code.match_indices("use ") {
        if code[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let after = &code[i + 4..];
        let Some(end) = after.find(';') else { break };
        let tree = after[..end].replace('\n', " ");
        let is_path = tree
            .chars()
            .all(|c| c.is_alphanumeric() || "_:{},* ".contains(c));
        if is_path && tree.matches('{').count() == tree.matches('}').count() {
            paths.extend(expand(&tree).into_iter().map(|p| (p, depth[i])));
        }
    }
    for root in ["crate::", "super::"] {
        for (i, _) in code.match_indices(root) {
            let tail: String = code[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            // `crate::a::{…}` is a use tree, expanded above.
            if !tail.ends_with("::") {
                paths.push((tail, depth[i]));
            }
        }
    }
    paths
}

/// The file a path names, seen from `module` at `inline` nested inline modules: the longest
/// module prefix that is a file.
fn resolve(
    path: &str,
    module: &[String],
    inline: usize,
    files: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let mut segs = path
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .peekable();
    // Inside `mod tests { … }` of file f, `super::` is f itself.
    for _ in 0..inline {
        if segs.next_if(|s| s == "super").is_none() {
            // A child module's name seen from an inline module is not one of the file's.
            if segs.peek().is_some_and(|s| s != "crate" && s != "self") {
                return None;
            }
            break;
        }
    }
    let Some(first) = segs.next() else {
        return Some(module.to_vec());
    };
    // The module a `super::` is relative to: a file `a/b.rs` is module a::b, its parent a.
    let mut base: Vec<String> = match first.as_str() {
        "crate" => vec![],
        "self" => module.to_vec(),
        "super" => module[..module.len().saturating_sub(1)].to_vec(),
        child => {
            let mut m = module.to_vec();
            m.push(child.to_string());
            if !files.contains(&m) {
                return None; // an external crate or std
            }
            m
        }
    };
    for s in segs {
        if s == "super" {
            base.pop();
        } else {
            base.push(s);
        }
    }
    (0..=base.len())
        .rev()
        .map(|n| base[..n].to_vec())
        .find(|m| files.contains(m))
}

#[test]
fn no_file_under_src_imports_from_a_file_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut list = Vec::new();
    library_files(&src, &src, &mut list);
    let files: BTreeSet<Vec<String>> = list.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, path) in &list {
        let code = code_of(&std::fs::read_to_string(path).unwrap());
        let to = edges.entry(module.clone()).or_default();
        for (p, inline) in paths_named(&code) {
            if let Some(target) = resolve(&p, module, inline, &files) {
                if &target != module && !target.is_empty() {
                    to.insert(target);
                }
            }
        }
    }
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        n: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                0 => visit(m, edges, state, stack, cycles),
                1 => {
                    let at = stack.iter().position(|x| x == m).unwrap();
                    let names: Vec<String> = stack[at..]
                        .iter()
                        .chain([m])
                        .map(|x| x.join("::"))
                        .collect();
                    cycles.push(names.join(" -> "));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
    }
    let (mut state, mut cycles) = (BTreeMap::new(), Vec::new());
    for n in edges.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            visit(n, &edges, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    let count: usize = edges.values().map(BTreeSet::len).sum();
    eprintln!("{} files, {count} import edges between them", edges.len());
    assert!(
        count > 100,
        "the scan found only {count} imports: it is broken"
    );
    assert!(
        cycles.is_empty(),
        "import cycles between files under src/:\n{}",
        cycles.join("\n")
    );
}
