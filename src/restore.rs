//! `mio restore`: restore an image, or every image of a folder, with a trained model; the
//! inputs mapped to outputs that never overwrite an input.

use std::path::{Path, PathBuf};

use crate::Failure;

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// A training step's folder (runs/nodes/train-...), or a weights file named as in the
    /// reference implementation (then give --arch): safetensors, or a PyTorch .pth checkpoint
    /// as BasicSR saves it
    #[arg(long)]
    model: PathBuf,
    /// The key of a .pth checkpoint's weights: params (BasicSR's default), params_ema (its
    /// EMA), or another key the file uses
    #[arg(long)]
    param_key: Option<String>,
    /// The task maps of an explicit-prompt checkpoint: the reference's type7.npy (float64
    /// [7, 128, 128] in its task order), or a mio weights file holding `prompt_maps`
    #[arg(long)]
    maps: Option<PathBuf>,
    /// The architecture of a bare weights file, as in a .mio file:
    /// 'srresnet(channels = 64, blocks = 16, prompt = explicit)'
    #[arg(long)]
    arch: Option<String>,
    /// The task to restore (explicit prompts); without it the classifier guesses
    #[arg(long)]
    task: Option<String>,
    /// The task classifier that guesses the task: a classifier step (runs/nodes/classifier-...)
    /// or the reference's Classifier.pth
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Blend tasks' prompts for style control: noise:0.3,rain:0.7
    #[arg(long, conflicts_with = "task")]
    prompt_mix: Option<String>,
    /// Tile side in pixels (0: the whole image, tiles of 512 above a megapixel)
    #[arg(long, default_value_t = 0)]
    tile: usize,
    /// Where to run: auto (a GPU when mio is built with CUDA and one is present), cpu, cuda,
    /// cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    /// An image or a folder of images
    input: PathBuf,
    /// The restored image (PNG), or a folder for a folder
    output: PathBuf,
}

pub fn restore(a: RestoreArgs) -> Result<(), Failure> {
    use mio_stdlib::models::PromptMode;
    let user = |m: String| {
        eprintln!("error: {m}");
        Failure::User
    };
    let dev = mio_engine::run::device_named(&a.device).map_err(user)?;
    let opts = mio_engine::run::restore::LoadOptions {
        param_key: a.param_key.clone(),
        maps: a.maps.clone(),
    };
    let loaded = mio_engine::run::restore::load_model(&a.model, a.arch.as_deref(), &opts, &dev)
        .map_err(user)?;
    let explicit = matches!(loaded.net.spec.prompt, PromptMode::Explicit { .. });
    let fixed = match (&a.task, &a.prompt_mix) {
        (Some(t), _) if explicit => Some(
            loaded
                .net
                .task_latent(loaded.task(t).map_err(user)?)
                .map_err(|e| Failure::Internal(e.to_string()))?,
        ),
        (_, Some(m)) if explicit => {
            let mix = mio_engine::run::restore::parse_mix(m).map_err(user)?;
            Some(loaded.mix(&mix).map_err(user)?)
        }
        (Some(_), _) | (_, Some(_)) => {
            return Err(user(
                "--task and --prompt-mix need a model with explicit prompts; this one finds the task itself".into(),
            ))
        }
        _ => None,
    };
    let classifier = match (&a.classifier, explicit && fixed.is_none()) {
        (Some(c), true) => {
            Some(mio_engine::run::restore::load_classifier(c, &loaded.tasks, &dev).map_err(user)?)
        }
        (None, true) => {
            let names: Vec<&str> = loaded.tasks.iter().map(|t| t.0.as_str()).collect();
            return Err(user(format!(
                "this model needs its task: give --task (one of {}) or --classifier runs/nodes/classifier-...",
                names.join(", ")
            )));
        }
        _ => None,
    };
    let files = restore_targets(&a.input, &a.output).map_err(user)?;
    let n = files.len();
    let mut failed = 0;
    for (k, (src, dst)) in files.iter().enumerate() {
        let skip = |why: &dyn std::fmt::Display| {
            eprintln!("[{}/{n}] skipped {}: {why}", k + 1, src.display());
        };
        let img = match mio_stdlib::image::load(src) {
            Ok(l) => l.image,
            Err(e) => {
                skip(&e);
                failed += 1;
                continue;
            }
        };
        let z = match &classifier {
            Some(c) => {
                let guess = mio_engine::run::restore::to_tensor(&img, &dev)
                    .and_then(|x| mio_engine::run::restore::at_least_min_side(&x))
                    .and_then(|x| c.predict(&x))
                    .map(|p| p[0] as usize);
                let id = match guess {
                    Ok(id) => id,
                    Err(e) => {
                        skip(&format!("the classifier cannot read it ({e})"));
                        failed += 1;
                        continue;
                    }
                };
                eprintln!(
                    "[{}/{n}] {}: the classifier says `{}`",
                    k + 1,
                    src.display(),
                    loaded.tasks[id].0
                );
                Some(
                    loaded
                        .net
                        .task_latent(id)
                        .map_err(|e| Failure::Internal(e.to_string()))?,
                )
            }
            None => fixed.clone(),
        };
        let t = std::time::Instant::now();
        let out = match mio_engine::run::restore::restore(&loaded.net, &img, z.as_ref(), a.tile) {
            Ok(out) => out,
            Err(e) => {
                skip(&format!("{}x{}: {e}", img.width, img.height));
                failed += 1;
                continue;
            }
        };
        if let Err(e) = out.save_png(dst) {
            skip(&e);
            failed += 1;
            continue;
        }
        eprintln!(
            "[{}/{n}] {} -> {} ({}x{}, {:.1} s)",
            k + 1,
            src.display(),
            dst.display(),
            img.width,
            img.height,
            t.elapsed().as_secs_f64()
        );
    }
    if failed > 0 {
        eprintln!("{failed} of {n} image(s) skipped; the others are restored");
        return Err(Failure::User);
    }
    Ok(())
}

