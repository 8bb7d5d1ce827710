//! Weights files as the field writes them: safetensors (mio's own and converted ones), PyTorch
//! `.pth` files as BasicSR saves them (`{"params": state_dict}`, and `params_ema` with EMA; a
//! bare state dict too), and the explicit prompts' task maps as the reference ships them (a
//! NumPy `.npy` of float64 `[T, S, S]`). Checking weights against a network lists every
//! difference at once, with a guess at what the file holds.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};

/// Buffers the reference saves beside its weights that mio computes itself (SwinIR's and
/// Uformer's attention tables); present in a file, they are not "extra".
const DERIVED_BUFFERS: [&str; 2] = ["relative_position_index", "attn_mask"];

/// Whether the file starts with these bytes.
fn starts_with(path: &Path, magic: &[u8]) -> bool {
    use std::io::Read;
    let mut head = vec![0u8; magic.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == magic
}

/// A PyTorch checkpoint is a zip archive.
fn is_zip(path: &Path) -> bool {
    starts_with(path, b"PK\x03\x04")
}

fn is_npy(path: &Path) -> bool {
    starts_with(path, b"\x93NUMPY")
}

/// Reads the tensors of a PyTorch checkpoint under `key` (`params` when none is given; a file
/// that is a bare state dict is read whole when no key was asked for).
fn read_pth(path: &Path, key: Option<&str>, dev: &Device) -> Result<HashMap<String, Tensor>> {
    use candle_core::pickle::PthTensors;
    let p = path.display();
    let wanted = key.unwrap_or("params");
    let pth = match PthTensors::new(path, Some(wanted)) {
        Ok(t) if !t.tensor_infos().is_empty() => t,
        Ok(_) | Err(_) if key.is_none() => match PthTensors::new(path, None) {
            Ok(t) if !t.tensor_infos().is_empty() => t,
            _ => fail!(
                "{p}: a PyTorch file without weights under `params` (BasicSR's key) nor a state \
                 dict of tensors; give the key it uses (`param_key` in a .mio file, --param-key \
                 for mio restore)"
            ),
        },
        Ok(_) | Err(_) => {
            let other = if wanted == "params" {
                "params_ema"
            } else {
                "params"
            };
            let has_other = PthTensors::new(path, Some(other))
                .map(|t| !t.tensor_infos().is_empty())
                .unwrap_or(false);
            fail!(
                "{p}: no weights under `{wanted}`{}",
                if has_other {
                    format!(" (it has `{other}`: ask for that key)")
                } else {
                    String::new()
                }
            )
        }
    };
    let mut out = HashMap::new();
    for name in pth.tensor_infos().keys() {
        let t = pth
            .get(name)
            .map_err(|e| candle_core::Error::Msg(format!("{p}: `{name}`: {e}")))?;
        if let Some(t) = t {
            out.insert(name.clone(), t.to_device(dev)?);
        }
    }
    Ok(out)
}

/// Reads a weights file: safetensors, or a PyTorch `.pth` (zip) under `key` (`params` when
/// `None`; BasicSR's EMA is `params_ema`). Errors name the file and say what to do.
pub fn read(path: &Path, key: Option<&str>, dev: &Device) -> Result<HashMap<String, Tensor>> {
    let p = path.display();
    if path.is_dir() {
        fail!("{p}: a folder; give the weights file in it (a training step's `weights.safetensors`, a `.pth`)");
    }
    if let Err(e) = std::fs::File::open(path) {
        fail!(
            "{p}: cannot read it: {e}{}",
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                " (check the file's permissions)"
            } else {
                ""
            }
        );
    }
    if is_zip(path) {
        return read_pth(path, key, dev).map_err(|e| match e {
            candle_core::Error::Msg(m) => candle_core::Error::Msg(m),
            e => candle_core::Error::Msg(format!(
                "{p}: not a complete PyTorch checkpoint ({e}); it is damaged (an interrupted \
                 copy?) or of a layout mio cannot read: copy it again, or convert it to \
                 safetensors"
            )),
        });
    }
    if is_npy(path) {
        fail!("{p}: a NumPy array, not weights (task maps go to `maps`)");
    }
    if let Some(k) = key.filter(|k| *k != "params") {
        fail!("{p}: a safetensors file has no keys such as `{k}`; leave the key out");
    }
    candle_core::safetensors::load(path, dev).map_err(|e| {
        candle_core::Error::Msg(format!(
            "{p}: not a complete safetensors or PyTorch file ({e}); it is damaged (an \
             interrupted copy or a full disk?) or not a weights file: copy it again, or give \
             another file"
        ))
    })
}

