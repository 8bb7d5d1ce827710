//! Every built-in with its signature and docs. The checker enforces exactly what is written
//! here, and completion and hover show it, so the docs a user reads are the rules applied.
//! Defaults are `.mio` expressions; ranges of degradations follow MIOIR.md (in-distribution).

use crate::catalog::Bound::{Excl, Incl};
use crate::catalog::*;

const fn b(name: &'static str, kind: Kind, params: &'static [Param], doc: &'static str) -> Builtin {
    Builtin {
        name,
        kind,
        params,
        doc,
    }
}

const INT: Ty = Ty::Int;
const FLOAT: Ty = Ty::Float;
const PROMPT: Ty = Ty::Builtin(Kind::Prompt);
const TASK_LIST: Ty = Ty::List(&Ty::Task);
const INT_LIST: Ty = Ty::List(&Ty::Int);

/// How a backbone starts from weights: the same four parameters on every backbone.
const WEIGHTS: Param = opt("weights", Ty::FilePath, "Start from these weights instead of a random initialisation: a PyTorch `.pth` \
     checkpoint as BasicSR saves it (the reference's released models) or a safetensors file (a mio run's \
     `weights.safetensors`). Untrained, the model is evaluated as it is; trained, training starts from them.");
const PARAM_KEY: Param = opt(
    "param_key",
    STR,
    "The key of a `.pth` checkpoint's weights: `\"params\"` (the default, BasicSR's) or \
     `\"params_ema\"` (its EMA), or another key the file uses. Needs `weights`.",
);
const MAPS: Param = opt("maps", Ty::FilePath, "The explicit prompts' task maps that go with `weights`: the reference's `type7.npy` \
     (float64 [7, S, S] in its task order blur, noise, jpeg, rain, haze, lowlight, sr) or a mio weights file. \
     Tasks trained later that the file has no map for get a fresh one.");
const CLASSIFIER_FILE: Param = opt("classifier", Ty::FilePath, "The task classifier that goes with `weights` (the reference's \
     `Classifier.pth`, or a mio classifier step's `classifier.safetensors`): evaluations with predicted \
     labels use it instead of training one.");

