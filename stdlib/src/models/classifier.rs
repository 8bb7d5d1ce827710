//! The task classifier explicit prompts use at test time (MIOIR.md), as the reference builds
//! it: `CondNet` (conv 3->128 3x3 stride 3, LeakyReLU 0.1, conv 128->128 3x3 stride 3,
//! LeakyReLU, three 1x1 convs 128->128->128->32 with LeakyReLU between), global average pool,
//! `lastOut` linear 32->tasks; trained with cross-entropy on the degraded crops' task labels.
//! The parameter names are the reference's (`CondNet.0`, `.2`, `.4`, `.6`, `.8`, `lastOut`), so
//! its released `Classifier.pth` loads by name.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};
use std::collections::HashMap;

use crate::kernels::conv::{conv2d, Activation, Conv2d, Conv2dConfig};

pub struct TaskClassifier {
    convs: Vec<Conv2d>,
    head: Linear,
}

impl TaskClassifier {
    pub fn new(tasks: usize, vb: VarBuilder) -> Result<Self> {
        let s3 = Conv2dConfig {
            stride: 3,
            ..Default::default()
        };
        let one = Conv2dConfig::default();
        Ok(TaskClassifier {
            convs: vec![
                conv2d(3, 128, 3, s3, vb.pp("CondNet.0"))?,
                conv2d(128, 128, 3, s3, vb.pp("CondNet.2"))?,
                conv2d(128, 128, 1, one, vb.pp("CondNet.4"))?,
                conv2d(128, 128, 1, one, vb.pp("CondNet.6"))?,
                conv2d(128, 32, 1, one, vb.pp("CondNet.8"))?,
            ],
            head: linear(32, tasks, vb.pp("lastOut"))?,
        })
    }

    /// The features of each 9x9 patch, `[B, 32, H / 9, W / 9]`.
    fn features(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.convs.len() - 1;
        for (k, c) in self.convs.iter().enumerate() {
            h = if k < last {
                c.forward_act(&h, Activation::LeakyRelu(0.1))?
            } else {
                c.forward(&h)?
            };
        }
        Ok(h)
    }

    /// Logits `[B, tasks]` for degraded images `[B, 3, H, W]` (H, W at least 9).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.features(x)?;
        self.head.forward(&h.mean(D::Minus1)?.mean(D::Minus1)?)
    }

    /// The logits each 9x9 patch alone would give, `[B, h, w, tasks]`: their mean over the
    /// patches is [`TaskClassifier::forward`]'s (the head is linear).
    pub fn patch_logits(&self, x: &Tensor) -> Result<Tensor> {
        self.head
            .forward(&self.features(x)?.permute((0, 2, 3, 1))?.contiguous()?)
    }

    /// Mean cross-entropy of the logits against task ids `[B]` (u32). Written from
    /// differentiable ops (candle's fused softmax has no gradient).
    pub fn loss(logits: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let max = logits.max_keepdim(D::Minus1)?;
        let shifted = logits.broadcast_sub(&max)?;
        let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
        let log_p = shifted.broadcast_sub(&log_sum)?;
        let picked = log_p.gather(&ids.unsqueeze(1)?, 1)?;
        picked.neg()?.mean_all()
    }

    /// The most likely task of each image.
    pub fn predict(&self, x: &Tensor) -> Result<Vec<u32>> {
        self.forward(x)?.argmax(D::Minus1)?.to_vec1()
    }
}

/// The optimiser a classifier step trains with: Adam with PyTorch's defaults.
pub fn optimizer(vars: Vec<candle_core::Var>) -> Result<crate::train::Adam> {
    crate::train::Adam::new(
        vars,
        crate::train::AdamConfig {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        },
    )
}

/// The learning rate of `step` of `iters`: `lr`, and a tenth of it for the last quarter.
pub fn rate(lr: f64, step: u64, iters: u64) -> f64 {
    if step >= iters - iters / 4 {
        lr * 0.1
    } else {
        lr
    }
}

/// A classifier of `tasks` outputs with the weights of `tensors` (see [`reorder`]), checked
/// against its variables first: a mismatch lists every difference.
pub fn from_tensors(
    tasks: usize,
    tensors: &HashMap<String, Tensor>,
    from: &str,
    dev: &candle_core::Device,
) -> Result<(candle_nn::VarMap, TaskClassifier)> {
    let vm = candle_nn::VarMap::new();
    let net = TaskClassifier::new(
        tasks,
        candle_nn::VarBuilder::from_varmap(&vm, DType::F32, dev),
    )?;
    let vars = crate::trainer::sorted_vars(&vm);
    let wanted = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.dims().to_vec()))
        .collect();
    if let Some(m) =
        super::checkpoint::mismatch(from, &wanted, tensors, "the task classifier (CondNet)")
    {
        fail!("{m}");
    }
    for (name, var) in &vars {
        var.set(&tensors[name].to_dtype(DType::F32)?)?;
    }
    Ok((vm, net))
}

/// A classifier's weights with its outputs put in another task order: `file_tasks` name the
/// file's outputs in order (the reference's: blur, noise, jpeg, rain, haze, lowlight, sr),
/// `tasks` the wanted ones as (name, degradation); each wanted task takes the output of its
/// name, else of its degradation's name, so the argmax is over the wanted tasks alone. A wanted task the file has no output for is an
/// error naming what it has.
pub fn reorder(
    mut tensors: HashMap<String, Tensor>,
    file_tasks: &[String],
    tasks: &[(String, String)],
    from: &str,
) -> Result<HashMap<String, Tensor>> {
    let mut rows = vec![];
    for (t, kind) in tasks {
        let at = file_tasks.iter().position(|f| f == t);
        match at.or_else(|| file_tasks.iter().position(|f| f == kind)) {
            Some(i) => rows.push(i as u32),
            None => fail!(
                "{from}: the classifier has no output for `{t}`; it knows {}",
                file_tasks.join(", ")
            ),
        }
    }
    for name in ["lastOut.weight", "lastOut.bias"] {
        let Some(t) = tensors.get(name) else { continue };
        if t.dims().first() != Some(&file_tasks.len()) {
            fail!(
                "{from}: `{name}` has {:?} outputs, not one per task of {}",
                t.dims().first(),
                file_tasks.join(", ")
            );
        }
        let idx = Tensor::new(rows.as_slice(), t.device())?;
        let picked = t.index_select(&idx, 0)?;
        tensors.insert(name.to_string(), picked);
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patches_logits_average_to_the_images() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let vm = candle_nn::VarMap::new();
        let net = TaskClassifier::new(7, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
        crate::models::init_default(&vm, 5)?;
        let x = Tensor::rand(0f32, 1f32, (2, 3, 36, 45), &dev)?;
        let patches = net.patch_logits(&x)?;
        // 36x45 pixels: 4x5 patches of 9x9.
        assert_eq!(patches.dims(), [2, 4, 5, 7]);
        let mean = patches.mean(1)?.mean(1)?;
        let diff: f32 = (mean - net.forward(&x)?)?.abs()?.max_all()?.to_scalar()?;
        assert!(diff < 1e-4, "{diff}");
        // The patches differ from each other (each sees its own pixels).
        let spread =
            patches.max_all()?.to_scalar::<f32>()? - patches.min_all()?.to_scalar::<f32>()?;
        assert!(spread > 1e-3, "{spread}");
        Ok(())
    }
}