/// Task maps `[T, 1, S, S]` (f32): a NumPy `.npy` of `[T, S, S]` or `[T, 1, S, S]` (the
/// reference's `type7.npy`, float64), or the `prompt_maps` tensor of a weights file.
pub fn read_maps(path: &Path, dev: &Device) -> Result<Tensor> {
    let p = path.display();
    let t = if is_npy(path) {
        Tensor::read_npy(path)
            .map_err(|e| candle_core::Error::Msg(format!("{p}: not a readable .npy file ({e})")))?
            .to_device(dev)?
    } else {
        let all = read(path, None, dev)?;
        match all.get("prompt_maps") {
            Some(m) => m.clone(),
            None => fail!("{p}: holds no `prompt_maps` (task maps)"),
        }
    };
    let t = t.to_dtype(DType::F32)?;
    match *t.dims() {
        [n, s1, s2] if s1 == s2 => t.reshape((n, 1, s1, s2)),
        [_, 1, s1, s2] if s1 == s2 => Ok(t),
        _ => fail!(
            "{p}: task maps are [tasks, S, S] (the reference's type7.npy is [7, 128, 128]); this \
             is {:?}",
            t.dims()
        ),
    }
}

/// What a file's tensor names say it holds, for a mismatch message: `srresnet(channels = 64,
/// blocks = 16, prompt = explicit)` and the like, or the kind of network alone.
pub fn guess(tensors: &HashMap<String, Tensor>) -> Option<String> {
    let has = |p: &str| tensors.keys().any(|k| k.starts_with(p));
    let prompt = match tensors
        .get("F_ext_net.conv1.weight")
        .map(|t| t.dims().to_vec())
    {
        Some(d) if d.get(1) == Some(&1) => format!(", prompt = explicit(dim = {})", d[0]),
        Some(d) if d.get(1) == Some(&3) => format!(", prompt = adaptive(dim = {})", d[0]),
        _ if has("F_ext_net") => ", prompt = ...".into(),
        _ => String::new(),
    };
    if let Some(first) = tensors.get("conv_first.weight") {
        if has("conv_hr") {
            let blocks = tensors
                .keys()
                .filter(|k| k.ends_with(".conv1.weight") && !k.starts_with("F_ext"))
                .count();
            return Some(format!(
                "srresnet(channels = {}, blocks = {blocks}{prompt})",
                first.dims()[0]
            ));
        }
        if has("layers.") {
            return Some(format!("swinir(embed = {}{prompt}, ...)", first.dims()[0]));
        }
    }
    if has("encoder_level1") {
        let dim = tensors
            .get("patch_embed.proj.weight")
            .map(|t| format!("dim = {}", t.dims()[0]))
            .unwrap_or_default();
        return Some(format!("restormer({dim}{prompt}, ...)"));
    }
    if has("CondNet.") && has("lastOut") {
        return Some("a task classifier (CondNet)".into());
    }
    None
}

fn listed(names: &[String], limit: usize) -> String {
    let shown: Vec<&str> = names.iter().take(limit).map(String::as_str).collect();
    let more = names.len().saturating_sub(limit);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Every difference between a file's tensors and a network's variables (name -> shape), as
/// one message; `None` when they fit.
pub fn mismatch(
    from: &str,
    wanted: &BTreeMap<String, Vec<usize>>,
    tensors: &HashMap<String, Tensor>,
    network: &str,
) -> Option<String> {
    let mut missing = vec![];
    let mut shapes = vec![];
    for (name, dims) in wanted {
        match tensors.get(name) {
            None => missing.push(name.clone()),
            Some(t) if t.dims() != dims.as_slice() => shapes.push(format!(
                "`{name}` is {:?} in the file, {:?} in the network",
                t.dims(),
                dims
            )),
            Some(_) => {}
        }
    }
    let mut extra: Vec<String> = tensors
        .keys()
        .filter(|k| !wanted.contains_key(*k) && *k != "prompt_maps" && *k != "task_names")
        .filter(|k| !DERIVED_BUFFERS.iter().any(|b| k.ends_with(b)))
        .cloned()
        .collect();
    extra.sort();
    if missing.is_empty() && shapes.is_empty() && extra.is_empty() {
        return None;
    }
    let mut lines = vec![format!("{from} does not fit {network}:")];
    if !missing.is_empty() {
        lines.push(format!(
            "  {} tensor(s) the network has are not in the file: {}",
            missing.len(),
            listed(&missing, 6)
        ));
    }
    if !extra.is_empty() {
        lines.push(format!(
            "  {} tensor(s) in the file are not in the network: {}",
            extra.len(),
            listed(&extra, 6)
        ));
    }
    if !shapes.is_empty() {
        lines.push(format!("  {} tensor(s) differ in shape:", shapes.len()));
        for s in shapes.iter().take(4) {
            lines.push(format!("    {s}"));
        }
        if shapes.len() > 4 {
            lines.push(format!("    and {} more", shapes.len() - 4));
        }
    }
    match guess(tensors) {
        Some(g) => lines.push(format!("  the file looks like {g}: give that architecture")),
        None => lines.push("  is it a checkpoint of this architecture?".into()),
    }
    Some(lines.join("\n"))
}