pub const BACKBONES: &[Builtin] = &[
    b(
        "srresnet",
        Kind::Backbone,
        &[
            p("channels", INT, "64", "Feature channels of every convolution.").min(Incl(1.0)),
            p("blocks", INT, "16", "Residual blocks (conv-ReLU-conv plus the block input, no batch norm).")
                .min(Incl(1.0)),
            p("prompt", PROMPT, "none", "How the task is told to the network: `none`, `explicit(...)` or `adaptive(...)`."),
            p("init_scale", FLOAT, "0.1", "Kaiming initialisation scaled by this factor, as in the reference.")
                .min(Excl(0.0)),
            WEIGHTS, PARAM_KEY, MAPS, CLASSIFIER_FILE,
        ],
        "SRResNet at scale 1 (MIOIR.md): conv 3->C, LeakyReLU 0.1, `blocks` residual blocks, conv_hr, \
         LeakyReLU, conv_last C->3, plus the input. The reference configuration (64 channels, 16 blocks) \
         has about 1.2 M parameters. Parameter names follow BasicSR (`conv_first`, `body.N.conv1`, \
         `conv_hr`, `conv_last`) so reference weights load by name. With a prompt, features are modulated \
         after every block, after conv_hr and after conv_last.",
    ),
    Builtin {
        name: "swinir",
        kind: Kind::Backbone,
        params: &[
            p("embed", INT, "180", "Embedding dimension.").min(Incl(1.0)),
            p("depths", INT_LIST, "[6, 6, 6, 6, 6, 6]", "Swin blocks in each residual group."),
            p("heads", INT, "6", "Attention heads in every block.").min(Incl(1.0)),
            p("window", INT, "8", "Attention window size in pixels; training patches must be a multiple of it.")
                .min(Incl(1.0))
                .unit("px"),
            p("mlp_ratio", FLOAT, "2.0", "Hidden size of the MLP relative to `embed`.").min(Excl(0.0)),
            p("prompt", PROMPT, "none", "How the task is told to the network: `none`, `explicit(...)` or `adaptive(...)`."),
            WEIGHTS, PARAM_KEY, MAPS, CLASSIFIER_FILE,
        ],
        doc: "SwinIR at scale 1: shifted-window self-attention in residual Swin groups. Input minus the RGB \
              mean (0.4488, 0.4371, 0.4040), padded to a multiple of the window at test time. The reference \
              configuration is embed 180, 6 groups of 6 blocks, 6 heads, window 8, MLP ratio 2 (11.5 M \
              parameters). With a prompt (the reference's SwinIR_EP/_AP), features are modulated after each \
              group, after the conv after the body, after a conv to 64 channels before the output and after \
              the last conv.",
    },
    Builtin {
        name: "restormer",
        kind: Kind::Backbone,
        params: &[
            p("dim", INT, "48", "Channels at the first level.").min(Incl(1.0)),
            p("blocks", INT_LIST, "[4, 6, 6, 8]", "Transformer blocks at each of the four levels."),
            p("refinement", INT, "4", "Refinement blocks at full resolution.").min(Incl(0.0)),
            p("heads", INT_LIST, "[1, 2, 4, 8]", "Attention heads at each level."),
            p("ffn_expansion", FLOAT, "2.66", "Hidden size of the gated feed-forward network relative to the level's channels.")
                .min(Excl(0.0)),
            p("bias", Ty::Bool, "false", "Whether convolutions carry a bias."),
            p("prompt", PROMPT, "none", "How the task is told to the network: `none`, `explicit(...)` or `adaptive(...)`."),
            WEIGHTS, PARAM_KEY, MAPS, CLASSIFIER_FILE,
        ],
        doc: "Restormer: multi-Dconv head transposed attention (MDTA) and gated-Dconv feed-forward (GDFN) in a \
              four-level U-shape, global residual. The reference configuration (dim 48, blocks [4, 6, 6, 8], \
              refinement 4, heads [1, 2, 4, 8]) has 26.1 M parameters. Training patches must be a multiple of 8 \
              (three downsamplings); at test time images are padded to a multiple of 8 (the reference pads to \
              64; MDTA attends over the whole image, so the padding shifts results slightly). With a prompt, \
              four extractors modulate the latent, decoder level 3, decoder levels 2 and 1 with the \
              refinement, and the output conv.",
    },
    Builtin {
        name: "uformer",
        kind: Kind::Backbone,
        params: &[
            p("embed", INT, "32", "Channels at the first level (level i has embed x 2^i, the bottleneck 16x).").min(Incl(1.0)),
            p("depths", INT_LIST, "[1, 2, 8, 8, 2, 8, 8, 2, 1]", "LeWin blocks at the nine places: four encoder levels, the bottleneck, four decoder levels."),
            p("heads", INT_LIST, "[1, 2, 4, 8, 16, 16, 8, 4, 2]", "Attention heads at the same nine places."),
            p("window", INT, "8", "Attention window size in pixels; training patches must be a multiple of 16 windows (four halvings).")
                .min(Incl(1.0))
                .unit("px"),
            p("mlp_ratio", FLOAT, "4.0", "Hidden size of LeFF (the locally-enhanced feed-forward network) relative to the level's channels.")
                .min(Excl(0.0)),
            p("modulator", Ty::Bool, "true", "Whether the decoder's blocks add a learnt modulator to each window before attention."),
            p("prompt", PROMPT, "none", "How the task is told to the network: `none`, `explicit(...)` or `adaptive(...)`."),
            WEIGHTS, PARAM_KEY, MAPS, CLASSIFIER_FILE,
        ],
        doc: "Uformer (the reference's Uformer-B): a four-level U of LeWin transformer blocks (window attention \
              with a relative position bias, shifted windows in every other block, LeFF with a 3x3 depthwise \
              convolution), 4x4 stride-2 convolutions down, 2x2 transposed convolutions up, learnt modulators \
              in the decoder, plus the input. The reference configuration (embed 32, depths [1, 2, 8, 8, 2, 8, \
              8, 2, 1], window 8) has 50.9 M parameters (51.5 M prompted). Training patches must be multiples of \
              16 windows (128 pixels at window 8); at test time images are padded to that multiple and then \
              to a square, as the reference tests them. With a prompt (the reference's Uformer_EP/_AP), five \
              extractors modulate the bottleneck, each decoder level and the output.",
    },
    Builtin {
        name: "promptir",
        kind: Kind::Backbone,
        params: &[
            p("dim", INT, "48", "Channels at the first level.").min(Incl(1.0)),
            p("blocks", INT_LIST, "[4, 6, 6, 8]", "Transformer blocks at each of the four levels."),
            p("refinement", INT, "4", "Refinement blocks at full resolution.").min(Incl(0.0)),
            p("heads", INT_LIST, "[1, 2, 4, 8]", "Attention heads at each level (the prompt blocks use the third entry)."),
            p("ffn_expansion", FLOAT, "2.66", "Hidden size of the gated feed-forward network relative to the level's channels.")
                .min(Excl(0.0)),
            p("bias", Ty::Bool, "false", "Whether convolutions carry a bias."),
            p("prompt_dims", INT_LIST, "[64, 128, 320]", "Channels of the prompts at decoder level 2, decoder level 3 and the latent."),
            p("prompt_sizes", INT_LIST, "[64, 32, 16]", "Side of each learnt prompt component, resized bilinearly to the features.")
                .unit("px"),
            p("prompt_len", INT, "5", "Learnt components per prompt block.").min(Incl(1.0)),
            WEIGHTS, PARAM_KEY,
        ],
        doc: "PromptIR: a Restormer body whose decoder reads three prompt blocks of its own (a softmax over the \
              pooled features weighs learnt components, resized to the features and convolved; concatenated \
              to the features, through a transformer block, reduced). It has no `prompt` setting: the \
              reference trains it as M and S only (its \"PromptIR-EP/AP\" rows are Restormer's EP/AP models). \
              The reference configuration has 35.4 M parameters. Training patches must be a multiple of 8; at \
              test time images are padded to a multiple of 8.",
    },
];

