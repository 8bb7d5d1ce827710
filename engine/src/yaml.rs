//! The one module that knows YAML: run manifests are written and read here, and BasicSR
//! option files are parsed here for `mio import basicsr`. serde_yaml is archived upstream;
//! replacing it touches this file alone.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A parsed YAML document, as the importer walks it.
pub use serde_yaml::Value;

pub fn to_string<T: Serialize>(v: &T) -> Result<String, String> {
    serde_yaml::to_string(v).map_err(|e| e.to_string())
}

pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

/// The line (1-based) of the key at `path` in a block-style YAML text (`["train", "optim_g",
/// "lr"]`), found by indentation, as BasicSR's option files are written; `None` when it is not
/// written that way.
pub fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let mut depth = 0;
    // The parent's indentation, and its children's (set by the first line inside it).
    let mut parent: Option<usize> = None;
    let mut children: Option<usize> = Some(0);
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if parent.is_some_and(|p| indent <= p) {
            // Left the parent's block without finding the key.
            return None;
        }
        let level = *children.get_or_insert(indent);
        if indent != level || !trimmed.contains(':') {
            continue;
        }
        let key = trimmed.split(':').next().unwrap_or("").trim();
        if key.trim_matches(['"', '\'']) == path[depth] {
            if depth + 1 == path.len() {
                return Some(n + 1);
            }
            depth += 1;
            parent = Some(indent);
            children = None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_their_block() {
        let text = "name: a\ndatasets:\n  train:\n    lr: 1\ntrain:\n  optim_g:\n    type: Adam\n    lr: !!float 2e-4\n  total_iter: 10\nval:\n  lr: 3\n";
        assert_eq!(line_of(text, &["train", "optim_g", "lr"]), Some(8));
        assert_eq!(line_of(text, &["train", "total_iter"]), Some(9));
        assert_eq!(line_of(text, &["val", "lr"]), Some(11));
        assert_eq!(line_of(text, &["datasets", "train", "lr"]), Some(4));
        assert_eq!(line_of(text, &["train", "scheduler"]), None);
    }
}