/// Where `mio restore` writes each input: one image to the output file (or into the output
/// folder, under its own stem, when that is a folder); a folder's images into the output
/// folder, each under a name of its own (`a.png` and `a.jpg` both there: `a.png.png` and
/// `a.jpg.png`, said on stderr). Never over an input: an output folder that is the input
/// folder (by any path), or an output file that is the input, is refused; in any other
/// folder an output only replaces a directory entry, never an input's bytes (writes rename).
fn restore_targets(input: &Path, output: &Path) -> Result<Vec<(PathBuf, PathBuf)>, String> {
    if !input.is_dir() {
        if !input.exists() {
            return Err(format!("{}: no such file or folder", input.display()));
        }
        let dst = if output.is_dir() {
            let stem = input.file_stem().unwrap_or_default().to_string_lossy();
            output.join(format!("{stem}.png"))
        } else {
            output.to_path_buf()
        };
        if mio_stdlib::fsio::same_file(input, &dst) {
            return Err(format!(
                "{} is the input: restoring into it would replace the original; give another output",
                dst.display()
            ));
        }
        return Ok(vec![(input.to_path_buf(), dst)]);
    }
    if output.is_file() {
        return Err(format!(
            "{} is a file: a folder of images is restored into a folder",
            output.display()
        ));
    }
    if mio_stdlib::fsio::same_file(input, output) {
        return Err(format!(
            "{} is the input folder: restoring into it would replace or mix with the originals; give another folder",
            output.display()
        ));
    }
    let list = mio_stdlib::image::list_folder(input).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(output).map_err(|e| format!("{}: {e}", output.display()))?;
    let names = mio_stdlib::image::unique_stems(&list);
    let mut out = vec![];
    for (p, name) in list.into_iter().zip(names) {
        let dst = output.join(format!("{name}.png"));
        let plain = p
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name != plain {
            eprintln!(
                "note: {} is written as {} (another input has the name {plain})",
                p.display(),
                dst.display()
            );
        }
        out.push((p, dst));
    }
    Ok(out)
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// What `mio restore --model` takes: a training step's folder, or a weights file (then
    /// give --arch)
    #[arg(long)]
    model: PathBuf,
    /// The architecture of a bare weights file, as in a .mio file
    #[arg(long)]
    arch: Option<String>,
    /// The key of a .pth checkpoint's weights (params, params_ema)
    #[arg(long)]
    param_key: Option<String>,
    /// The task maps of an explicit-prompt checkpoint that does not hold them
    #[arg(long)]
    maps: Option<PathBuf>,
    /// A task classifier to export beside it (a classifier step's folder or file)
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// The folder to write (new, empty, or an earlier export)
    output: PathBuf,
}

pub fn export(a: ExportArgs) -> Result<(), Failure> {
    let opts = mio_engine::run::restore::LoadOptions {
        param_key: a.param_key,
        maps: a.maps,
    };
    let written = mio_engine::run::export::export(
        &a.model,
        a.arch.as_deref(),
        &opts,
        a.classifier.as_deref(),
        &a.output,
    )
    .map_err(|m| {
        eprintln!("error: {m}");
        Failure::User
    })?;
    for f in written {
        println!("wrote {}", f.display());
    }
    Ok(())
}
