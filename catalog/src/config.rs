//! The configuration of each backbone and of a whole network, in one place: the fields the
//! catalog's parameters become, the reference configuration (the paper's), and the constraints
//! on input sides. The catalog's defaults, the checker's patch rule, the lowering into jobs and
//! the networks in `mio-stdlib` all read these types; a test holds the catalog's defaults equal
//! to the reference configurations.

use serde::{Deserialize, Serialize};

/// SRResNet at scale 1 (BasicSR's MSRResNet without the upsampler).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SrResNetConfig {
    pub channels: usize,
    pub blocks: usize,
    /// The restoration branch's Kaiming-normal weights are scaled by this.
    pub init_scale: f64,
}

impl SrResNetConfig {
    /// The paper's reference configuration (about 1.2 M parameters).
    pub fn reference() -> Self {
        SrResNetConfig {
            channels: 64,
            blocks: 16,
            init_scale: 0.1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SwinConfig {
    pub embed: usize,
    pub depths: Vec<usize>,
    pub heads: usize,
    /// The attention window: training patches and (padded) inputs are multiples of it.
    pub window: usize,
    pub mlp_ratio: f64,
}

impl SwinConfig {
    /// The paper's reference configuration (11.5 M parameters).
    pub fn reference() -> Self {
        SwinConfig {
            embed: 180,
            depths: vec![6; 6],
            heads: 6,
            window: 8,
            mlp_ratio: 2.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestormerConfig {
    pub dim: usize,
    /// Transformer blocks at levels 1..4 (level 4 is the latent).
    pub blocks: [usize; 4],
    pub refinement: usize,
    pub heads: [usize; 4],
    pub ffn_expansion: f64,
    /// Whether convolutions (other than the resampling ones) carry a bias.
    pub bias: bool,
}

impl RestormerConfig {
    /// Inputs' sides must be multiples of this (three halvings).
    pub const SIDE_MULTIPLE: usize = 8;

    /// The paper's reference configuration (26.1 M parameters).
    pub fn reference() -> Self {
        RestormerConfig {
            dim: 48,
            blocks: [4, 6, 6, 8],
            refinement: 4,
            heads: [1, 2, 4, 8],
            ffn_expansion: 2.66,
            bias: false,
        }
    }
}

/// Uformer (Wang et al.) as the reference trains it: a four-level U of LeWin transformer blocks
/// (window attention with a relative position bias, shifted windows in every other block, a
/// LeFF feed-forward network) with learnt modulators in the decoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UformerConfig {
    /// Channels at the first level (level i has `embed * 2^i`; the bottleneck 16x).
    pub embed: usize,
    /// LeWin blocks: four encoder levels, the bottleneck, four decoder levels.
    pub depths: [usize; 9],
    /// Attention heads at the same nine places.
    pub heads: [usize; 9],
    /// The attention window; inputs' sides must be multiples of 16 windows (four halvings).
    pub window: usize,
    /// LeFF's hidden size relative to the level's channels.
    pub mlp_ratio: f64,
    /// Whether the decoder's blocks add a learnt modulator to each window before attention.
    pub modulator: bool,
}

impl UformerConfig {
    /// The paper's reference configuration, Uformer-B (50.9 M parameters; 51.5 M prompted).
    pub fn reference() -> Self {
        UformerConfig {
            embed: 32,
            depths: [1, 2, 8, 8, 2, 8, 8, 2, 1],
            heads: [1, 2, 4, 8, 16, 16, 8, 4, 2],
            window: 8,
            mlp_ratio: 4.0,
            modulator: true,
        }
    }

    /// The channels at each of the nine places (the decoder works on the concatenation of the
    /// upsampled features and the skip: twice the encoder's).
    pub fn channels(&self) -> [usize; 9] {
        let e = self.embed;
        [e, 2 * e, 4 * e, 8 * e, 16 * e, 16 * e, 8 * e, 4 * e, 2 * e]
    }

    pub fn side_multiple(&self) -> usize {
        16 * self.window
    }

    pub fn problems(&self) -> Vec<Problem> {
        let mut out = vec![];
        let bad: Vec<String> = self
            .heads
            .iter()
            .zip(self.channels())
            .zip(UFORMER_PLACES)
            .filter(|((&h, c), _)| h < 1 || c % h != 0)
            .map(|((h, c), place)| format!("{h} heads at {place} ({c} channels)"))
            .collect();
        if !bad.is_empty() {
            let ch = self.channels();
            out.push(Problem {
                param: "heads",
                message: format!(
                    "attention heads must divide their level's channels: {}",
                    bad.join(", ")
                ),
                label: "does not divide the channels".into(),
                help: format!(
                    "the nine places have {} channels; pick heads that divide them",
                    ch.map(|c| c.to_string()).join(", ")
                ),
            });
        }
        if self.depths.contains(&0) {
            out.push(Problem {
                param: "depths",
                message: "every level of a Uformer needs at least one block".into(),
                label: "a level without blocks".into(),
                help: "give each of the nine places a depth of 1 or more, e.g. [1, 2, 8, 8, 2, 8, 8, 2, 1]"
                    .into(),
            });
        }
        out
    }
}

/// The nine places of a Uformer's `depths` and `heads`, for messages.
pub const UFORMER_PLACES: [&str; 9] = [
    "encoder level 1",
    "encoder level 2",
    "encoder level 3",
    "encoder level 4",
    "the bottleneck",
    "decoder level 4",
    "decoder level 3",
    "decoder level 2",
    "decoder level 1",
];

/// PromptIR (Potlapalli et al.): a Restormer body whose decoder reads three prompt blocks of
/// its own. The reference's channel counts follow from `dim` 48 and the prompt sizes here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptIrConfig {
    pub body: RestormerConfig,
    /// Channels of the prompts at decoder levels 2, 3 and the latent.
    pub prompt_dims: [usize; 3],
    /// Side of each learnt prompt component (resized bilinearly to the features).
    pub prompt_sizes: [usize; 3],
    /// Learnt components per prompt block.
    pub prompt_len: usize,
}

impl PromptIrConfig {
    /// The reference configuration (35.4 M parameters).
    pub fn reference() -> Self {
        PromptIrConfig {
            body: RestormerConfig::reference(),
            prompt_dims: [64, 128, 320],
            prompt_sizes: [64, 32, 16],
            prompt_len: 5,
        }
    }

    /// Channels of each prompt block's transformer block (`noise_level{1,2,3}`): the features
    /// and the prompt side by side.
    pub fn noise_channels(&self) -> [usize; 3] {
        let (d, p) = (self.body.dim, self.prompt_dims);
        [2 * d + p[0], 4 * d + p[1], 8 * d + p[2]]
    }

    pub fn problems(&self) -> Vec<Problem> {
        let mut out = self.body.problems();
        let h = self.body.heads[2];
        let bad: Vec<String> = self
            .noise_channels()
            .iter()
            .enumerate()
            .filter(|&(_, &c)| h < 1 || c % h != 0)
            .map(|(i, c)| format!("prompt block {} ({c} channels)", i + 1))
            .collect();
        if !bad.is_empty() {
            out.push(Problem {
                param: "heads",
                message: format!(
                    "the prompt blocks attend with level 3's {h} heads, which must divide their \
                     channels: {}",
                    bad.join(", ")
                ),
                label: "does not divide the prompt blocks' channels".into(),
                help: "the prompt blocks have the level's channels plus `prompt_dims`; pick a \
                       third entry of `heads` (or `prompt_dims`) that divides them"
                    .into(),
            });
        }
        if self.prompt_len == 0 || self.prompt_dims.contains(&0) || self.prompt_sizes.contains(&0) {
            out.push(Problem {
                param: "prompt_len",
                message: "PromptIR's prompt blocks need at least one component of at least one \
                          channel and one pixel"
                    .into(),
                label: "an empty prompt".into(),
                help: "use the reference's `prompt_len = 5`, `prompt_dims = [64, 128, 320]`, \
                       `prompt_sizes = [64, 32, 16]`"
                    .into(),
            });
        }
        out
    }
}

/// How a model is told its task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PromptMode {
    None,
    /// A fixed random map per task through the extractor (1 channel in).
    Explicit {
        dim: usize,
    },
    /// The degraded input itself through the extractor (3 channels in).
    Adaptive {
        dim: usize,
    },
}

impl PromptMode {
    /// For a prompted model, the latent prompt's size and the channels its extractors read
    /// (1 for a task map, 3 for the image).
    pub fn branch(self) -> Option<(usize, usize)> {
        match self {
            PromptMode::None => None,
            PromptMode::Explicit { dim } => Some((dim, 1)),
            PromptMode::Adaptive { dim } => Some((dim, 3)),
        }
    }
}

/// The backbone and its size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Arch {
    SrResNet(SrResNetConfig),
    SwinIr(SwinConfig),
    Restormer(RestormerConfig),
    Uformer(UformerConfig),
    PromptIr(PromptIrConfig),
}

impl Arch {
    /// What the sides of an input must be multiples of: SwinIR's window, Restormer's and
    /// PromptIR's three halvings, Uformer's four halvings of its window (training patches too).
    pub fn side_multiple(&self) -> usize {
        match self {
            Arch::SrResNet(_) => 1,
            Arch::SwinIr(cfg) => cfg.window,
            Arch::Restormer(_) | Arch::PromptIr(_) => RestormerConfig::SIDE_MULTIPLE,
            Arch::Uformer(cfg) => cfg.side_multiple(),
        }
    }

    /// Whether test-time inputs are padded to a square as well (the reference's Uformer test
    /// does: reflected, half on each side of the short one).
    pub fn pads_to_square(&self) -> bool {
        matches!(self, Arch::Uformer(_))
    }
}

/// What input sides (and training patches) must be multiples of, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SideRule {
    pub multiple: usize,
    /// "its `window`", "its downsampling": for messages.
    pub because: &'static str,
    /// The parameter that sets it, if one does.
    pub param: Option<&'static str>,
}

/// A backbone's settings that do not fit together: the parameter to point at, the message,
/// the label at the parameter and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub param: &'static str,
    pub message: String,
    pub label: String,
    pub help: String,
}