pub const PROMPTS: &[Builtin] = &[
    b("none", Kind::Prompt, &[], "No prompt: the plain backbone, which must infer the task by itself."),
    b(
        "explicit",
        Kind::Prompt,
        &[
            p("dim", INT, "64", "Size of the latent prompt z that modulates the features.").min(Incl(1.0)),
            p("map_size", INT, "128", "Side of each task's fixed random prompt map (1 x S x S, U[0, 1)).")
                .min(Incl(8.0))
                .unit("px"),
        ],
        "Explicit prompt (EP): every task owns a fixed random map, drawn once from the workflow seed and \
         never trained; the extractor turns it into z, and each modulation point computes \
         f * (1 + scale(z)) + shift(z). Training uses the known task label; at test time a small task \
         classifier (see the train block's `classifier`) predicts it, unless an eval asks for `labels = known`.",
    ),
    b(
        "adaptive",
        Kind::Prompt,
        &[p("dim", INT, "64", "Size of the latent prompt z that modulates the features.").min(Incl(1.0))],
        "Adaptive prompt (AP): z is extracted from the degraded input itself (three strided convolutions and \
         a global mean) and trained end to end by the restoration loss alone; no task label is needed.",
    ),
];

const SAMPLED_FLOAT: Ty = Ty::Sampled(&Ty::Float);
const SAMPLED_INT: Ty = Ty::Sampled(&Ty::Int);

