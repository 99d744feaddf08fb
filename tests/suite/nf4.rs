//! NF4 quantisation against bitsandbytes, to the last code.
//!
//! `tests/fixtures/nf4_golden.json` is written by `tools/nf4_golden.py` with bitsandbytes' own
//! `quantize_4bit` / `dequantize_4bit` (CPU, quant_type "nf4", with and without
//! `compress_statistics`). Each case is replayed with `tunelab::kernels::nf4`: every packed
//! byte, every 8-bit code of the double quantisation and every first-level constant must be
//! equal, and every dequantised value equal (max difference reported); the offset (a mean) within
//! 2 ulp and the second-level constants within 16 (see the test's comment). Then properties
//! worked out by hand.
//!
//! `cargo test --test suite nf4:: -- --nocapture` shows the report.

use serde::Deserialize;
use tunelab::kernels::nf4::{
    bits_per_value, dequantize_nf4, double_dequantize, double_quantize, nf4_index, quantize_nf4,
    DOUBLE_QUANT_BLOCKSIZE, DYNAMIC_MAP, NF4_CODE,
};

#[derive(Deserialize)]
struct Fixture {
    bitsandbytes: String,
    nf4_code: String,
    dynamic_map: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    blocksize: usize,
    input: String,
    packed: String,
    absmax: String,
    dequantized: Option<String>,
    double: Double,
}

#[derive(Deserialize)]
struct Double {
    offset: String,
    absmax_codes: String,
    absmax2: String,
    blocksize2: usize,
    dequantized: Option<String>,
}

fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Big-endian f32 bit patterns, 8 hex digits each.
fn f32s(hex: &str) -> Vec<f32> {
    bytes(hex)
        .chunks(4)
        .map(|b| f32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/nf4_golden.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn same_bits(a: &[f32], b: &[f32]) -> usize {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

#[test]
fn code_books_are_bitsandbytes_own() {
    let f = fixture();
    assert_eq!(
        f32s(&f.nf4_code)
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>(),
        NF4_CODE.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(
        f32s(&f.dynamic_map)
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>(),
        DYNAMIC_MAP.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn quantise_and_dequantise_match_bitsandbytes_to_the_last_code() {
    let f = fixture();
    let mut report = format!("NF4 against bitsandbytes {}\n", f.bitsandbytes);
    for c in &f.cases {
        let x = f32s(&c.input);
        let (packed, absmax) = quantize_nf4(&x, c.blocksize);
        let want_packed = bytes(&c.packed);
        let wrong_codes = packed
            .iter()
            .zip(&want_packed)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(packed.len(), want_packed.len(), "{}: packed length", c.name);
        assert_eq!(
            wrong_codes, 0,
            "{}: {wrong_codes} packed bytes differ",
            c.name
        );
        assert_eq!(
            same_bits(&absmax, &f32s(&c.absmax)),
            0,
            "{}: absmax",
            c.name
        );
        let y = dequantize_nf4(&packed, &absmax, c.blocksize, x.len());
        let d1 = c.dequantized.as_deref().map(|h| {
            let want = f32s(h);
            assert_eq!(
                same_bits(&y, &want),
                0,
                "{}: dequantised values differ",
                c.name
            );
            max_diff(&y, &want)
        });

        // Double quantisation of the constants.
        assert_eq!(c.double.blocksize2, DOUBLE_QUANT_BLOCKSIZE);
        let dq = double_quantize(&absmax);
        let want_offset = f32s(&c.double.offset)[0];
        let want_codes = bytes(&c.double.absmax_codes);
        let wrong = dq
            .codes
            .iter()
            .zip(&want_codes)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            dq.codes.len(),
            want_codes.len(),
            "{}: constant codes length",
            c.name
        );
        assert_eq!(
            wrong, 0,
            "{}: {wrong} of the constants' 8-bit codes differ",
            c.name
        );
        // The offset is torch's f32 mean of the constants. tunelab takes the exact mean rounded
        // to f32, which is what torch's vectorised cascade gives on long tensors (gpt-tiny's
        // 256 to 1,024 constants, through tools/qlora_golden.py); on a few short ones torch's
        // order of f32 additions lands an ulp away, and the second-level absmax
        // max|a − offset| then a few (a − offset cancels). The codes are equal all the same.
        let want2 = f32s(&c.double.absmax2);
        let ulps = |a: f32, b: f32| (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs();
        let absmax2_ulps = dq
            .absmax
            .iter()
            .zip(&want2)
            .map(|(&a, &b)| ulps(a, b))
            .max()
            .unwrap_or(0);
        let offset_ulps = ulps(dq.offset, want_offset);
        println!(
            "{}: offset {offset_ulps} ulp, absmax2 {absmax2_ulps} ulp from bitsandbytes",
            c.name
        );
        assert!(
            offset_ulps <= 2,
            "{}: offset {} against bitsandbytes' {want_offset}",
            c.name,
            dq.offset
        );
        assert!(
            absmax2_ulps <= 16,
            "{}: absmax2 {:?} against {want2:?}",
            c.name,
            dq.absmax
        );
        let offset_diff = (dq.offset - want_offset).abs();
        let constants = double_dequantize(&dq);
        let y2 = dequantize_nf4(&packed, &constants, c.blocksize, x.len());
        let d2 = c.double.dequantized.as_deref().map(|h| {
            let want = f32s(h);
            max_diff(&y2, &want)
        });
        if let Some(d) = d2 {
            assert!(
                d <= 1e-6 * (1.0 + x.iter().fold(0.0f32, |m, v| m.max(v.abs()))),
                "{}: {d}",
                c.name
            );
        }
        let err = max_diff(&x, &y);
        report += &format!(
            "  {:<24} {:>5} values: codes equal, constants equal; dequantised max diff {}, double {}; offset diff {offset_diff:e} ({offset_ulps} ulp), absmax2 {absmax2_ulps} ulp; quantisation error max {err:.3e}\n",
            c.name,
            x.len(),
            d1.map_or("-".into(), |d| format!("{d:e}")),
            d2.map_or("-".into(), |d| format!("{d:e}")),
        );
    }
    println!("{report}");
}

#[test]
fn nf4_levels_are_sorted_with_an_exact_zero_and_their_own_fixed_points() {
    assert!(NF4_CODE.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(NF4_CODE[7], 0.0);
    assert_eq!((NF4_CODE[0], NF4_CODE[15]), (-1.0, 1.0));
    // Each level, scaled by a block's absmax of 1, comes back as itself.
    let mut x = NF4_CODE.to_vec();
    x.extend(std::iter::repeat_n(0.0, 48));
    let (packed, absmax) = quantize_nf4(&x, 64);
    assert_eq!(absmax, vec![1.0]);
    for i in 0..16 {
        assert_eq!(nf4_index(&packed, i) as usize, i);
    }
    assert_eq!(dequantize_nf4(&packed, &absmax, 64, 16), NF4_CODE.to_vec());
}

#[test]
fn a_zero_block_and_an_odd_count_are_stored_as_bitsandbytes_stores_them() {
    let (packed, absmax) = quantize_nf4(&[0.0; 3], 64);
    assert_eq!(absmax, vec![0.0]);
    // Index 7 is the level 0; the padding nibble of an odd count is 7 too.
    assert_eq!(packed, vec![0x77, 0x77]);
    assert_eq!(dequantize_nf4(&packed, &absmax, 64, 3), vec![0.0; 3]);
}

#[test]
fn double_quantisation_costs_4_127_bits_per_value() {
    assert_eq!(bits_per_value(64 * 1024, 64, false), 4.5);
    let b = bits_per_value(4096 * 4096, 64, true);
    assert!((b - 4.127).abs() < 5e-4, "{b}");
}
