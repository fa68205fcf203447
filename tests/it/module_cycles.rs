//! No import cycles between the crate's module files. The module tree is read
//! from `src/` by following `mod` declarations from `lib.rs` and `main.rs`;
//! a file depends on the module a path names (`use crate::…`, `use super::…`,
//! a module brought in by `use`, also inside macro calls), except on its own
//! ancestors and descendants, which is how parents and children are built.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Cycles that exist today, each as its files: the test fails while one of
/// them remains unlisted, and once a listed one is gone, so the list shrinks.
const KNOWN: &[&[&str]] = &[];

/// A module: its crate root (`src/lib.rs` or `src/main.rs`) and its path below it.
type ModPath = (&'static str, Vec<String>);

/// The module tree of the crates under `src`: each module's file (an inline
/// module lives in its parent's), and the parsed files.
#[derive(Default)]
struct Tree {
    files: BTreeMap<ModPath, String>,
    parsed: BTreeMap<String, (ModPath, syn::File)>,
}

impl Tree {
    fn read(src: &Path) -> Self {
        let mut tree = Tree::default();
        for (root, krate) in [("lib.rs", "lib"), ("main.rs", "bin")] {
            if src.join(root).exists() {
                tree.load(src, &src.join(root), (krate, Vec::new()), src.to_path_buf());
            }
        }
        tree
    }

    /// Read `file`, the module `module`, whose `mod x;` children live in `dir`.
    fn load(&mut self, src: &Path, file: &Path, module: ModPath, dir: PathBuf) {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.strip_prefix(src.parent().unwrap()).unwrap().to_string_lossy().replace('\\', "/");
        self.files.insert(module.clone(), name.clone());
        self.children(src, &ast.items, &module, &dir, &name);
        self.parsed.insert(name, (module, ast));
    }

    fn children(&mut self, src: &Path, items: &[syn::Item], module: &ModPath, dir: &Path, file: &str) {
        for item in items {
            let syn::Item::Mod(m) = item else { continue };
            let ident = m.ident.to_string();
            let child = (module.0, [module.1.clone(), vec![ident.clone()]].concat());
            match &m.content {
                Some((_, inner)) => {
                    self.files.insert(child.clone(), file.to_string());
                    self.children(src, inner, &child, &dir.join(&ident), file);
                }
                None => {
                    let flat = dir.join(format!("{ident}.rs"));
                    let (path, below) = if flat.exists() {
                        (flat, dir.join(&ident))
                    } else {
                        (dir.join(&ident).join("mod.rs"), dir.join(&ident))
                    };
                    self.load(src, &path, child, below);
                }
            }
        }
    }

    fn is_module(&self, krate: &'static str, path: &[String]) -> bool {
        self.files.contains_key(&(krate, path.to_vec()))
    }

    /// The module a path names, from the module `at` with its `use` aliases:
    /// the longest run of its leading segments that are modules.
    fn resolve(
        &self,
        at: &ModPath,
        aliases: &BTreeMap<String, Vec<String>>,
        segments: &[String],
    ) -> Option<Vec<String>> {
        let (first, rest) = segments.split_first()?;
        let (mut base, mut rest) = match first.as_str() {
            "crate" => (Vec::new(), rest),
            "self" => (at.1.clone(), rest),
            "super" => {
                let mut base = at.1.clone();
                base.pop()?;
                let mut rest = rest;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                (base, rest)
            }
            name => match aliases.get(name) {
                Some(module) => (module.clone(), rest),
                None if self.is_module(at.0, &[at.1.clone(), vec![name.to_string()]].concat()) => {
                    ([at.1.clone(), vec![name.to_string()]].concat(), rest)
                }
                None => return None,
            },
        };
        while let Some((next, after)) = rest.split_first() {
            let deeper = [base.clone(), vec![next.clone()]].concat();
            if !self.is_module(at.0, &deeper) {
                break;
            }
            (base, rest) = (deeper, after);
        }
        Some(base)
    }

    /// Every dependency between module files, with the first path that made it.
    fn edges(&self) -> BTreeMap<(String, String), String> {
        let mut edges = BTreeMap::new();
        for (file, (module, ast)) in &self.parsed {
            let mut walker = Walker { tree: self, file, scopes: Vec::new(), edges: &mut edges };
            walker.enter(module.clone(), &ast.items);
            walker.visit_file(ast);
        }
        edges
    }
}

/// The paths of one file, resolved from the (inline) module each is in.
struct Walker<'a> {
    tree: &'a Tree,
    file: &'a str,
    /// The modules entered, innermost last, each with its `use` aliases of modules.
    scopes: Vec<(ModPath, BTreeMap<String, Vec<String>>)>,
    edges: &'a mut BTreeMap<(String, String), String>,
}