pub const DEGRADATIONS: &[Builtin] = &[
    b(
        "sr",
        Kind::Degradation,
        &[
            p("scale", INT, "4", "Downscaling factor; the image is scaled back up to its size.")
                .min(Incl(2.0))
                .max(Incl(8.0)),
            p("kernel", Ty::Word(&["bicubic", "matlab"]), "bicubic",
              "`bicubic`: PyTorch's interpolate (a = -0.75, align_corners = false, no antialias), as the \
               reference; `matlab`: MATLAB-style antialiased bicubic."),
        ],
        "Super-resolution input: bicubic downscale by `scale`, then bicubic upscale back to the original size \
         (every network runs at scale 1). Reference task index 6.",
    ),
    b(
        "blur",
        Kind::Degradation,
        &[
            p("sigma", SAMPLED_FLOAT, "1.0..3.0", "Standard deviation of the isotropic Gaussian, in pixels.")
                .min(Excl(0.0))
                .max(Incl(20.0)),
            p("size", SAMPLED_INT, "7..21", "Kernel size; an odd size is drawn from the range.")
                .min(Incl(3.0))
                .max(Incl(51.0))
                .unit("px"),
        ],
        "Isotropic Gaussian blur with reflect padding. In-distribution sigma ~ U[1, 3]; out of distribution \
         U[3, 5]. Reference task index 0.",
    ),
    b(
        "noise",
        Kind::Degradation,
        &[p("sigma", SAMPLED_FLOAT, "15..50", "Standard deviation on the 0..255 scale (rounded after drawing).")
            .min(Incl(0.0))
            .max(Incl(255.0))],
        "Additive colour Gaussian noise, clipped to [0, 1]. In-distribution sigma = round(U[15, 50]); out of \
         distribution U[50, 70]. Reference task index 1.",
    ),
    b(
        "jpeg",
        Kind::Degradation,
        &[p("quality", SAMPLED_INT, "30..70", "JPEG quality factor.")
            .min(Incl(1.0))
            .max(Incl(100.0))],
        "Real baseline JPEG encoding and decoding at the drawn quality. In distribution round(U[30, 70]); out \
         of distribution U[10, 30]. Reference task index 2.",
    ),
    b(
        "rain",
        Kind::Degradation,
        &[
            p("value", SAMPLED_INT, "50..100", "How many streak seeds are scattered (density).").min(Incl(1.0)),
            p("length", SAMPLED_INT, "20..40", "Length of the motion kernel that smears each seed.")
                .min(Incl(1.0))
                .unit("px"),
            p("angle", SAMPLED_FLOAT, "-45deg..45deg", "Streak angle from the vertical.")
                .min(Incl(-90.0))
                .max(Incl(90.0))
                .unit("deg"),
            p("width", SAMPLED_INT, "3..11", "Width of the Gaussian blur applied to the streaks.")
                .min(Incl(1.0))
                .unit("px"),
        ],
        "Synthetic rain: sparse random seeds smeared by a rotated line kernel, Gaussian-blurred, min-max \
         normalised, added to the image and clipped. In distribution value in 50..100; out of distribution \
         100..150. Reference task index 3.",
    ),
    b(
        "haze",
        Kind::Degradation,
        &[
            p("a", SAMPLED_FLOAT, "0.8..1.0", "Atmospheric light A.").min(Incl(0.0)).max(Incl(1.0)),
            p("beta", SAMPLED_FLOAT, "0.5..2.5", "Scattering coefficient B: transmission T = exp(-B d).")
                .min(Incl(0.0)),
        ],
        "Atmospheric scattering I = J T + A (1 - T) with T = exp(-B d) and d a depth map in [0, 1]: read from \
         a file next to the image (`NAME.depth.png`) when present, else a smooth synthetic depth prior. In \
         distribution B ~ U[0.5, 2.5]; out of distribution U[2.5, 3.0]. Reference task index 4.",
    ),
    b(
        "lowlight",
        Kind::Degradation,
        &[p("gamma", SAMPLED_FLOAT, "1.0..3.0", "Gamma exponent: I = J^gamma.").min(Excl(0.0))],
        "Low light by gamma darkening. In distribution gamma ~ U[1, 3]; out of distribution U[3, 4]. \
         Reference task index 5.",
    ),
];

