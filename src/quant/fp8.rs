//! FP8 E4M3 (the OCP FP8 format CUDA calls `__nv_fp8_e4m3`): 1 sign bit, 4 exponent bits with
//! bias 7, 3 mantissa bits. No infinities; `S.1111.111` (0x7F, 0xFF) is NaN, so the largest
//! finite magnitude is `1.75 · 2^8 = 448`; exponent field 0 holds subnormals `m · 2^-9`.
//! [`encode`] rounds to nearest, ties to even, and saturates to ±448 as CUDA's
//! `__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3)` does; [`decode`] is exact (every
//! E4M3 value is an f32). May use: nothing (a leaf of the crate).

/// Largest finite E4M3 magnitude.
pub const MAX: f32 = 448.0;
/// The code of +448 (exponent 15, mantissa 6); `| 0x80` is -448.
pub const MAX_CODE: u8 = 0x7E;
/// The NaN code [`encode`] returns for a NaN input (CUDA's choice as well).
pub const NAN_CODE: u8 = 0x7F;

/// f32 bit pattern of code `c`, by integer arithmetic only (so the table below is built at
/// compile time and no float rounding can creep into it).
const fn decode_bits(c: u8) -> u32 {
    let sign = ((c >> 7) as u32) << 31;
    let e = ((c >> 3) & 0xF) as u32;
    let m = (c & 0x7) as u32;
    if e == 0xF && m == 0x7 {
        return sign | 0x7FC0_0000;
    }
    if e == 0 {
        if m == 0 {
            return sign;
        }
        // m · 2^-9 with m in 1..=7: the leading bit p of m sets the f32 exponent p - 9, the
        // bits below it become the top of the f32 mantissa.
        let p = 31 - m.leading_zeros();
        let exp = p + 127 - 9;
        let frac = (m - (1 << p)) << (23 - p);
        return sign | (exp << 23) | frac;
    }
    sign | ((e + 127 - 7) << 23) | (m << 20)
}

const fn build_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = decode_bits(c as u8);
        c += 1;
    }
    t
}

/// Bit patterns of the 256 decoded values.
static TABLE: [u32; 256] = build_table();

/// The exact f32 value of an E4M3 code (NaN for 0x7F / 0xFF).
#[inline(always)]
pub fn decode(c: u8) -> f32 {
    f32::from_bits(TABLE[c as usize])
}

/// 2^120: moves an E4M3 exponent (bias 7) to f32's (bias 127).
const REBIAS: f32 = f32::from_bits((120 + 127) << 23);

/// [`decode`] by bit arithmetic, for every code but the NaNs (0x7F / 0xFF come out as ±480):
/// the 7 magnitude bits go to the top of an f32's exponent and mantissa and the product by
/// 2^120 rebiases the exponent, exactly (a power of two, the result is normal; E4M3 subnormals
/// land on f32 subnormals and come out right too). No table, so the compiler vectorises it:
/// the CPU GEMM's FP8 weight stream decodes at SIMD width instead of one lookup per element.
#[inline(always)]
pub fn decode_finite(c: u8) -> f32 {
    let c = c as u32;
    f32::from_bits(((c & 0x80) << 24) | ((c & 0x7F) << 20)) * REBIAS
}

