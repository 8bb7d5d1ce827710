//! A test set: every clean image of a data set degraded by one task, as PNGs, and
//! `pairs.json` naming each pair and the parameters drawn for it.

use std::path::{Path, PathBuf};

use super::common::{clean_images, failed, write_json};
use crate::job::{JobFile, TestSet};
use crate::run::artifact::{Pair, Pairs};
use crate::run::error::{NodeError, RunError};

pub(super) fn run(jf: &JobFile, j: &TestSet, dir: &Path) -> Result<(), RunError> {
    let f = failed(&jf.name);
    let clean = clean_images(&jf.base, &j.data).map_err(&f)?;
    let pairs =
        mio_stdlib::data::build_test_set(&clean, &j.task, j.seed, dir).map_err(|e| f(e.into()))?;
    let pairs = pairs
        .iter()
        .map(|p| Pair {
            clean: p.clean.clone(),
            degraded: p.degraded.file_name().unwrap_or_default().into(),
            params: p.params.iter().cloned().collect(),
        })
        .collect();
    write_json(
        &dir.join("pairs.json"),
        &Pairs {
            format: crate::job::FORMAT,
            pairs,
        },
    )
    .map_err(f)
}

/// The (clean, degraded) files of a finished test set.
pub(crate) fn pairs_of(dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>, NodeError> {
    let path = dir.join("pairs.json");
    let p: Pairs = crate::run::artifact::read(&path).map_err(|e| NodeError::read(&path, e))?;
    Ok(p.pairs
        .into_iter()
        .map(|p| (p.clean, dir.join(p.degraded)))
        .collect())
}
