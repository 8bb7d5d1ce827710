//! The task classifier explicit prompts use at test time (MIOIR.md): conv 3->128 (3x3,
//! stride 3), LeakyReLU, conv 128->128 (3x3, stride 3), LeakyReLU, three 1x1 convs
//! 128->128->128->32 with LeakyReLU, global average pool, linear 32->tasks; trained with
//! cross-entropy on the degraded crops' task labels.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};

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
                conv2d(3, 128, 3, s3, vb.pp("conv1"))?,
                conv2d(128, 128, 3, s3, vb.pp("conv2"))?,
                conv2d(128, 128, 1, one, vb.pp("conv3"))?,
                conv2d(128, 128, 1, one, vb.pp("conv4"))?,
                conv2d(128, 32, 1, one, vb.pp("conv5"))?,
            ],
            head: linear(32, tasks, vb.pp("fc"))?,
        })
    }

    /// Logits `[B, tasks]` for degraded images `[B, 3, H, W]` (H, W at least 9).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for c in &self.convs {
            h = c.forward_act(&h, Activation::LeakyRelu(0.1))?;
        }
        self.head.forward(&h.mean(D::Minus1)?.mean(D::Minus1)?)
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
