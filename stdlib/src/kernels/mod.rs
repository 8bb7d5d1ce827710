//! Fast CPU kernels for what candle does slowly (issue 5): convolution forward and backward.

pub mod conv;