pub const METRICS: &[Builtin] = &[
    b(
        "psnr",
        Kind::Metric,
        &[
            p("crop", INT, "4", "Pixels cropped from every border before measuring.").min(Incl(0.0)).unit("px"),
            p("y", Ty::Bool, "false", "Measure on the Y channel (ITU-R BT.601) instead of RGB."),
        ],
        "Peak signal-to-noise ratio in dB on 8-bit images (clamp to [0, 1], x255, round), averaged over the \
         images of a test set, as the paper reports it.",
    ),
    b(
        "ssim",
        Kind::Metric,
        &[
            p("crop", INT, "4", "Pixels cropped from every border before measuring.").min(Incl(0.0)).unit("px"),
            p("y", Ty::Bool, "false", "Measure on the Y channel (ITU-R BT.601) instead of RGB."),
        ],
        "Structural similarity with an 11x11 Gaussian window (sigma 1.5), computed as scikit-image and \
         BasicSR do, averaged over channels and images.",
    ),
];

pub const LOSSES: &[Builtin] = &[
    b(
        "l1",
        Kind::Loss,
        &[],
        "Mean absolute error, the reference's loss.",
    ),
    b("l2", Kind::Loss, &[], "Mean squared error."),
    b(
        "charbonnier",
        Kind::Loss,
        &[p(
            "eps",
            FLOAT,
            "1e-3",
            "Smoothing constant: sqrt(d^2 + eps^2).",
        )
        .min(Excl(0.0))],
        "Charbonnier loss, a differentiable variant of L1.",
    ),
];

const BETAS: Ty = Ty::Tuple(&[Ty::Float, Ty::Float]);

pub const OPTIMIZERS: &[Builtin] = &[
    b(
        "adam",
        Kind::Optimizer,
        &[
            p("lr", FLOAT, "2e-4", "Learning rate (restarted at every stage of a sequential run).").min(Excl(0.0)),
            p("betas", BETAS, "(0.9, 0.99)", "Decay rates of the first and second moment estimates."),
            p("weight_decay", FLOAT, "0", "L2 penalty added to the gradient.").min(Incl(0.0)),
            p("eps", FLOAT, "1e-8", "Added to the denominator for stability.").min(Excl(0.0)),
        ],
        "Adam, as the reference trains SRResNet and SwinIR (lr 2e-4, betas (0.9, 0.99), no weight decay).",
    ),
    b(
        "adamw",
        Kind::Optimizer,
        &[
            p("lr", FLOAT, "2e-4", "Learning rate (restarted at every stage of a sequential run).").min(Excl(0.0)),
            p("betas", BETAS, "(0.9, 0.999)", "Decay rates of the first and second moment estimates."),
            p("weight_decay", FLOAT, "1e-4", "Decoupled weight decay.").min(Incl(0.0)),
            p("eps", FLOAT, "1e-8", "Added to the denominator for stability.").min(Excl(0.0)),
        ],
        "AdamW (decoupled weight decay), as the reference trains Restormer.",
    ),
];

pub const SCHEDULES: &[Builtin] = &[
    b("constant", Kind::Schedule, &[], "The learning rate stays at the optimizer's `lr`."),
    b(
        "cosine_restart",
        Kind::Schedule,
        &[
            p("min_lr", FLOAT, "1e-7", "The learning rate at the end of each period.").min(Incl(0.0)),
            p("periods", INT_LIST, "[]", "Period lengths in iterations; empty means one period per stage."),
        ],
        "Cosine annealing with restarts down to `min_lr`, the reference's schedule. Each stage of a sequential \
         run restarts it.",
    ),
    b(
        "step",
        Kind::Schedule,
        &[
            req("milestones", INT_LIST, "Iterations (within a stage) at which the rate is multiplied by `gamma`."),
            p("gamma", FLOAT, "0.5", "Factor applied at each milestone.").min(Excl(0.0)).max(Incl(1.0)),
        ],
        "Step decay.",
    ),
];