/// Nearest E4M3 code to `x` (ties to even), saturating to ±448; NaN gives [`NAN_CODE`].
pub fn encode(x: f32) -> u8 {
    if x.is_nan() {
        return NAN_CODE;
    }
    let bits = x.to_bits();
    let sign = ((bits >> 31) as u8) << 7;
    let a = f32::from_bits(bits & 0x7FFF_FFFF);
    if a >= MAX {
        return sign | MAX_CODE;
    }
    if a < 1.0 / 64.0 {
        // Below the smallest normal 2^-6 the codes are evenly spaced by 2^-9: a · 512 is
        // exact (a power-of-two scale of a value far from the f32 limits) and its
        // ties-to-even integer is the code, 8 meaning 2^-6, which is code 0x08, the first
        // normal, so the two ranges meet without a special case.
        return sign | (a * 512.0).round_ties_even() as u8;
    }
    // Normal: keep the top 3 of the 23 mantissa bits, rounding the 20 dropped bits to nearest
    // even. Adding the carry to the whole code lets a mantissa overflow step into the next
    // exponent. a < 448 keeps the biased exponent <= 15.
    let exp = (bits >> 23) & 0xFF; // 121 ..= 135 here (2^-6 <= a < 2^9)
    let mant = bits & 0x7F_FFFF;
    let keep = mant >> 20;
    let rest = mant & 0xF_FFFF;
    let half = 0x8_0000;
    let up = (rest > half || (rest == half && keep & 1 == 1)) as u32;
    // Rebias 127 -> 7 as exp - 120: written as exp - 127 + 7 it underflows u32 at exp < 127.
    let code = (((exp - 120) << 3) | keep) + up;
    // 448 < a < 464 rounds to 448 already; a >= 464 would round to 480, past the max.
    sign | code.min(MAX_CODE as u32) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_nan_code(c: u8) -> bool {
        c & 0x7F == 0x7F
    }

    #[test]
    fn every_code_round_trips() {
        for c in 0..=255u8 {
            let v = decode(c);
            if is_nan_code(c) {
                assert!(v.is_nan(), "code {c:#04x} must decode to NaN");
                assert_eq!(encode(v), NAN_CODE);
            } else {
                assert!(v.is_finite(), "code {c:#04x}");
                assert_eq!(encode(v), c, "code {c:#04x} decodes to {v:e}");
            }
        }
    }

    #[test]
    fn bit_decode_matches_the_table() {
        for c in 0..=255u8 {
            if !is_nan_code(c) {
                assert_eq!(decode_finite(c).to_bits(), decode(c).to_bits(), "{c:#04x}");
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(decode(0x00), 0.0);
        assert!(decode(0x80).is_sign_negative() && decode(0x80) == 0.0);
        assert_eq!(decode(0x01), 2f32.powi(-9)); // smallest subnormal
        assert_eq!(decode(0x07), 7.0 * 2f32.powi(-9)); // largest subnormal
        assert_eq!(decode(0x08), 2f32.powi(-6)); // smallest normal
        assert_eq!(decode(0x38), 1.0);
        assert_eq!(decode(0x3C), 1.5);
        assert_eq!(decode(0x7E), 448.0);
        assert_eq!(decode(0xFE), -448.0);
        assert_eq!(decode(0x77), 240.0);
    }

    /// The midpoint of two neighbouring codes goes to the one with an even mantissa; a hair
    /// either side of it goes to the nearer one.
    #[test]
    fn midpoints_round_to_even() {
        for c in 0..MAX_CODE {
            let (lo, hi) = (decode(c), decode(c + 1));
            let mid = 0.5 * (lo + hi); // exact: both are short f32s
            let even = if c & 1 == 0 { c } else { c + 1 };
            assert_eq!(encode(mid), even, "midpoint of {c:#04x} and {:#04x}", c + 1);
            assert_eq!(encode(-mid), even | 0x80);
            let below = f32::from_bits(mid.to_bits() - 1);
            let above = f32::from_bits(mid.to_bits() + 1);
            assert_eq!(encode(below), c, "just below the midpoint of {c:#04x}");
            assert_eq!(encode(above), c + 1, "just above the midpoint of {c:#04x}");
        }
    }

    #[test]
    fn saturates_to_448() {
        for x in [
            448.0f32,
            448.5,
            463.9,
            464.0,
            480.0,
            1e6,
            f32::MAX,
            f32::INFINITY,
        ] {
            assert_eq!(encode(x), MAX_CODE, "{x}");
            assert_eq!(encode(-x), MAX_CODE | 0x80, "-{x}");
        }
        assert_eq!(encode(f32::NAN), NAN_CODE);
    }

    #[test]
    fn subnormals() {
        let s = 2f32.powi(-9);
        assert_eq!(encode(s), 0x01);
        assert_eq!(encode(0.5 * s), 0x00); // tie between 0 and s: even is 0
        assert_eq!(encode(1.5 * s), 0x02); // tie between s and 2s: even is 2s
        assert_eq!(encode(2.5 * s), 0x02);
        assert_eq!(encode(7.5 * s), 0x08); // tie between the largest subnormal and 2^-6
        assert_eq!(encode(0.49 * s), 0x00);
        assert_eq!(encode(f32::from_bits(1)), 0x00); // f32 subnormals underflow to zero
        assert_eq!(encode(-0.0), 0x80);
    }

    /// Against a brute-force nearest search over every finite code, on values spread over
    /// the whole range (log-uniform magnitudes, both signs).
    #[test]
    fn matches_brute_force_nearest() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let finite: Vec<u8> = (0..=255u8).filter(|&c| !is_nan_code(c)).collect();
        for _ in 0..200_000 {
            let mag = 2f32.powf(rng.gen_range(-12.0..9.5));
            let x = if rng.gen::<bool>() { mag } else { -mag };
            let got = encode(x);
            let best = finite
                .iter()
                .copied()
                .filter(|&c| (c & 0x80 != 0) == (x < 0.0) || decode(c) == 0.0)
                .min_by(|&a, &b| {
                    // f64 differences of two f32s are exact, so a tie is a real tie.
                    let d = |c: u8| (decode(c) as f64 - x as f64).abs();
                    let (da, db) = (d(a), d(b));
                    da.partial_cmp(&db).unwrap().then((a & 1).cmp(&(b & 1)))
                })
                .unwrap();
            if x.abs() >= MAX {
                assert_eq!(decode(got), 448f32.copysign(x), "{x}");
            } else {
                assert_eq!(
                    decode(got),
                    decode(best),
                    "{x:e}: got {got:#04x}, nearest {best:#04x}"
                );
            }
        }
    }
}
