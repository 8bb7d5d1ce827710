//! The pieces of training that candle does not provide (or provides without gradients): Adam
//! and AdamW as PyTorch defines them, with their moments exposed for checkpoints; the learning
//! rate schedules of the catalog; the EMA of the weights; global gradient-norm clipping; and the
//! losses. Each follows PyTorch's formulas, pinned in the tests against PyTorch's numbers.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// Adam (L2 weight decay added to the gradient) or AdamW (decoupled weight decay).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub decoupled: bool,
}

/// The optimiser with its state: the step count and the first and second moments, one pair
/// per variable (what a checkpoint must hold to resume exactly).
pub struct Adam {
    pub config: AdamConfig,
    pub vars: Vec<Var>,
    pub step: u64,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
}

impl Adam {
    pub fn new(vars: Vec<Var>, config: AdamConfig) -> Result<Adam> {
        let m = vars
            .iter()
            .map(|v| v.zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let v = vars
            .iter()
            .map(|v| v.zeros_like())
            .collect::<Result<Vec<_>>>()?;
        Ok(Adam {
            config,
            vars,
            step: 0,
            m,
            v,
        })
    }

    /// One update at learning rate `lr`. Variables without a gradient are left as they are.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let (b1, b2) = self.config.betas;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            let mut g = g.clone();
            let wd = self.config.weight_decay;
            if wd != 0.0 && !self.config.decoupled {
                g = (g + (var.as_tensor() * wd)?)?;
            }
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let m_hat = (&self.m[i] / c1)?;
            let denom = ((&self.v[i] / c2)?.sqrt()? + self.config.eps)?;
            let mut next = (var.as_tensor() - (m_hat / denom)? * lr)?;
            if wd != 0.0 && self.config.decoupled {
                next = (next - (var.as_tensor() * (lr * wd))?)?;
            }
            var.set(&next)?;
        }
        Ok(())
    }
}

/// A learning-rate schedule within one stage (every stage of a sequential run restarts it).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Schedule {
    Constant,
    /// Cosine annealing to `min_lr` over each period (one period over the stage when empty),
    /// restarting at each period's start.
    CosineRestart {
        min_lr: f64,
        periods: Vec<u64>,
    },
    /// Multiplied by `gamma` at each milestone.
    Step {
        milestones: Vec<u64>,
        gamma: f64,
    },
}

impl Schedule {
    /// The rate at iteration `t` (0-based) of a stage of `stage_iters` iterations.
    pub fn lr(&self, base: f64, t: u64, stage_iters: u64) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::CosineRestart { min_lr, periods } => {
                let (mut start, mut period) = (0, stage_iters.max(1));
                for &p in periods {
                    if t < start + p {
                        period = p.max(1);
                        break;
                    }
                    start += p;
                    period = p.max(1);
                }
                let local = (t - start.min(t)).min(period) as f64;
                min_lr
                    + (base - min_lr)
                        * 0.5
                        * (1.0 + (std::f64::consts::PI * local / period as f64).cos())
            }
            Schedule::Step { milestones, gamma } => {
                base * gamma.powi(milestones.iter().filter(|&&m| m <= t).count() as i32)
            }
        }
    }
}

/// The exponential moving average of the weights: `shadow = d * shadow + (1 - d) * weight`
/// after every step (BasicSR's `model_ema`).
pub struct Ema {
    pub decay: f64,
    pub shadow: Vec<Tensor>,
}

impl Ema {
    pub fn new(vars: &[Var], decay: f64) -> Result<Ema> {
        Ok(Ema {
            decay,
            shadow: vars
                .iter()
                .map(|v| v.as_tensor().copy())
                .collect::<Result<Vec<_>>>()?,
        })
    }

    pub fn update(&mut self, vars: &[Var]) -> Result<()> {
        for (s, v) in self.shadow.iter_mut().zip(vars) {
            *s = ((&*s * self.decay)? + (v.as_tensor() * (1.0 - self.decay))?)?;
        }
        Ok(())
    }
}

/// Scales every gradient so that their global L2 norm is at most `max_norm`; returns the norm
/// before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut total = 0.0;
    for v in vars {
        if let Some(g) = grads.get(v) {
            total += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = total.sqrt();
    if norm > max_norm && norm > 0.0 {
        let scale = max_norm / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.remove(v) {
                grads.insert(v, (g * scale)?);
            }
        }
    }
    Ok(norm)
}

/// The restoration losses of the catalog, as means over every element.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Loss {
    L1,
    L2,
    Charbonnier { eps: f64 },
}