pub const STRATEGIES: &[Builtin] = &[
    b(
        "mixed",
        Kind::Strategy,
        &[],
        "Mixed learning (M): one stage that trains on every task from the start; the paper's baseline. Given \
         a per-stage `iters` list, it trains for the list's total.",
    ),
    b(
        "sequential",
        Kind::Strategy,
        &[req("order", TASK_LIST, "The order in which tasks join; a permutation of the trained tasks.")],
        "Sequential learning (S): stage k trains on the first k tasks of `order` (earlier tasks are replayed), \
         starting from stage k-1's weights, with a fresh optimizer and the learning rate restarted.",
    ),
];

pub const DATASETS: &[Builtin] = &[
    b(
        "images",
        Kind::Dataset,
        &[
            req("path", Ty::FilePath, "A folder of clean images (PNG or JPEG), relative to the .mio file."),
            p("patch", INT, "128", "Side of the square training crops.").min(Incl(8.0)).unit("px"),
            p("batch", INT, "16", "Crops per training step.").min(Incl(1.0)),
            p("augment", Ty::List(&Ty::Word(&["flip", "rot90"])), "[flip, rot90]",
              "Random augmentations of each crop: horizontal flip, 90-degree rotation."),
            p("limit", INT, "0", "Use at most this many images (0: all).").min(Incl(0.0)),
        ],
        "Clean images, degraded on the fly for training (random paired crops) and once per task for testing \
         (each test set is written as PNG files and reused).",
    ),
    b(
        "pairs",
        Kind::Dataset,
        &[
            req("lq", Ty::FilePath, "A folder of degraded images."),
            req("gt", Ty::FilePath, "A folder of the matching clean images (same file names)."),
        ],
        "Ready-made degraded/clean pairs (for example a real-world test set); used as given, never degraded.",
    ),
];

pub const CLASSIFIERS: &[Builtin] = &[b(
    "classifier",
    Kind::Classifier,
    &[
        p("iters", INT, "5k", "Training iterations of the task classifier.").min(Incl(1.0)),
        p("lr", FLOAT, "1e-4", "Learning rate (Adam).").min(Excl(0.0)),
        p("batch", INT, "16", "Crops per step.").min(Incl(1.0)),
        p("patch", INT, "64", "Side of the training crops (the reference: 256).").min(Incl(9.0)).unit("px"),
        p("augment", Ty::List(&Ty::Word(&["flip", "rot90", "scale", "colour", "exposure"])),
          "[flip, rot90, scale, colour, exposure]",
          "Augmentations: horizontal flip and 90-degree rotation of the crops; `scale` zooms each region out \
           (0.4 to 1 times its size), `colour` swaps its channels or makes it grey and `exposure` brightens or \
           darkens it (a tone curve v^g, g from 0.75 to 1.35) before it is degraded, so the few training \
           images' content and brightness stop giving the task away."),
    ],
    "The small task classifier that explicit prompts use at test time (two strided 3x3 convs, three 1x1 \
     convs, global average pool, linear to the task count; cross-entropy), trained as its own node on the \
     trained tasks: crops cut from regions of the training images degraded as a whole (as test images are), \
     Adam at `lr`, a tenth of it for the last quarter of the iterations.",
)];

const STR: Ty = Ty::Str;

