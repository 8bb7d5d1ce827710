//! Convolutions on cuDNN (the `cuda` feature): on a GPU, mio's convolution ops ([`super::conv`],
//! [`super::depthwise`]) run their forward, input gradient, weight gradient and bias gradient
//! here, as their `cpu_fwd` runs mio's kernels on the CPU. Candle's own CUDA convolution uses
//! cuDNN for the forward only and a direct kernel for both gradients.
//!
//! Per thread and device there is one cuDNN handle (cuDNN's handles are not to be shared between
//! threads), the descriptors of every convolution shape met with the algorithm cuDNN's
//! heuristics pick for each direction (chosen once per shape, as PyTorch does by default), and
//! one workspace that grows to the largest need and is then reused.
//!
//! f32 tensors (fp32 or TF32 math by the precision setting) and bf16 ones (`precision = bf16`:
//! bf16 inputs and outputs on the tensor cores, f32 accumulation: cuDNN's pseudo-bf16
//! configuration) are both taken; a convolution's tensors share one dtype.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::backend::BackendStorage;
use candle_core::cuda::cudarc::cudnn::sys;
use candle_core::cuda::cudarc::driver::{
    CudaSlice, CudaStream, DevicePtr, DevicePtrMut, SyncOnDrop,
};
use candle_core::cuda::DeviceId;
use candle_core::{CudaDevice, CudaStorage, DType, Layout, Result};

use super::precision::{self, Precision};

/// One convolution: NCHW input, `[cout, cin / groups, kh, kw]` filter, square zero padding and
/// stride, dilation 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    pub batch: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
}

impl ConvShape {
    pub fn ho(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    pub fn wo(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    fn input(&self) -> [usize; 4] {
        [self.batch, self.cin, self.h, self.w]
    }
    fn output(&self) -> [usize; 4] {
        [self.batch, self.cout, self.ho(), self.wo()]
    }
    fn filter(&self) -> [usize; 4] {
        [self.cout, self.cin / self.groups, self.kh, self.kw]
    }
}

fn check(status: sys::cudnnStatus_t, what: &str) -> Result<()> {
    if status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        Ok(())
    } else {
        candle_core::bail!("cuDNN {what}: {status:?}")
    }
}

fn dims(d: [usize; 4]) -> [i32; 4] {
    d.map(|v| v as i32)
}

fn data_type(dtype: DType) -> Result<sys::cudnnDataType_t> {
    match dtype {
        DType::F32 => Ok(sys::cudnnDataType_t::CUDNN_DATA_FLOAT),
        DType::BF16 => Ok(sys::cudnnDataType_t::CUDNN_DATA_BFLOAT16),
        d => candle_core::bail!("cuDNN convolution: {d:?} tensors are not supported (f32, bf16)"),
    }
}

struct TensorDesc(sys::cudnnTensorDescriptor_t);

impl TensorDesc {
    fn new(dtype: DType, d: [usize; 4]) -> Result<Self> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: cuDNN writes a new descriptor into `raw`; it is destroyed on drop.
        check(
            unsafe { sys::cudnnCreateTensorDescriptor(&mut raw) },
            "tensor descriptor",
        )?;
        let desc = TensorDesc(raw);
        let [n, c, h, w] = dims(d);
        check(
            // SAFETY: `raw` is a live descriptor.
            unsafe {
                sys::cudnnSetTensor4dDescriptor(
                    raw,
                    sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                    data_type(dtype)?,
                    n,
                    c,
                    h,
                    w,
                )
            },
            "tensor descriptor",
        )?;
        Ok(desc)
    }
}

impl Drop for TensorDesc {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreateTensorDescriptor, destroyed once.
        unsafe { sys::cudnnDestroyTensorDescriptor(self.0) };
    }
}

struct FilterDesc(sys::cudnnFilterDescriptor_t);

impl FilterDesc {
    fn new(dtype: DType, d: [usize; 4]) -> Result<Self> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: as for TensorDesc.
        check(
            unsafe { sys::cudnnCreateFilterDescriptor(&mut raw) },
            "filter descriptor",
        )?;
        let desc = FilterDesc(raw);
        let [k, c, h, w] = dims(d);
        check(
            // SAFETY: `raw` is a live descriptor.
            unsafe {
                sys::cudnnSetFilter4dDescriptor(
                    raw,
                    data_type(dtype)?,
                    sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                    k,
                    c,
                    h,
                    w,
                )
            },
            "filter descriptor",
        )?;
        Ok(desc)
    }
}

impl Drop for FilterDesc {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreateFilterDescriptor, destroyed once.
        unsafe { sys::cudnnDestroyFilterDescriptor(self.0) };
    }
}