impl Loss {
    pub fn compute(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        let d = (output - target)?;
        match self {
            Loss::L1 => d.abs()?.mean_all(),
            Loss::L2 => d.sqr()?.mean_all(),
            Loss::Charbonnier { eps } => (d.sqr()? + eps * eps)?.sqrt()?.mean_all(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn run(config: AdamConfig) -> Vec<f64> {
        let dev = Device::Cpu;
        let p = Var::from_tensor(&Tensor::new(&[0.5f64, -1.0, 2.0], &dev).unwrap()).unwrap();
        let mut opt = Adam::new(vec![p.clone()], config).unwrap();
        for t in 1..=3 {
            let sign = if t % 2 == 0 { 1.0 } else { -1.0 };
            let g = Tensor::new(&[t as f64 * 0.1, -0.2, 0.3 * sign], &dev).unwrap();
            // A loss whose gradient is exactly g: sum(p * g).
            let grads = (p.as_tensor() * &g)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            opt.step(&grads, 0.01).unwrap();
        }
        assert_eq!(opt.step, 3);
        p.as_tensor().to_vec1().unwrap()
    }

    fn close(a: &[f64], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-9, "{a:?} vs PyTorch {b:?}");
        }
    }

    #[test]
    fn adam_and_adamw_match_pytorch() {
        let base = AdamConfig {
            betas: (0.9, 0.99),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        };
        // torch.optim.Adam / AdamW, lr 0.01, three steps of the same gradients.
        close(&run(base), &[0.470805912873, -0.9700000015, 2.012831617362]);
        close(
            &run(AdamConfig {
                weight_decay: 0.1,
                ..base
            }),
            &[0.470426105738, -0.970002967697, 2.000706682985],
        );
        close(
            &run(AdamConfig {
                weight_decay: 0.1,
                decoupled: true,
                ..base
            }),
            &[0.469337041119, -0.967032990499, 2.006818151679],
        );
    }

    #[test]
    fn schedules_match_pytorch_and_restart() {
        let cos = Schedule::CosineRestart {
            min_lr: 1e-7,
            periods: vec![],
        };
        // torch CosineAnnealingLR(T_max = 100, eta_min = 1e-7) at 0, 25, 50, 99, 100.
        for (t, want) in [
            (0, 2e-4),
            (25, 0.00017072532277959547),
            (50, 0.00010005),
            (99, 1.4931929144512663e-07),
            (100, 1e-7),
        ] {
            assert!((cos.lr(2e-4, t, 100) - want).abs() < 1e-12, "t = {t}");
        }
        let periods = Schedule::CosineRestart {
            min_lr: 0.0,
            periods: vec![10, 20],
        };
        assert_eq!(periods.lr(1.0, 0, 30), 1.0);
        assert!((periods.lr(1.0, 5, 30) - 0.5).abs() < 1e-12);
        assert_eq!(
            periods.lr(1.0, 10, 30),
            1.0,
            "restarts at the second period"
        );
        assert!((periods.lr(1.0, 20, 30) - 0.5).abs() < 1e-12);
        let step = Schedule::Step {
            milestones: vec![10, 20],
            gamma: 0.5,
        };
        assert_eq!(
            (
                step.lr(1.0, 9, 30),
                step.lr(1.0, 10, 30),
                step.lr(1.0, 25, 30)
            ),
            (1.0, 0.5, 0.25)
        );
        assert_eq!(Schedule::Constant.lr(3.0, 7, 10), 3.0);
    }

    #[test]
    fn ema_clipping_and_losses() {
        let dev = Device::Cpu;
        let v = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0], &dev).unwrap()).unwrap();
        let mut ema = Ema::new(std::slice::from_ref(&v), 0.9).unwrap();
        v.set(&Tensor::new(&[3.0f32, 4.0], &dev).unwrap()).unwrap();
        ema.update(std::slice::from_ref(&v)).unwrap();
        let s: Vec<f32> = ema.shadow[0].to_vec1().unwrap();
        assert!(
            (s[0] - 1.2).abs() < 1e-6 && (s[1] - 2.2).abs() < 1e-6,
            "{s:?}"
        );
        // Gradient (3, 4): norm 5, clipped to 1.
        let mut grads = (v.as_tensor() * &Tensor::new(&[3.0f32, 4.0], &dev).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let before = clip_grad_norm(&mut grads, std::slice::from_ref(&v), 1.0).unwrap();
        assert!((before - 5.0).abs() < 1e-5);
        let g: Vec<f32> = grads.get(&v).unwrap().to_vec1().unwrap();
        assert!(
            (g[0] - 0.6).abs() < 1e-4 && (g[1] - 0.8).abs() < 1e-4,
            "{g:?}"
        );
        let a = Tensor::new(&[0.0f32, 1.0, 3.0], &dev).unwrap();
        let b = Tensor::zeros(3, DType::F32, &dev).unwrap();
        let val = |l: Loss| l.compute(&a, &b).unwrap().to_scalar::<f32>().unwrap();
        assert!((val(Loss::L1) - 4.0 / 3.0).abs() < 1e-6);
        assert!((val(Loss::L2) - 10.0 / 3.0).abs() < 1e-6);
        assert!((val(Loss::Charbonnier { eps: 1e-3 }) - 4.0 / 3.0).abs() < 1e-3);
    }
}