impl Walker<'_> {
    fn enter(&mut self, module: ModPath, items: &[syn::Item]) {
        let mut aliases = BTreeMap::new();
        let scope = (module.clone(), BTreeMap::new());
        for item in items {
            let syn::Item::Use(u) = item else { continue };
            for (segments, name) in leaves(&u.tree, Vec::new()) {
                let Some(target) = self.tree.resolve(&module, &scope.1, &segments) else { continue };
                // Only a name that is itself a module is an alias of one.
                let whole = segments.last().is_some_and(|s| s == "self" || target.last() == Some(s));
                if whole && self.tree.is_module(module.0, &target) {
                    aliases.insert(name, target);
                }
            }
        }
        self.scopes.push((module, aliases));
    }

    fn depend(&mut self, segments: &[String]) {
        let (module, aliases) = self.scopes.last().expect("inside a module");
        let Some(target) = self.tree.resolve(module, aliases, segments) else { return };
        // A child uses its parent (and the parent's parents) freely, and a
        // parent declares and re-exports its children: structure, not a
        // dependency (else every `pub use child::X` in a `mod.rs` would tie
        // the users of X to all of X's siblings).
        if module.1.starts_with(&target) || target.starts_with(&module.1) {
            return;
        }
        let Some(to) = self.tree.files.get(&(module.0, target)) else { return };
        if to != self.file {
            self.edges.entry((self.file.to_string(), to.clone())).or_insert_with(|| segments.join("::"));
        }
    }

    /// Paths in a macro's tokens (`format!`, `macro_rules!` bodies ...): runs of
    /// `a::b::c` whose first name resolves.
    fn macro_paths(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            if let TokenTree::Group(g) = &tokens[i] {
                self.macro_paths(g.stream());
            }
            let starts = matches!(&tokens[i], TokenTree::Ident(_)) && (i < 2 || !is_colons(&tokens[i - 2..i]));
            if !starts {
                i += 1;
                continue;
            }
            let mut segments = vec![tokens[i].to_string()];
            let mut j = i + 1;
            while j + 2 < tokens.len() && is_colons(&tokens[j..j + 2]) && matches!(&tokens[j + 2], TokenTree::Ident(_))
            {
                segments.push(tokens[j + 2].to_string());
                j += 3;
            }
            if segments.len() > 1 {
                self.depend(&segments);
            }
            i = j;
        }
    }
}

fn is_colons(pair: &[TokenTree]) -> bool {
    matches!(pair, [TokenTree::Punct(a), TokenTree::Punct(b)] if a.as_char() == ':' && b.as_char() == ':')
}

/// Each name a `use` tree brings in: its whole path, and the name it goes by.
fn leaves(tree: &syn::UseTree, prefix: Vec<String>) -> Vec<(Vec<String>, String)> {
    let with = |ident: &syn::Ident| [prefix.clone(), vec![ident.to_string()]].concat();
    match tree {
        syn::UseTree::Path(p) => leaves(&p.tree, with(&p.ident)),
        syn::UseTree::Name(n) if n.ident == "self" => {
            let name = prefix.last().cloned().unwrap_or_default();
            vec![(with(&n.ident), name)]
        }
        syn::UseTree::Name(n) => vec![(with(&n.ident), n.ident.to_string())],
        syn::UseTree::Rename(r) => vec![(with(&r.ident), r.rename.to_string())],
        syn::UseTree::Glob(_) => vec![(prefix.clone(), "*".into())],
        syn::UseTree::Group(g) => g.items.iter().flat_map(|t| leaves(t, prefix.clone())).collect(),
    }
}

