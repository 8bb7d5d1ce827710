//! What nodes write for each other, as types shared by the writer and every reader: a test
//! set's `pairs.json`, a trained stage's `network.json`, the classifier's `classifier.json`,
//! an evaluation's `results.json`, a sweep's `sweep.json` and the stage curves' `curves.json`. Each carries the layout's
//! version (`job::FORMAT`); a reader refuses another version with a message that says to run
//! the node again, rather than misreading it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::job::FORMAT;

/// Paths as JSON strings, or `{"bytes_hex": ...}` for a name that is not UTF-8.
pub(crate) mod json_path {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        crate::run::store::path_to_json(p).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        crate::run::store::path_from_json(&v).ok_or_else(|| serde::de::Error::custom("not a path"))
    }
}

/// Numbers that may be infinite or NaN (the PSNR of identical images): JSON has no such
/// numbers, so they are written as `null` and read back as NaN (which means and charts skip).
mod maybe_nan {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer};

    pub fn one<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
        Ok(m.into_iter()
            .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
            .collect())
    }
}

fn format() -> u32 {
    FORMAT
}

/// One degraded image of a test set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// The clean image (where the data set's folder has it).
    #[serde(with = "json_path")]
    pub clean: PathBuf,
    /// The degraded PNG's name in the test set's folder.
    #[serde(with = "json_path")]
    pub degraded: PathBuf,
    /// The parameters drawn for it.
    pub params: BTreeMap<String, f64>,
}

/// `pairs.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pairs {
    #[serde(default = "format")]
    pub format: u32,
    pub pairs: Vec<Pair>,
}

/// A task of a trained network, in id order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkTask {
    pub name: String,
    pub degradation: String,
}

/// `network.json` beside a stage's weights: what `mio restore` rebuilds the network from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkInfo {
    #[serde(default = "format")]
    pub format: u32,
    /// The backbone's canonical text.
    pub backbone: String,
    pub tasks: Vec<NetworkTask>,
}

/// `classifier.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierInfo {
    #[serde(default = "format")]
    pub format: u32,
    pub tasks: Vec<String>,
    /// Of fresh training crops.
    #[serde(deserialize_with = "maybe_nan::one")]
    pub crop_accuracy: f64,
}

/// One image of an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalImage {
    /// Unique within its task.
    pub name: String,
    #[serde(with = "json_path")]
    pub clean: PathBuf,
    /// A test set's image relative to the node store (`testset-KEY/NAME.png`), or a ready-made
    /// pair's absolute path.
    #[serde(with = "json_path")]
    pub degraded: PathBuf,
    /// `images/TASK/NAME.png` in the eval's folder, when restored images are kept.
    pub restored: Option<String>,
    /// Each metric of the degraded input and of the output, by label.
    #[serde(deserialize_with = "maybe_nan::map")]
    pub input: BTreeMap<String, f64>,
    #[serde(deserialize_with = "maybe_nan::map")]
    pub output: BTreeMap<String, f64>,
    /// With a task classifier: the task it guessed, and whether that was right.
    pub predicted: Option<Option<String>>,
    pub correct: Option<bool>,
    /// A prompted model's latent prompt for the image (the extractors' outputs, the one the
    /// classifier's guess picked for explicit prompts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Vec<f32>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalTask {
    pub task: String,
    pub images: Vec<EvalImage>,
}

/// `results.json` of an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalResults {
    #[serde(default = "format")]
    pub format: u32,
    pub eval: String,
    pub model: String,
    pub data: String,
    /// `known` or `predicted`.
    pub labels: String,
    /// The metrics' labels, in order.
    pub metrics: Vec<String>,
    pub tasks: Vec<EvalTask>,
}

/// One point of a parameter sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamPoint {
    pub value: f64,
    #[serde(deserialize_with = "maybe_nan::one")]
    pub input_psnr: f64,
    #[serde(deserialize_with = "maybe_nan::one")]
    pub output_psnr: f64,
}

/// One blend weight of a prompt sweep on one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlendStep {
    pub a: f64,
    #[serde(deserialize_with = "maybe_nan::one")]
    pub mean_intensity: f64,
    pub psnr: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlendImage {
    pub image: String,
    /// The strip's PNG in the sweep's folder.
    pub strip: String,
    pub steps: Vec<BlendStep>,
}

/// `sweep.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SweepResults {
    Param {
        #[serde(default = "format")]
        format: u32,
        sweep: String,
        model: String,
        task: String,
        param: String,
        images: usize,
        points: Vec<ParamPoint>,
    },
    Prompts {
        #[serde(default = "format")]
        format: u32,
        sweep: String,
        model: String,
        from: String,
        to: String,
        images: Vec<BlendImage>,
    },
}

/// `curves.json`: a model's PSNR after each stage on each of its tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageCurves {
    #[serde(default = "format")]
    pub format: u32,
    /// The model as the report names it.
    pub model: String,
    pub tasks: Vec<String>,
    /// One row per stage, one value per task (`None`: no test image for the task).
    pub psnr: Vec<Vec<Option<f64>>>,
}

/// Which format a file has, read before the rest so a mismatch gets its own message.
#[derive(Deserialize)]
struct Version {
    #[serde(default = "format")]
    format: u32,
}

/// Reads an artifact; an unreadable, malformed or other-version file is an error naming it.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: Version = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not what mio wrote ({e}); run the step again",
            path.display()
        )
    })?;
    if v.format != FORMAT {
        return Err(format!(
            "{}: written in layout {} by another mio (this one reads {FORMAT}); run the step again",
            path.display(),
            v.format
        ));
    }
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not what mio wrote ({e}); run the step again",
            path.display()
        )
    })
}
