//! The catalog of mio's built-ins: every backbone, prompt strategy, degradation, metric, loss,
//! optimizer, schedule, strategy, data source and block setting, with its types, units,
//! defaults, bounds and docs (what the checker enforces and the language server shows), the
//! reference configurations of the backbones, and the `.mio` preludes embedded in the binary.
//! It knows nothing of tensors: the checker and the language server build without candle.

pub mod builtins;
pub mod catalog;
pub mod config;

pub use catalog::{Bound, Builtin, Default, Kind, Param, Ty};

/// A `.mio` prelude compiled into the binary: `use NAME` imports it.
pub struct Prelude {
    pub name: &'static str,
    pub source: &'static str,
}

pub const PRELUDES: &[Prelude] = &[Prelude {
    name: "paper",
    source: include_str!("prelude/paper.mio"),
}];

pub fn prelude(name: &str) -> Option<&'static Prelude> {
    PRELUDES.iter().find(|p| p.name == name)
}

/// The seven task keys in the paper's (CNN) task order.
pub const PAPER_TASKS: [&str; 7] = ["sr", "blur", "noise", "jpeg", "rain", "haze", "lowlight"];

/// The order of the seven tasks in the reference implementation's task index (its prompt maps
/// and classifier logits use it): blur 0, noise 1, jpeg 2, rain 3, haze 4, lowlight 5, sr 6.
pub const REFERENCE_TASK_INDEX: [&str; 7] =
    ["blur", "noise", "jpeg", "rain", "haze", "lowlight", "sr"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_within_each_kind_and_defaults_are_set_for_optional_params() {
        let mut seen = std::collections::HashSet::new();
        for b in builtins::all().chain(builtins::BLOCKS) {
            assert!(seen.insert((b.kind, b.name)), "duplicate {}", b.name);
            let mut names = std::collections::HashSet::new();
            for p in b.params {
                assert!(names.insert(p.name), "{} repeats {}", b.name, p.name);
                assert!(!p.doc.is_empty(), "{}.{} has no doc", b.name, p.name);
            }
            assert!(b.doc.len() > 10, "{} has no doc", b.name);
        }
    }

    #[test]
    fn the_seven_degradations_are_the_papers() {
        let mut names: Vec<&str> = catalog_names(Kind::Degradation);
        names.sort();
        let mut want = REFERENCE_TASK_INDEX.to_vec();
        want.sort();
        assert_eq!(names, want);
    }

    fn catalog_names(k: Kind) -> Vec<&'static str> {
        builtins::of_kind(k).map(|b| b.name).collect()
    }
}