impl<'ast> Visit<'ast> for Walker<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let Some((_, items)) = &m.content else { return };
        let (module, _) = self.scopes.last().expect("inside a module");
        let child = (module.0, [module.1.clone(), vec![m.ident.to_string()]].concat());
        self.enter(child, items);
        syn::visit::visit_item_mod(self, m);
        self.scopes.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        for (mut segments, _) in leaves(&u.tree, Vec::new()) {
            if segments.last().is_some_and(|s| s == "self") {
                segments.pop();
            }
            self.depend(&segments);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 {
            self.depend(&segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.macro_paths(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// The groups of files that reach each other (strongly connected, two or more).
fn cycles(edges: &BTreeMap<(String, String), String>) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(at) = stack.pop() {
            for &to in next.get(at).into_iter().flatten() {
                if seen.insert(to) {
                    stack.push(to);
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&str, BTreeSet<&str>> = next.keys().map(|&f| (f, reach(f))).collect();
    let mut groups = BTreeSet::new();
    for (&file, out) in &reached {
        if !out.contains(file) {
            continue;
        }
        let group: Vec<String> =
            out.iter().filter(|&&o| reached.get(o).is_some_and(|r| r.contains(file))).map(|s| s.to_string()).collect();
        groups.insert(group);
    }
    groups.into_iter().collect()
}

/// A cycle as its files and the paths that tie them, one line each.
fn describe(group: &[String], edges: &BTreeMap<(String, String), String>) -> String {
    let ties: Vec<String> = edges
        .iter()
        .filter(|((from, to), _)| group.contains(from) && group.contains(to))
        .map(|((from, to), via)| format!("    {from} -> {to} (`{via}`)"))
        .collect();
    format!("  {}\n{}", group.join(" <-> "), ties.join("\n"))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, into: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path.strip_prefix(src().parent().unwrap()).unwrap().to_string_lossy().replace('\\', "/");
            into.push(name);
        }
    }
}

#[test]
fn no_import_cycles_between_modules_beyond_the_known_ones() {
    let tree = Tree::read(&src());
    let mut on_disk = Vec::new();
    rust_files(&src(), &mut on_disk);
    let read: BTreeSet<&String> = tree.parsed.keys().collect();
    let missed: Vec<&String> = on_disk.iter().filter(|f| !read.contains(f)).collect();
    assert!(missed.is_empty(), "files the module tree does not reach, so not checked: {missed:?}");

    let edges = tree.edges();
    let found = cycles(&edges);
    let known: Vec<Vec<String>> = KNOWN.iter().map(|c| c.iter().map(|f| f.to_string()).collect()).collect();
    let new: Vec<String> = found.iter().filter(|c| !known.contains(c)).map(|c| describe(c, &edges)).collect();
    let gone: Vec<String> = known.iter().filter(|c| !found.contains(c)).map(|c| c.join(" <-> ")).collect();
    assert!(new.is_empty(), "import cycles between modules:\n{}", new.join("\n"));
    assert!(gone.is_empty(), "these cycles are gone: remove them from KNOWN: {gone:?}");
}

#[test]
fn the_graph_sees_each_kind_of_path() {
    let tree = Tree::read(&src());
    let edges = tree.edges();
    let has = |from: &str, to: &str| edges.contains_key(&(from.to_string(), to.to_string()));
    // `use super::x::…`, `use crate::x::…`, a path in code, and one in a macro body.
    assert!(has("src/gateway/run.rs", "src/gateway/plan.rs"));
    assert!(has("src/gateway/run.rs", "src/journal.rs"));
    assert!(has("src/policy/mod.rs", "src/provider/mod.rs"), "the forward_to_inner! body names crate::provider");
    // A child's use of its parent is no dependency.
    assert!(!has("src/gateway/run.rs", "src/gateway/mod.rs"));
    // The two crates stay apart: the command line's `crate::` is its own.
    assert!(edges
        .keys()
        .all(|(from, to)| from.starts_with("src/cli/") || from == "src/main.rs" || !to.starts_with("src/cli/")));
}

#[test]
fn a_cycle_added_on_purpose_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let write = |file: &str, text: &str| {
        let path = src.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod clock;\npub mod shop;\npub mod util { pub mod text; }\n");
    // clock -> shop::till by `use`; shop::till -> clock by a path in code.
    write("clock.rs", "use crate::shop::till::Till;\npub fn now() -> u64 { 0 }\n");
    write("shop/mod.rs", "pub mod till;\npub mod stock;\npub use till::Till;\n");
    write("shop/till.rs", "pub struct Till;\nfn open() -> u64 { crate::clock::now() }\n");
    // stock -> text through a module alias; text -> stock inside a macro call.
    write("shop/stock.rs", "use crate::util::text;\npub fn count() { text::say(); }\n");
    write("util/text.rs", "pub fn say() { println!(\"{}\", crate::shop::stock::count()); }\n");
    let tree = Tree::read(&src);
    let edges = tree.edges();
    let found = cycles(&edges);
    assert_eq!(
        found,
        [
            vec!["src/clock.rs".to_string(), "src/shop/till.rs".into()],
            vec!["src/shop/stock.rs".into(), "src/util/text.rs".into()]
        ],
        "{edges:?}"
    );
    let named = describe(&found[0], &edges);
    assert!(named.contains("src/clock.rs <-> src/shop/till.rs"), "{named}");
    assert!(named.contains("src/clock.rs -> src/shop/till.rs (`crate::shop::till::Till`)"), "{named}");
    assert!(named.contains("src/shop/till.rs -> src/clock.rs (`crate::clock::now`)"), "{named}");
}
