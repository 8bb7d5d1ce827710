//! Reading a `.mio` file and everything it imports (`use paper`, `use "lib.mio" as lib`) into
//! one [`Program`]. Syntax errors become E001 diagnostics here; nothing stops at the first.

use std::path::{Path, PathBuf};

use mio_grammar::{ast, Span};

use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::source::{FileId, SourceMap};

pub type ModId = usize;

#[derive(Debug)]
pub struct Module {
    /// The namespace others reach it by (`paper`, the file stem, or the `as` alias).
    pub name: String,
    pub file: FileId,
    pub ast: ast::File,
    /// `(namespace, module)` for each `use` of this module that loaded.
    pub imports: Vec<(String, ModId)>,
}

#[derive(Debug, Default)]
pub struct Program {
    pub sources: SourceMap,
    pub modules: Vec<Module>,
}

impl Program {
    /// The file that was asked for.
    pub const ROOT: ModId = 0;
}

/// Where a module came from, to load each once and find cycles.
#[derive(Clone, PartialEq)]
enum Origin {
    Prelude(String),
    File(PathBuf),
    Memory,
}

struct Loader<'a> {
    prog: Program,
    origins: Vec<Origin>,
    /// Modules being loaded (for cycle detection).
    stack: Vec<ModId>,
    diags: &'a mut Vec<Diagnostic>,
}

/// Loads `text` (named `name`, read from `path` if it came from disk) and its imports.
pub fn load(name: &str, path: Option<&Path>, text: String, diags: &mut Vec<Diagnostic>) -> Program {
    let mut l = Loader {
        prog: Program::default(),
        origins: vec![],
        stack: vec![],
        diags,
    };
    let origin = match path {
        Some(p) => Origin::File(p.canonicalize().unwrap_or_else(|_| p.to_path_buf())),
        None => Origin::Memory,
    };
    let stem = path
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "main".into());
    l.module(
        stem,
        name.to_string(),
        path.map(Path::to_path_buf),
        text,
        origin,
    );
    l.prog
}

impl Loader<'_> {
    fn module(
        &mut self,
        ns: String,
        display: String,
        path: Option<PathBuf>,
        text: String,
        origin: Origin,
    ) -> ModId {
        let file = self.prog.sources.add(display, path.clone(), text);
        let f = self.prog.sources.get(file);
        let parsed = mio_grammar::parse_at(&f.text, f.base);
        for e in parsed.errors {
            self.diags
                .push(Diagnostic::new(Code::Syntax, e.span, e.message, e.label).with_help(e.help));
        }
        let id = self.prog.modules.len();
        self.prog.modules.push(Module {
            name: ns,
            file,
            ast: parsed.file,
            imports: vec![],
        });
        self.origins.push(origin);
        self.stack.push(id);
        let uses: Vec<ast::Use> = self.prog.modules[id]
            .ast
            .items
            .iter()
            .filter_map(|i| match i {
                ast::Item::Use(u) => Some(u.clone()),
                _ => None,
            })
            .collect();
        let dir = path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for u in uses {
            if let Some((ns, m)) = self.import(&u, &dir) {
                self.prog.modules[id].imports.push((ns, m));
            }
        }
        self.stack.pop();
        id
    }

    fn import(&mut self, u: &ast::Use, dir: &Path) -> Option<(String, ModId)> {
        let (origin, ns, span) = match &u.target {
            ast::UseTarget::Prelude(i) => {
                if mio_catalog::prelude(&i.name).is_none() {
                    let names = mio_catalog::PRELUDES.iter().map(|p| p.name);
                    let help = did_you_mean(&i.name, names).unwrap_or_else(|| {
                        "built-in preludes: paper; to import a file, quote its path: use \"lib.mio\"".into()
                    });
                    self.diags.push(
                        Diagnostic::new(
                            Code::UnknownPrelude,
                            i.span,
                            format!("there is no built-in prelude `{}`", i.name),
                            "unknown prelude",
                        )
                        .help(help),
                    );
                    return None;
                }
                (Origin::Prelude(i.name.clone()), i.name.clone(), i.span)
            }
            ast::UseTarget::File { path, span } => {
                let full = dir.join(path);
                let canon = full.canonicalize().unwrap_or(full.clone());
                let stem = Path::new(path)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (Origin::File(canon), stem, *span)
            }
        };
        let ns = u.alias.as_ref().map(|a| a.name.clone()).unwrap_or(ns);
        if let Some(existing) = self.origins.iter().position(|o| *o == origin) {
            if self.stack.contains(&existing) {
                let chain: Vec<String> = self
                    .stack
                    .iter()
                    .skip_while(|&&m| m != existing)
                    .map(|&m| {
                        self.prog
                            .sources
                            .get(self.prog.modules[m].file)
                            .name
                            .clone()
                    })
                    .collect();
                self.diags.push(
                    Diagnostic::new(
                        Code::ImportCycle,
                        span,
                        format!("import cycle: {} -> back here", chain.join(" -> ")),
                        "this import closes the cycle",
                    )
                    .help("move what both files need into a third file that neither imports"),
                );
                return None;
            }
            return Some((ns, existing));
        }
        match origin.clone() {
            Origin::Prelude(name) => {
                let p = mio_catalog::prelude(&name).expect("checked above");
                let m = self.module(
                    name.clone(),
                    format!("<{name} prelude>"),
                    None,
                    p.source.to_string(),
                    origin,
                );
                Some((ns, m))
            }
            Origin::File(canon) => {
                let shown = match &u.target {
                    ast::UseTarget::File { path, .. } => dir.join(path),
                    _ => unreachable!(),
                };
                match std::fs::read_to_string(&canon) {
                    Ok(text) => {
                        let m = self.module(
                            ns.clone(),
                            shown.display().to_string(),
                            Some(shown),
                            text,
                            origin,
                        );
                        Some((ns, m))
                    }
                    Err(e) => {
                        self.diags.push(
                            Diagnostic::new(
                                Code::ImportNotFound,
                                span,
                                format!("cannot read `{}`: {e}", shown.display()),
                                "imported here",
                            )
                            .help("paths in `use` are relative to the file that imports them"),
                        );
                        None
                    }
                }
            }
            Origin::Memory => None,
        }
    }
}

/// The span of a whole item's name, for "defined here" labels.
pub fn item_name_span(item: &ast::Item) -> Span {
    item.name().map(|n| n.span).unwrap_or(item.span())
}
