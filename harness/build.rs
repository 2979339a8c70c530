//! Builds the shipped scenario corpus into the binary, so `etrn-harness run` works from any
//! folder: every `scenarios/**/*.toml`, as (path, text) pairs in path order.

use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenarios = root.join("scenarios");
    // A change to any file under scenarios/ rebuilds the list.
    println!("cargo::rerun-if-changed=scenarios");
    let mut files = Vec::new();
    collect(&scenarios, &mut files);
    files.sort();
    let mut out = String::from(
        "/// The shipped corpus: (path relative to the crate, file text), in path order.\n\
         pub static SHIPPED: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        let relative = f.strip_prefix(root).unwrap_or(f);
        out.push_str(&format!(
            "    ({:?}, include_str!({:?})),\n",
            relative.to_string_lossy(),
            f.to_string_lossy()
        ));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("shipped.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        panic!("cannot write {}: {e}", dest.display());
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(kind) = e.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect(&path, out);
        } else if kind.is_file() && path.extension().is_some_and(|x| x == "toml") {
            out.push(path);
        }
    }
}