struct ConvDesc(sys::cudnnConvolutionDescriptor_t);

impl ConvDesc {
    fn new(s: &ConvShape, math: sys::cudnnMathType_t) -> Result<Self> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: as for TensorDesc.
        check(
            unsafe { sys::cudnnCreateConvolutionDescriptor(&mut raw) },
            "convolution descriptor",
        )?;
        let desc = ConvDesc(raw);
        let (p, st) = (s.pad as i32, s.stride as i32);
        // SAFETY: `raw` is a live descriptor.
        unsafe {
            check(
                sys::cudnnSetConvolution2dDescriptor(
                    raw,
                    p,
                    p,
                    st,
                    st,
                    1,
                    1,
                    sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                    // The accumulation: f32 for f32 and bf16 tensors alike.
                    sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                ),
                "convolution descriptor",
            )?;
            check(
                sys::cudnnSetConvolutionGroupCount(raw, s.groups as i32),
                "group count",
            )?;
            check(sys::cudnnSetConvolutionMathType(raw, math), "math type")?;
        }
        Ok(desc)
    }
}

impl Drop for ConvDesc {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreateConvolutionDescriptor, destroyed once.
        unsafe { sys::cudnnDestroyConvolutionDescriptor(self.0) };
    }
}

/// The math cuDNN may use: plain FMA for fp32 (PyTorch's `allow_tf32 = False`), tensor cores
/// otherwise (TF32 on f32 tensors, bf16 on bf16 ones, on the GPUs that have them).
fn math_type(p: Precision, dtype: DType) -> sys::cudnnMathType_t {
    match (p, dtype) {
        (Precision::Fp32, DType::F32) => sys::cudnnMathType_t::CUDNN_FMA_MATH,
        _ => sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
    }
}

/// The largest workspace an algorithm may ask for; a hungrier one is passed over for the next.
const WORKSPACE_LIMIT: usize = 1 << 30;

/// Where cuDNN's heuristics rank an algorithm: its id, status, workspace and math.
trait Perf: Copy {
    type Algo: Copy;
    /// The algorithm and its workspace, if it ran in the search and fits the limit.
    fn fitting(&self) -> Option<(Self::Algo, usize)>;
    fn tensor_cores(&self) -> bool;
}

macro_rules! perf {
    ($t:ty, $algo:ty) => {
        impl Perf for $t {
            type Algo = $algo;
            fn fitting(&self) -> Option<($algo, usize)> {
                (self.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                    && self.memory <= WORKSPACE_LIMIT)
                    .then_some((self.algo, self.memory))
            }
            fn tensor_cores(&self) -> bool {
                matches!(
                    self.mathType,
                    sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH
                        | sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
                )
            }
        }
    };
}

perf!(
    sys::cudnnConvolutionFwdAlgoPerf_t,
    sys::cudnnConvolutionFwdAlgo_t
);
perf!(
    sys::cudnnConvolutionBwdDataAlgoPerf_t,
    sys::cudnnConvolutionBwdDataAlgo_t
);
perf!(
    sys::cudnnConvolutionBwdFilterAlgoPerf_t,
    sys::cudnnConvolutionBwdFilterAlgo_t
);

/// The best-ranked algorithm that fits; in strict fp32 (FMA math) the best one the heuristics
/// list without tensor cores, if any (the descriptor's math type keeps them off either way).
fn first_fitting<P: Perf>(
    perf: &[P],
    math: sys::cudnnMathType_t,
    what: &str,
) -> Result<(P::Algo, usize)> {
    let strict = math == sys::cudnnMathType_t::CUDNN_FMA_MATH;
    let preferred = perf
        .iter()
        .filter(|p| !(strict && p.tensor_cores()))
        .find_map(|p| p.fitting());
    match preferred.or_else(|| perf.iter().find_map(|p| p.fitting())) {
        Some(found) => Ok(found),
        None => candle_core::bail!(
            "cuDNN {what}: no algorithm fits this convolution within {} MiB of workspace",
            WORKSPACE_LIMIT >> 20
        ),
    }
}

/// A direction of a convolution and the algorithm cuDNN picked for it.
#[derive(Clone, Copy, Debug)]
enum Algo {
    Forward(sys::cudnnConvolutionFwdAlgo_t),
    InputGrad(sys::cudnnConvolutionBwdDataAlgo_t),
    WeightGrad(sys::cudnnConvolutionBwdFilterAlgo_t),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `(x, w)` to `y`.
    Forward,
    /// `(dy, w)` to `dx`.
    InputGrad,
    /// `(x, dy)` to `dw`.
    WeightGrad,
}