pub const EXECUTORS: &[Builtin] = &[
    b(
        "local",
        Kind::Executor,
        &[],
        "Every step runs on this machine, under this `mio run` (`--jobs` at once, one training \
         step at a time).",
    ),
    b(
        "slurm",
        Kind::Executor,
        &[
            opt("partition", STR, "The partition (`sbatch --partition`); the cluster's default when left out."),
p("gpus", INT, "0", "GPUs of each training step (the stages and the task classifier).")
                .min(Incl(0.0)),
            p("eval_gpus", INT, "0", "GPUs of each step that restores images with a trained network \
               (evaluations, sweeps, stage curves); test sets and reports never get any.")
                .min(Incl(0.0)),
            p("cpus", INT, "2", "CPU cores of each step (`--cpus-per-task`).").min(Incl(1.0)),
            opt("mem", STR, "Memory of each step, as sbatch writes it (`\"64G\"`); the cluster's default when left out."),
            opt("time", STR, "Time limit of each step, as sbatch writes it (`\"2-00:00:00\"`); a training step \
                 stopped by it keeps its checkpoint and continues when run again."),
            opt("account", STR, "The account to charge (`--account`)."),
            opt("qos", STR, "The quality of service (`--qos`)."),
            p("extra", Ty::List(&STR), "[]", "More sbatch options, one per string: `[\"--constraint=a100\"]`."),
            p("max_jobs", INT, "0", "At most this many of the run's jobs queued or running at once (0: no limit); \
               the rest wait in Slurm behind them.")
                .min(Incl(0.0)),
        ],
        "Every step not finished yet is one `sbatch` job running `mio worker` on its job file, chained with \
         `--dependency=afterok` as the plan says; job scripts and logs go to `<output>/slurm/`. `mio run` \
         submits and returns (`--wait` follows the jobs to the end); the run folder, on a filesystem the \
         cluster shares, is the only state.",
    ),
];

const DEVICE: Ty = Ty::Device;