impl Arch {
    /// The rule for input sides, when there is one (SRResNet takes any size).
    pub fn side_rule(&self) -> Option<SideRule> {
        match self {
            Arch::SrResNet(_) => None,
            Arch::SwinIr(c) => Some(SideRule {
                multiple: c.window,
                because: "its `window`",
                param: Some("window"),
            }),
            Arch::Restormer(_) | Arch::PromptIr(_) => Some(SideRule {
                multiple: RestormerConfig::SIDE_MULTIPLE,
                because: "its downsampling",
                param: None,
            }),
            Arch::Uformer(c) => Some(SideRule {
                multiple: c.side_multiple(),
                because: "16 x its `window` (four halvings)",
                param: Some("window"),
            }),
        }
    }

    /// Settings that do not fit together (heads that do not divide the channels, an empty
    /// group): the checker reports each at its parameter.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Arch::SrResNet(_) => vec![],
            Arch::SwinIr(c) => c.problems(),
            Arch::Restormer(c) => c.problems(),
            Arch::Uformer(c) => c.problems(),
            Arch::PromptIr(c) => c.problems(),
        }
    }
}

impl SwinConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = vec![];
        let (embed, heads) = (self.embed, self.heads);
        if heads > 0 && embed % heads != 0 {
            out.push(Problem {
                param: "heads",
                message: format!("{heads} heads do not divide the embedding of {embed} channels"),
                label: "does not divide `embed`".into(),
                help: format!(
                    "use heads that divide {embed}, or an `embed` that is a multiple of {heads}"
                ),
            });
        }
        if self.depths.is_empty() || self.depths.contains(&0) {
            out.push(Problem {
                param: "depths",
                message: "every residual group needs at least one Swin block".into(),
                label: "an empty group".into(),
                help: "give each group a depth of 1 or more, e.g. [6, 6, 6, 6]".into(),
            });
        }
        out
    }
}

impl RestormerConfig {
    pub fn problems(&self) -> Vec<Problem> {
        let dim = self.dim;
        // Level i works on dim * 2^i channels (level 1's decoder on twice that).
        let bad: Vec<String> = self
            .heads
            .iter()
            .enumerate()
            .filter(|&(i, &h)| h < 1 || (dim << i) % h != 0)
            .map(|(i, &h)| format!("{h} heads at level {} ({} channels)", i + 1, dim << i))
            .collect();
        if bad.is_empty() {
            return vec![];
        }
        vec![Problem {
            param: "heads",
            message: format!(
                "attention heads must divide their level's channels: {}",
                bad.join(", ")
            ),
            label: "does not divide the channels".into(),
            help: format!(
                "level i has dim x 2^(i-1) channels ({}, {}, {}, {}); pick heads that divide them",
                dim,
                2 * dim,
                4 * dim,
                8 * dim
            ),
        }]
    }
}

/// Everything needed to build a network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub arch: Arch,
    pub prompt: PromptMode,
    /// Side of each explicit task map.
    pub map_size: usize,
    /// The task names in id order (the prompt and classifier labels).
    pub tasks: Vec<String>,
}
