use super::{assert_written_without_tunelab, randn, rng};
use crate::nf4::{dequantize_nf4, quantize_nf4, NF4_CODE};
use rand::Rng;
use tunelab::kernels::nf4;

#[cfg(not(feature = "solutions"))]
const SOURCE: &str = include_str!("../09_quantization/nf4.rs");
#[cfg(feature = "solutions")]
const SOURCE: &str = include_str!("../../solutions/09_quantization/nf4.rs");

/// Quantises `values` with the learner's code and tunelab's, and fails unless the packed codes,
/// the constants and the dequantised values are identical.
fn assert_matches(what: &str, values: &[f32], blocksize: usize) {
    let (packed, absmax) = quantize_nf4(values, blocksize);
    let (want_packed, want_absmax) = nf4::quantize_nf4(values, blocksize);
    assert_eq!(
        packed.len(),
        want_packed.len(),
        "{what}: {} values need {} bytes of codes, yours has {}",
        values.len(),
        want_packed.len(),
        packed.len()
    );
    if let Some(i) =
        (0..values.len()).find(|&i| nf4::nf4_index(&packed, i) != nf4::nf4_index(&want_packed, i))
    {
        panic!(
            "{what}: value {i} ({}, block absmax {}) gets code {}, tunelab's is {}",
            values[i],
            want_absmax[i / blocksize],
            nf4::nf4_index(&packed, i),
            nf4::nf4_index(&want_packed, i)
        );
    }
    assert_eq!(
        packed, want_packed,
        "{what}: the codes agree but the bytes do not: pad an odd count with 7"
    );
    assert_eq!(absmax, want_absmax, "{what}: the blocks' absmax");
    let back = dequantize_nf4(&packed, &absmax, blocksize, values.len());
    let want = nf4::dequantize_nf4(&want_packed, &want_absmax, blocksize, values.len());
    assert_eq!(back, want, "{what}: dequantised values");
}

fn normal(n: usize, scale: f64, seed: u64) -> Vec<f32> {
    let mut rng = rng(seed);
    randn(n, &mut rng)
        .iter()
        .map(|&z| (scale * z) as f32)
        .collect()
}

#[test]
fn code_book_is_bitsandbytes() {
    for (i, (mine, theirs)) in NF4_CODE.iter().zip(&nf4::NF4_CODE).enumerate() {
        assert_eq!(
            mine.to_bits(),
            theirs.to_bits(),
            "level {i}: {mine} is not bitsandbytes' {theirs}; leave NF4_CODE as given"
        );
    }
}

#[test]
fn matches_tunelab_on_random_weights() {
    for (seed, (n, blocksize)) in [(64, 64), (128, 64), (4096, 64), (4096, 128), (1000, 128)]
        .into_iter()
        .enumerate()
    {
        let values = normal(n, 0.02, seed as u64 + 1);
        assert_matches(
            &format!("{n} values, blocksize {blocksize}"),
            &values,
            blocksize,
        );
    }
}

#[test]
fn odd_counts_pad_with_the_index_of_zero() {
    for (n, blocksize) in [(1, 64), (3, 64), (65, 64), (129, 128), (1001, 64)] {
        let values = normal(n, 1.0, n as u64);
        assert_matches(
            &format!("{n} values, blocksize {blocksize}"),
            &values,
            blocksize,
        );
        let (packed, _) = quantize_nf4(&values, blocksize);
        assert_eq!(
            packed.last().map(|b| b & 0xF),
            Some(7),
            "{n} values: the last byte's low nibble pads with 7"
        );
    }
}

#[test]
fn a_block_of_zeros_keeps_absmax_zero() {
    for blocksize in [64, 128] {
        let mut values = normal(3 * blocksize + 5, 0.5, 7);
        values[blocksize..2 * blocksize].fill(0.0);
        assert_matches(&format!("a zero block of {blocksize}"), &values, blocksize);
        let (packed, absmax) = quantize_nf4(&values, blocksize);
        assert_eq!(absmax[1], 0.0, "the zero block's absmax");
        let back = dequantize_nf4(&packed, &absmax, blocksize, values.len());
        assert!(
            back[blocksize..2 * blocksize].iter().all(|&x| x == 0.0),
            "a block of zeros must come back as zeros"
        );
    }
}

#[test]
fn values_exactly_at_midpoints_take_the_lower_level() {
    // Each block holds 1.0 (so absmax is 1 and y = x), every midpoint, and a little above each.
    let mids: Vec<f32> = nf4::NF4_CODE
        .windows(2)
        .map(|w| (w[0] + w[1]) / 2.0)
        .collect();
    for blocksize in [64, 128] {
        let mut values = vec![1.0f32];
        values.extend(&mids);
        values.extend(mids.iter().map(|m| m + 1e-4));
        values.resize(blocksize, 0.0);
        values.extend(values.clone().iter().map(|x| x * 0.5));
        assert_matches(
            &format!("midpoints, blocksize {blocksize}"),
            &values,
            blocksize,
        );
        let (packed, _) = quantize_nf4(&values, blocksize);
        for (i, m) in mids.iter().enumerate() {
            assert_eq!(
                nf4::nf4_index(&packed, 1 + i),
                i as u8,
                "{m}, the midpoint of levels {i} and {}, takes the lower level {i}",
                i + 1
            );
        }
    }
}

#[test]
fn dequantize_matches_tunelab_on_any_codes() {
    let mut rng = rng(11);
    for (n, blocksize) in [(7usize, 64usize), (200, 64), (300, 128)] {
        let packed: Vec<u8> = (0..n.div_ceil(2)).map(|_| rng.random::<u8>()).collect();
        let absmax: Vec<f32> = normal(n.div_ceil(blocksize), 1.0, n as u64)
            .iter()
            .map(|a| a.abs())
            .collect();
        assert_eq!(
            dequantize_nf4(&packed, &absmax, blocksize, n),
            nf4::dequantize_nf4(&packed, &absmax, blocksize, n),
            "{n} codes, blocksize {blocksize}"
        );
    }
}

#[test]
fn written_without_tunelab() {
    assert_written_without_tunelab("nf4", SOURCE);
}
