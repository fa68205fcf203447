//! Lists the provider profiles to compile in: every `providers/*.toml` but
//! the model catalogue (`models.toml`), sorted by name. A new vendor is then
//! a new file in `providers/`, with no list to keep in step by hand.

use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dir = root.join("providers");
    println!("cargo:rerun-if-changed=providers");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?.strip_suffix(".toml")?.to_string();
            (name != "models").then_some(name)
        })
        .collect();
    names.sort();
    let mut list = String::from("&[\n");
    for name in &names {
        let path = dir.join(format!("{name}.toml"));
        writeln!(list, "    ({name:?}, include_str!({:?})),", path.display().to_string())
            .expect("a String takes writes");
    }
    list.push_str("]\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("shipped_profiles.rs");
    std::fs::write(&out, list).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
