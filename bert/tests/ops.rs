//! Numerics the parity depends on, checked on the backend under test.

mod common;

use bert::activation::HiddenAct;
use burn::tensor::Tensor;

/// erf by its Taylor series, to ~1e-15 for |x| < 4.
fn erf(x: f64) -> f64 {
    let (mut sum, mut term, mut n) = (x, x, 0.0);
    loop {
        n += 1.0;
        term *= -x * x / n;
        let add = term / (2.0 * n + 1.0);
        sum += add;
        if add.abs() < 1e-17 {
            return sum * 2.0 / std::f64::consts::PI.sqrt();
        }
    }
}

/// GELU and its gradient against the analytic `Φ(x) + x·φ(x)` (Burn's fused gelu backward
/// is off by 8.7e-4 on ndarray/wgpu; ours must not be).
#[test]
fn exact_gelu_and_its_gradient() {
    let device = common::device().autodiff();
    let xs: Vec<f32> = (-16..=16).map(|i| i as f32 * 0.25).collect();
    let x = Tensor::<1>::from_floats(xs.as_slice(), &device).require_grad();
    let y = HiddenAct::Gelu.forward(x.clone());
    let values = y.clone().into_data().try_to_vec::<f32>().unwrap();
    let grads = x
        .grad(&y.sum().backward())
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    for ((&x, &y), &g) in xs.iter().zip(&values).zip(&grads) {
        let x = x as f64;
        let cdf = 0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2));
        let pdf = (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
        assert!((y as f64 - x * cdf).abs() < 1e-6, "gelu({x}) = {y}");
        assert!(
            (g as f64 - (cdf + x * pdf)).abs() < 1e-6,
            "gelu'({x}) = {g}"
        );
    }
}