pub const BLOCKS: &[Builtin] = &[
    b(
        "workflow",
        Kind::Block,
        &[
            p("seed", INT, "0", "Seed of every random draw: data, initialisation, prompt maps.").min(Incl(0.0)),
            p("device", DEVICE, "auto", "`auto` (CUDA when built with it and present, else CPU), `cpu`, `cuda` or \"cuda:N\"."),
            p("threads", INT, "0", "CPU threads to use (0: all cores).").min(Incl(0.0)),
            p("output", Ty::FilePath, "\"runs\"", "Folder that holds the run folders, relative to the .mio file."),
            p("executor", Ty::Builtin(Kind::Executor), "local",
              "Where the steps run: `local` (this machine) or `slurm(partition = \"gpu\", gpus = 1, ...)` \
               (a Slurm cluster). `mio run --executor NAME` overrides it."),
        ],
        "Settings of a workflow.",
    ),
    b(
        "train",
        Kind::Block,
        &[
            p("strategy", Ty::Builtin(Kind::Strategy), "mixed", "`mixed` or `sequential(order = [...])`."),
            opt("tasks", TASK_LIST, "The tasks trained; defaults to the sequential order. Required for `mixed`."),
            req("iters", Ty::PerStage(&Ty::Int),
                "Iterations: one number for every stage, or a list with one per stage. A mixed run has one \
                 stage; given a list, it trains for the list's total, so M and S runs that share `iters` \
                 get the same budget, as in the paper.")
                .min(Incl(1.0)),
            p("optimizer", Ty::Builtin(Kind::Optimizer), "adam", "The optimizer, fresh at every stage."),
            p("schedule", Ty::Builtin(Kind::Schedule), "cosine_restart", "The learning-rate schedule."),
            p("loss", Ty::Builtin(Kind::Loss), "l1", "The restoration loss."),
            p("ema", FLOAT, "0.999", "Decay of the exponential moving average of the weights (0: off).")
                .min(Incl(0.0))
                .max(Excl(1.0)),
            p("grad_clip", FLOAT, "0", "Clip the global gradient norm to this value (0: off).").min(Incl(0.0)),
            p("checkpoint_every", INT, "1k", "Write a resumable checkpoint every this many iterations.")
                .min(Incl(1.0)),
            p("classifier", Ty::Builtin(Kind::Classifier), "classifier",
              "The task classifier trained for explicit prompts (ignored for other prompts)."),
            p("precision", Ty::Word(&["auto", "fp32", "tf32", "bf16"]), "auto",
              "Arithmetic of the training: `fp32`; `tf32` (the GPU's tensor cores round the products' inputs \
               to a 10-bit mantissa, fp32 range and sums; PyTorch's default for convolutions); or `bf16`, \
               mixed precision (the network computes on bf16 tensors, its weights, gradients and Adam's \
               moments stay fp32; as PyTorch's AMP). `auto`: `tf32` on a GPU, `fp32` on the CPU. On the \
               CPU `tf32` computes in fp32 and `bf16` gives a GPU's roundings more slowly than fp32."),
        ],
        "How a model is trained: `train MODEL on DATA { ... }`. One node per stage in the plan.",
    ),
    b(
        "eval",
        Kind::Block,
        &[
            req("tasks", TASK_LIST, "The test sets: each task's degraded copy of the data."),
            p("metrics", Ty::List(&Ty::Builtin(Kind::Metric)), "[psnr(crop = 4), ssim(crop = 4)]",
              "What is measured against the clean images."),
            p("labels", Ty::Word(&["predicted", "known"]), "predicted",
              "Explicit prompts only: the task label from the classifier (`predicted`) or the known one (`known`)."),
            p("images", INT, "0", "Evaluate at most this many images (0: all).").min(Incl(0.0)),
            p("save_images", Ty::Bool, "true", "Write the restored images into the run folder."),
            opt("table", Ty::Str, "The report's table for it: evaluations given the same name share one table, their \
                 tasks side by side (a folder of real pairs beside synthetic composites); by default evaluations over \
                 the same tasks share one. Changing it reruns nothing."),
        ],
        "Evaluation of a trained model: `eval MODEL on DATA [as NAME] { ... }`; a row of the paper's table.",
    ),
    b(
        "sweep",
        Kind::Block,
        &[
            opt("from", Ty::Task, "The task whose prompt is used at a = 1 (prompt interpolation)."),
            opt("to", Ty::Task, "The task whose prompt is used at a = 0 (prompt interpolation)."),
            p("steps", INT, "7", "Number of blend weights from 1 to 0.").min(Incl(2.0)),
            opt("degrade", Ty::Task, "Degrade the images with this task first (default: use them as given)."),
            opt("param", Ty::Str, "Instead of blending prompts: a parameter of `degrade`'s degradation to vary \
                 (`\"sigma\"` of `noise`), restoring the images degraded at each of `values`."),
            opt("values", Ty::List(&FLOAT), "The values `param` takes."),
        ],
        "Prompt interpolation: z = a z_from + (1 - a) z_to for a from 1 to 0, restoring the same images at \
         each step: `sweep MODEL on DATA_OR_IMAGE [as NAME] { from = T1, to = T2 }`. Or a degradation \
         sweep: `{ degrade = paper.noise, param = \"sigma\", values = [10, 30, 50, 70] }` gives the \
         input's and the output's PSNR at each value, as a curve.",
    ),
    b(
        "report",
        Kind::Block,
        &[
            opt("title", Ty::Str, "The report's title (default: the workflow's name)."),
            opt("baseline", Ty::Model, "The model whose row the others are compared with."),
            p("formats", Ty::List(&Ty::Word(&["md", "html", "csv", "json"])), "[md, html, csv, json]",
              "The files written."),
        ],
        "The run's report: tables, curves and image grids gathered from every eval and sweep.",
    ),
];

/// Every built-in, all kinds.
pub fn all() -> impl Iterator<Item = &'static Builtin> {
    [
        BACKBONES,
        PROMPTS,
        DEGRADATIONS,
        METRICS,
        LOSSES,
        OPTIMIZERS,
        SCHEDULES,
        STRATEGIES,
        DATASETS,
        CLASSIFIERS,
        EXECUTORS,
    ]
    .into_iter()
    .flatten()
}

/// The built-ins of one kind.
pub fn of_kind(kind: Kind) -> impl Iterator<Item = &'static Builtin> {
    all().filter(move |b| b.kind == kind)
}

/// A built-in by kind and name.
pub fn lookup(kind: Kind, name: &str) -> Option<&'static Builtin> {
    of_kind(kind).find(|b| b.name == name)
}

/// The settings of a block (`workflow`, `train`, `eval`, `sweep`, `report`).
pub fn block(name: &str) -> &'static Builtin {
    BLOCKS.iter().find(|b| b.name == name).expect("known block")
}