impl Direction {
    fn index(self) -> usize {
        self as usize
    }
    fn name(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::InputGrad => "input gradient",
            Direction::WeightGrad => "weight gradient",
        }
    }
}

/// The descriptors of one convolution shape and the algorithm picked for each direction, with
/// its workspace size.
struct Plan {
    x: TensorDesc,
    w: FilterDesc,
    y: TensorDesc,
    conv: ConvDesc,
    math: sys::cudnnMathType_t,
    algos: [Option<(Algo, usize)>; 3],
}

impl Plan {
    fn new(s: &ConvShape, p: Precision, dtype: DType) -> Result<Self> {
        let math = math_type(p, dtype);
        Ok(Plan {
            x: TensorDesc::new(dtype, s.input())?,
            w: FilterDesc::new(dtype, s.filter())?,
            y: TensorDesc::new(dtype, s.output())?,
            conv: ConvDesc::new(s, math)?,
            math,
            algos: [None; 3],
        })
    }

    /// Asks cuDNN's heuristics for `dir`'s algorithms, best first, and keeps the first that
    /// fits.
    fn choose(&self, handle: sys::cudnnHandle_t, dir: Direction) -> Result<(Algo, usize)> {
        let mut count = 0;
        let what = dir.name();
        // SAFETY (all three): live handle and descriptors; each result array holds as many
        // entries as requested, and cuDNN writes `count` of them.
        match dir {
            Direction::Forward => {
                let mut perf: [sys::cudnnConvolutionFwdAlgoPerf_t; 8] =
                    unsafe { std::mem::zeroed() };
                check(
                    unsafe {
                        sys::cudnnGetConvolutionForwardAlgorithm_v7(
                            handle,
                            self.x.0,
                            self.w.0,
                            self.conv.0,
                            self.y.0,
                            perf.len() as i32,
                            &mut count,
                            perf.as_mut_ptr(),
                        )
                    },
                    what,
                )?;
                first_fitting(&perf[..count as usize], self.math, what)
                    .map(|(a, m)| (Algo::Forward(a), m))
            }
            Direction::InputGrad => {
                let mut perf: [sys::cudnnConvolutionBwdDataAlgoPerf_t; 6] =
                    unsafe { std::mem::zeroed() };
                check(
                    unsafe {
                        sys::cudnnGetConvolutionBackwardDataAlgorithm_v7(
                            handle,
                            self.w.0,
                            self.y.0,
                            self.conv.0,
                            self.x.0,
                            perf.len() as i32,
                            &mut count,
                            perf.as_mut_ptr(),
                        )
                    },
                    what,
                )?;
                first_fitting(&perf[..count as usize], self.math, what)
                    .map(|(a, m)| (Algo::InputGrad(a), m))
            }
            Direction::WeightGrad => {
                let mut perf: [sys::cudnnConvolutionBwdFilterAlgoPerf_t; 7] =
                    unsafe { std::mem::zeroed() };
                check(
                    unsafe {
                        sys::cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                            handle,
                            self.x.0,
                            self.y.0,
                            self.conv.0,
                            self.w.0,
                            perf.len() as i32,
                            &mut count,
                            perf.as_mut_ptr(),
                        )
                    },
                    what,
                )?;
                first_fitting(&perf[..count as usize], self.math, what)
                    .map(|(a, m)| (Algo::WeightGrad(a), m))
            }
        }
    }
}

type PlanKey = (ConvShape, Precision, DType);

/// A thread's cuDNN state on one device.
struct State {
    handle: sys::cudnnHandle_t,
    plans: HashMap<PlanKey, Plan>,
    /// Plain NCHW descriptors by shape (the bias gradient's).
    tensors: HashMap<[usize; 4], TensorDesc>,
    workspace: Option<CudaSlice<u8>>,
}

impl State {
    fn new(dev: &CudaDevice) -> Result<Self> {
        let stream = dev.cuda_stream();
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| candle_core::Error::Msg(format!("CUDA context: {e:?}")))?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: cuDNN writes a new handle; it is destroyed when the thread's state goes.
        check(unsafe { sys::cudnnCreate(&mut handle) }, "handle")?;
        // SAFETY: the handle is live and the stream is candle's stream for this device, which
        // outlives every call made through the handle (both live as long as the device).
        check(
            unsafe { sys::cudnnSetStream(handle, stream.cu_stream() as *mut _) },
            "stream",
        )?;
        Ok(State {
            handle,
            plans: HashMap::new(),
            tensors: HashMap::new(),
            workspace: None,
        })
    }

    fn tensor(&mut self, d: [usize; 4]) -> Result<sys::cudnnTensorDescriptor_t> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.tensors.entry(d) {
            e.insert(TensorDesc::new(DType::F32, d)?);
        }
        Ok(self.tensors[&d].0)
    }
}

