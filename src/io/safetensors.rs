//! The safetensors format, read and written by hand (it is small): an 8-byte little-endian
//! header length N, N bytes of JSON mapping each tensor name to its dtype, shape and byte range,
//! then the raw little-endian data. Never pickle.
//!
//! Reading accepts F32, F64, F16 and BF16 (converted to the requested float type); other dtypes
//! (integer buffers some checkpoints carry) are skipped and listed with their dtype. Every
//! header entry is checked before its tensor is built (see [`parse`]).

use super::{atomic_write, read};
use crate::error::{Error, Result};
use crate::kernels::quant::f16_to_f32;
use crate::tensor::{fmt_shape, Float};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The tensors of a file, in file order, and the names of tensors skipped for their dtype.
pub struct Tensors<F: Float> {
    pub tensors: Vec<(String, ArrayD<F>)>,
    pub skipped: Vec<String>,
    /// The skipped tensors with their dtypes (`I64`, `U8`, ...), in file order.
    pub skipped_dtypes: Vec<(String, String)>,
    pub metadata: Map<String, Value>,
}

/// Writes tensors (as F32 for `f32`, F64 for `f64`) with optional string metadata, atomically.
pub fn save<F: Float>(
    path: &Path,
    tensors: &[(&str, ArrayViewD<'_, F>)],
    metadata: &[(&str, &str)],
) -> Result<()> {
    let dtype = if std::mem::size_of::<F>() == 4 {
        "F32"
    } else {
        "F64"
    };
    let mut header = Map::new();
    if !metadata.is_empty() {
        let m: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        header.insert("__metadata__".into(), Value::Object(m));
    }
    let mut data = Vec::new();
    for (name, t) in tensors {
        let start = data.len();
        for &x in t.iter() {
            if dtype == "F32" {
                data.extend_from_slice(&(x.as_f64() as f32).to_le_bytes());
            } else {
                data.extend_from_slice(&x.as_f64().to_le_bytes());
            }
        }
        header.insert(
            name.to_string(),
            json!({ "dtype": dtype, "shape": t.shape(), "data_offsets": [start, data.len()] }),
        );
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).expect("a JSON map serialises");
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = Vec::with_capacity(8 + h.len() + data.len());
    bytes.extend_from_slice(&(h.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(&data);
    atomic_write(path, &bytes)
}

/// The float dtypes [`load`] converts.
pub const FLOAT_DTYPES: &str = "F32, F64, F16, BF16";

/// Reads every float tensor of a safetensors file.
pub fn load<F: Float>(path: &Path) -> Result<Tensors<F>> {
    let bytes = read(path)?;
    parse(&bytes, &path.display().to_string())
}

/// Reads every float tensor of a safetensors file's bytes (`shown` names it in errors).
///
/// Every entry of the header is checked before a tensor is built: the dtype is a string, the
/// shape a list of integers whose product (with overflow checks) times the dtype's size is
/// exactly the byte range, and the range lies inside the data. A tensor of another dtype than
/// F32, F64, F16 or BF16 is skipped and listed in [`Tensors::skipped`] with its dtype in
/// [`Tensors::skipped_dtypes`], so a caller that needs it can say why it is unusable.
pub fn parse<F: Float>(bytes: &[u8], shown: &str) -> Result<Tensors<F>> {
    let err = |detail: String| Error::Data {
        path: shown.to_string(),
        line: 0,
        detail,
    };
    if bytes.len() < 8 {
        return Err(err("file is shorter than the 8-byte header length".into()));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let data_start = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| err(format!("header length {n} runs past the end of the file")))?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes[8..data_start])
        .map_err(|e| err(format!("header is not a JSON object: {e}")))?;
    let data = &bytes[data_start..];
    let mut out = Tensors {
        tensors: Vec::new(),
        skipped: Vec::new(),
        skipped_dtypes: Vec::new(),
        metadata: Map::new(),
    };
    // (start, end, name, dtype, shape) of every tensor, checked.
    let mut entries: Vec<(usize, usize, String, String, Vec<usize>)> = Vec::new();
    for (name, info) in &header {
        if name == "__metadata__" {
            out.metadata = info.as_object().cloned().unwrap_or_default();
            continue;
        }
        let dtype = match info.get("dtype") {
            Some(Value::String(d)) => d.clone(),
            other => {
                return Err(err(format!(
                    "tensor {name}: dtype {} is not supported ({FLOAT_DTYPES})",
                    other.unwrap_or(&Value::Null)
                )))
            }
        };
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| err(format!("tensor {name}: shape missing")))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| err(format!("tensor {name}: shape is not a list of integers")))?;
        let offsets = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|o| o.len() == 2)
            .and_then(|o| {
                let at = |i: usize| o[i].as_u64().and_then(|x| usize::try_from(x).ok());
                Some((at(0)?, at(1)?))
            })
            .ok_or_else(|| {
                err(format!(
                    "tensor {name}: data_offsets missing or not two integers"
                ))
            })?;
        let (s, e) = offsets;
        // The element count, overflow-checked, and the bytes it needs; ndarray also refuses a
        // shape whose nonzero dimensions multiply past isize::MAX, so that product must fit too.
        let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let nonzero = shape
            .iter()
            .filter(|&&d| d != 0)
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|&p| p <= isize::MAX as usize);
        // Tensors of a dtype tunelab does not read are only checked to lie inside the data:
        // their exact size does not matter, and a caller that needs one names its dtype.
        let size = match dtype.as_str() {
            "F64" => Some(8),
            "F32" => Some(4),
            "F16" | "BF16" => Some(2),
            _ => None,
        };
        let needs = match (count, nonzero) {
            (Some(c), Some(_)) => c.checked_mul(size.unwrap_or(1)),
            _ => None,
        };
        let Some(needs) = needs else {
            return Err(err(format!(
                "tensor {name}: shape {} has more elements than memory can hold",
                fmt_shape(&shape)
            )));
        };
        if e < s || e > data.len() || (size.is_some() && e - s != needs) {
            return Err(err(format!(
                "tensor {name}: {dtype} {} needs {needs} bytes, data_offsets give {s}..{e} \
                 of {} bytes of data",
                fmt_shape(&shape),
                data.len()
            )));
        }
        entries.push((s, e, name.clone(), dtype, shape));
    }
    entries.sort_by_key(|e| e.0);
    for (s, e, name, dtype, shape) in entries {
        if !matches!(dtype.as_str(), "F32" | "F64" | "F16" | "BF16") {
            out.skipped.push(name.clone());
            out.skipped_dtypes.push((name, dtype));
            continue;
        }
        let raw = &data[s..e];
        let values: Vec<F> = match dtype.as_str() {
            "F32" => raw
                .chunks_exact(4)
                .map(|b| F::of(f32::from_le_bytes(b.try_into().expect("4")) as f64))
                .collect(),
            "F64" => raw
                .chunks_exact(8)
                .map(|b| F::of(f64::from_le_bytes(b.try_into().expect("8"))))
                .collect(),
            "F16" => raw
                .chunks_exact(2)
                .map(|b| F::of(f16_to_f32(u16::from_le_bytes([b[0], b[1]])) as f64))
                .collect(),
            _ => raw
                .chunks_exact(2)
                .map(|b| {
                    F::of(f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) as f64)
                })
                .collect(),
        };
        let array = ArrayD::from_shape_vec(IxDyn(&shape), values)
            .map_err(|e| err(format!("tensor {name}: {e}")))?;
        out.tensors.push((name, array));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_known_values() {
        for (bits, want) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x3555, 0.333_251_95),
            (0x0001, 5.960_464_5e-8),
            (0x7bff, 65504.0),
            (0, 0.0),
        ] {
            assert_eq!(f16_to_f32(bits), want, "{bits:#x}");
        }
    }
}
