//! Named host tensors and their safetensors files: the inputs and outputs of the parity tool
//! (`--inputs`, `--output`), named as HF's forward arguments and output fields.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{BertError, Result};
use crate::hub::write_atomically;

/// Host data of a named tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A tensor on the host, any rank (0-d for a scalar loss).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: HostData,
}

/// Tensors by name.
pub type NamedTensors = BTreeMap<String, HostTensor>;

impl HostTensor {
    /// A float tensor copied from the device.
    pub fn from_float<const D: usize>(t: Tensor<D>) -> Self {
        Self::from_data(t.into_data(), false)
    }

    /// An integer tensor copied from the device.
    pub fn from_int<const D: usize>(t: Tensor<D, Int>) -> Self {
        Self::from_data(t.into_data(), true)
    }

    /// Host data as f32 values, or as i64 ones when `int`.
    fn from_data(data: TensorData, int: bool) -> Self {
        let shape = data.shape().to_vec();
        let data = match int {
            true => HostData::I64(data.convert::<i64>().try_to_vec().expect("i64 data")),
            false => HostData::F32(data.convert::<f32>().try_to_vec().expect("f32 data")),
        };
        Self { shape, data }
    }

    /// A 0-d scalar (HF's `loss`) from a one-element tensor.
    pub fn scalar(t: Tensor<1>) -> Self {
        let mut h = Self::from_float(t);
        h.shape.clear();
        h
    }

    pub fn is_float(&self) -> bool {
        matches!(self.data, HostData::F32(_))
    }

    /// The data as f32 (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            HostData::F32(v) => v.clone(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    fn check_rank<const D: usize>(&self, name: &str) -> Result<()> {
        if self.shape.len() != D {
            return Err(BertError::Input(format!(
                "input `{name}` has shape {:?}; expected {D} dimensions",
                self.shape
            )));
        }
        Ok(())
    }

    /// The tensor on `device` as an integer tensor of rank `D`.
    pub fn int<const D: usize>(&self, name: &str, device: &Device) -> Result<Tensor<D, Int>> {
        self.check_rank::<D>(name)?;
        let HostData::I64(v) = &self.data else {
            return Err(BertError::Input(format!(
                "input `{name}` must be an integer (I64) tensor"
            )));
        };
        Ok(Tensor::from_data(
            TensorData::new(v.clone(), self.shape.clone()),
            device,
        ))
    }

    /// The tensor on `device` as a float tensor of rank `D`.
    pub fn float<const D: usize>(&self, name: &str, device: &Device) -> Result<Tensor<D>> {
        self.check_rank::<D>(name)?;
        Ok(Tensor::from_data(
            TensorData::new(self.to_f32(), self.shape.clone()),
            device,
        ))
    }
}

fn err(path: &Path, m: impl std::fmt::Display) -> BertError {
    BertError::Weights {
        path: path.to_path_buf(),
        message: m.to_string(),
    }
}

/// Reads every tensor of a safetensors file (F32/F64/F16/BF16 become F32; I64/I32 become I64).
pub fn read_tensors(path: impl AsRef<Path>) -> Result<NamedTensors> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| BertError::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(path, e))?;
    let mut out = NamedTensors::new();
    for (name, view) in st.tensors() {
        let b = view.data();
        let data = match view.dtype() {
            safetensors::Dtype::I64 => HostData::I64(
                b.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            safetensors::Dtype::I32 => HostData::I64(
                b.chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                    .collect(),
            ),
            dtype @ (safetensors::Dtype::F32
            | safetensors::Dtype::F64
            | safetensors::Dtype::F16
            | safetensors::Dtype::BF16) => {
                HostData::F32(crate::hub::to_f32(path, &name, &format!("{dtype:?}"), b)?)
            }
            other => {
                return Err(err(
                    path,
                    format!("tensor `{name}` has unsupported dtype {other:?}"),
                ));
            }
        };
        out.insert(
            name,
            HostTensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

/// Writes tensors as F32/I64 safetensors with the given header metadata, atomically.
pub fn write_tensors(
    path: impl AsRef<Path>,
    tensors: &NamedTensors,
    metadata: &[(&str, &str)],
) -> Result<()> {
    let path = path.as_ref();
    let bytes: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, t)| match &t.data {
            HostData::F32(v) => (
                k.clone(),
                safetensors::Dtype::F32,
                t.shape.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            HostData::I64(v) => (
                k.clone(),
                safetensors::Dtype::I64,
                t.shape.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(k, dtype, shape, b)| {
            let view =
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), b).expect("valid view");
            (k.clone(), view)
        })
        .collect();
    let metadata = (!metadata.is_empty()).then(|| {
        metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
    let out = safetensors::serialize(views, metadata).map_err(|e| err(path, e))?;
    write_atomically(path, &out)
}