impl Drop for State {
    fn drop(&mut self) {
        self.plans.clear();
        self.tensors.clear();
        // SAFETY: created by cudnnCreate, destroyed once, after its descriptors.
        unsafe { sys::cudnnDestroy(self.handle) };
    }
}

/// The workspace `slot`, at least `bytes` long (grown, never shrunk).
fn workspace<'a>(
    slot: &'a mut Option<CudaSlice<u8>>,
    dev: &CudaDevice,
    bytes: usize,
) -> Result<Option<&'a mut CudaSlice<u8>>> {
    if bytes == 0 {
        return Ok(None);
    }
    if slot.as_ref().is_none_or(|w| w.len() < bytes) {
        // Free the old one before asking for the larger.
        *slot = None;
        // SAFETY: cuDNN only writes its scratch values into the workspace.
        *slot = Some(unsafe { dev.alloc::<u8>(bytes)? });
    }
    Ok(slot.as_mut())
}

thread_local! {
    static STATES: RefCell<HashMap<DeviceId, State>> = RefCell::new(HashMap::new());
}

/// Runs `f` with this thread's cuDNN state for `dev`.
fn with_state<R>(dev: &CudaDevice, f: impl FnOnce(&mut State) -> Result<R>) -> Result<R> {
    STATES.with(|states| {
        let mut states = states.borrow_mut();
        let state = match states.entry(dev.id()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(State::new(dev)?),
        };
        f(state)
    })
}

/// A tensor's device address (at its layout's start) and the guard that records its use.
fn address<'a>(
    s: &'a CudaStorage,
    l: &Layout,
    stream: &'a CudaStream,
) -> Result<(u64, SyncOnDrop<'a>)> {
    if !l.is_contiguous() {
        candle_core::bail!("cuDNN convolution: the tensors must be contiguous");
    }
    let (ptr, guard) = match s.dtype() {
        DType::BF16 => s.as_cuda_slice::<half::bf16>()?.device_ptr(stream),
        _ => s.as_cuda_slice::<f32>()?.device_ptr(stream),
    };
    Ok((
        ptr + (l.start_offset() * s.dtype().size_in_bytes()) as u64,
        guard,
    ))
}

/// The address of a whole buffer cuDNN writes, and the guard that records the write.
fn address_mut<'a>(
    s: &'a mut CudaStorage,
    stream: &'a CudaStream,
) -> Result<(u64, SyncOnDrop<'a>)> {
    Ok(match s.dtype() {
        DType::BF16 => s.as_cuda_slice_mut::<half::bf16>()?.device_ptr_mut(stream),
        _ => s.as_cuda_slice_mut::<f32>()?.device_ptr_mut(stream),
    })
}

/// A new device buffer of `len` values of `dtype` (f32 or bf16), for cuDNN to write whole.
fn output(dev: &CudaDevice, dtype: DType, len: usize) -> Result<CudaStorage> {
    // SAFETY: cuDNN writes every output value (beta = 0 never reads it).
    Ok(match dtype {
        DType::BF16 => {
            CudaStorage::wrap_cuda_slice(unsafe { dev.alloc::<half::bf16>(len)? }, dev.clone())
        }
        _ => CudaStorage::wrap_cuda_slice(unsafe { dev.alloc::<f32>(len)? }, dev.clone()),
    })
}

fn void(p: u64) -> *mut std::ffi::c_void {
    p as *mut std::ffi::c_void
}

/// One direction of the convolution `shape` on f32 or bf16 tensors (both inputs of the one
/// dtype, the output of it too), into a new tensor: `Forward` takes
/// `(x, w)` and gives `y [B, Cout, Ho, Wo]`; `InputGrad` takes `(dy, w)` and gives
/// `dx [B, Cin, H, W]`; `WeightGrad` takes `(x, dy)` and gives `dw [Cout, Cin / groups, KH, KW]`.
pub fn convolve(
    dev: &CudaDevice,
    shape: &ConvShape,
    dir: Direction,
    (a, la): (&CudaStorage, &Layout),
    (b, lb): (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    let stream = dev.cuda_stream();
    let out_dims = match dir {
        Direction::Forward => shape.output(),
        Direction::InputGrad => shape.input(),
        Direction::WeightGrad => shape.filter(),
    };
    let dtype = a.dtype();
    if b.dtype() != dtype {
        candle_core::bail!(
            "cuDNN convolution ({}): {dtype:?} and {:?} tensors together",
            dir.name(),
            b.dtype()
        );
    }
    let mut out = output(dev, dtype, out_dims.iter().product())?;
    with_state(dev, |state| {
        let key = (*shape, precision::get(), dtype);
        if let std::collections::hash_map::Entry::Vacant(e) = state.plans.entry(key) {
            e.insert(Plan::new(shape, key.1, dtype)?);
        }
        let handle = state.handle;
        let (algo, bytes) = match state.plans[&key].algos[dir.index()] {
            Some(found) => found,
            None => {
                let found = state.plans[&key].choose(handle, dir)?;
                state.plans.get_mut(&key).expect("inserted above").algos[dir.index()] = Some(found);
                found
            }
        };
        let (ws_ptr, _ws_guard) = match workspace(&mut state.workspace, dev, bytes)? {
            Some(ws) => {
                let (p, g) = ws.device_ptr_mut(&stream);
                (p, Some(g))
            }
            None => (0, None),
        };
        let plan = &state.plans[&key];
        let (ap, _ga) = address(a, la, &stream)?;
        let (bp, _gb) = address(b, lb, &stream)?;
        let (op, _go) = address_mut(&mut out, &stream)?;
        let (alpha, beta) = (1f32, 0f32);
        let (alpha, beta) = ((&alpha as *const f32).cast(), (&beta as *const f32).cast());
        let ws = void(ws_ptr);
        // SAFETY: every pointer is a live device buffer of the size its descriptor states, on
        // the handle's stream; the workspace is at least `bytes` long.
        let status = unsafe {
            match algo {
                Algo::Forward(algo) => sys::cudnnConvolutionForward(
                    handle,
                    alpha,
                    plan.x.0,
                    void(ap),
                    plan.w.0,
                    void(bp),
                    plan.conv.0,
                    algo,
                    ws,
                    bytes,
                    beta,
                    plan.y.0,
                    void(op),
                ),
                Algo::InputGrad(algo) => sys::cudnnConvolutionBackwardData(
                    handle,
                    alpha,
                    plan.w.0,
                    void(bp),
                    plan.y.0,
                    void(ap),
                    plan.conv.0,
                    algo,
                    ws,
                    bytes,
                    beta,
                    plan.x.0,
                    void(op),
                ),
                Algo::WeightGrad(algo) => sys::cudnnConvolutionBackwardFilter(
                    handle,
                    alpha,
                    plan.x.0,
                    void(ap),
                    plan.y.0,
                    void(bp),
                    plan.conv.0,
                    algo,
                    ws,
                    bytes,
                    beta,
                    plan.w.0,
                    void(op),
                ),
            }
        };
        check(status, dir.name())
    })?;
    Ok(out)
}

/// The bias gradient `[C]`: `dy [B, C, H, W]` summed over all but the channels.
pub fn bias_grad(dev: &CudaDevice, (dy, ldy): (&CudaStorage, &Layout)) -> Result<CudaStorage> {
    let (b, c, h, w) = ldy.shape().dims4()?;
    if dy.dtype() != DType::F32 {
        candle_core::bail!("cuDNN bias gradient: f32 only, not {:?}", dy.dtype());
    }
    let stream = dev.cuda_stream();
    // SAFETY: cuDNN writes every value (beta = 0).
    let mut db = unsafe { dev.alloc::<f32>(c)? };
    with_state(dev, |state| {
        let dy_desc = state.tensor([b, c, h, w])?;
        let db_desc = state.tensor([1, c, 1, 1])?;
        let (dyp, _gdy) = address(dy, ldy, &stream)?;
        let (dbp, _gdb) = db.device_ptr_mut(&stream);
        let (alpha, beta) = (1f32, 0f32);
        // SAFETY: live handle and descriptors; `dy` holds B*C*H*W values and `db` C.
        check(
            unsafe {
                sys::cudnnConvolutionBackwardBias(
                    state.handle,
                    (&alpha as *const f32).cast(),
                    dy_desc,
                    void(dyp),
                    (&beta as *const f32).cast(),
                    db_desc,
                    void(dbp),
                )
            },
            "bias gradient",
        )
    })?;
    Ok(CudaStorage::wrap_cuda_slice(db, dev.clone()))
}

/// How many convolution shapes this thread has planned on any device (the plans are made once
/// per shape and precision, then reused).
pub fn planned_shapes() -> usize {
    STATES.with(|s| s.borrow().values().map(|st| st.plans.len()).sum())
}
