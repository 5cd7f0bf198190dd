//! The built-in functions of the lambda language (Kapacitor's
//! `tick/stateful/functions.go`, restated): conversions, the `math` set, the
//! `str*` family, `regexReplace`, `isPresent`, `if`, `humanBytes`, the time
//! functions, and the stateful `sigma`, `count`, `spread` and `rand`.
//!
//! Each function has a signature (argument types → result type), checked
//! before the call as Kapacitor's type pass does, and an implementation whose
//! own argument checks and messages are Go's (`Call`), used alone by
//! [`super::call_function`].

use std::borrow::Cow;

use rand::{Rng, SeedableRng};

use super::value::{
    Type, Val, format_float_f, go_f64_to_i64, parse_bool, parse_float, parse_influx_duration,
    parse_int,
};
use crate::alert::expr::ast::format_duration;

/// Kapacitor's `maxArgs`: a signature has at most four arguments.
pub(crate) const MAX_ARGS: usize = 4;

type F1 = fn(f64) -> f64;
type F2 = fn(f64, f64) -> f64;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Float,
    String,
    Duration,
    Math1(F1),
    Math2(F2),
    MathI(fn(i64) -> f64),
    MathIF(fn(i64, f64) -> f64),
    Str2Bool(fn(&str, &str) -> bool),
    Str2Int(fn(&str, &str) -> i64),
    Str2Str(fn(&str, &str) -> String),
    Str1Str(fn(&str) -> String),
    StrLength,
    StrReplace,
    StrSubstring,
    RegexReplace,
    IsPresent,
    UnixNano,
    Minute,
    Hour,
    Weekday,
    Day,
    Month,
    Year,
    Now,
    HumanBytes,
    If,
    Sigma,
    Count,
    Spread,
    Rand,
}

/// A resolved built-in function.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Func {
    pub(crate) name: &'static str,
    kind: Kind,
}

/// Go's `math.Max`: NaN wins, and +0 beats -0.
fn go_max(x: f64, y: f64) -> f64 {
    if x.is_infinite() && x > 0.0 || y.is_infinite() && y > 0.0 {
        return f64::INFINITY;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && x == y {
        return if x.is_sign_negative() { y } else { x };
    }
    if x > y { x } else { y }
}

/// Go's `math.Min`: NaN wins, and -0 beats +0.
fn go_min(x: f64, y: f64) -> f64 {
    if x.is_infinite() && x < 0.0 || y.is_infinite() && y < 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && x == y {
        return if x.is_sign_negative() { x } else { y };
    }
    if x < y { x } else { y }
}

/// Go's `math.Logb`: the binary exponent as a float.
fn go_logb(x: f64) -> f64 {
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    if x.is_nan() {
        return x;
    }
    libm::ilogb(x) as f64
}

/// Go's `math.Pow10`: exact powers from tables of 10^k and 10^(32k), so the
/// result is the product (or quotient) of two correctly rounded constants.
fn go_pow10(n: i64) -> f64 {
    let tab = |k: i64| -> f64 { format!("1e{k}").parse().unwrap_or(f64::INFINITY) };
    if (0..=308).contains(&n) {
        return tab(32 * (n / 32)) * tab(n % 32);
    }
    if (-323..=0).contains(&n) {
        let m = -n;
        return tab(-32 * (m / 32)) / tab(m % 32);
    }
    if n > 0 { f64::INFINITY } else { 0.0 }
}

/// Go's `math.Log` (the FreeBSD `e_log.c` algorithm Go implements).
// The constants are written as published (they round to the same doubles).
#[allow(clippy::excessive_precision)]
fn go_log(x: f64) -> f64 {
    const LN2_HI: f64 = 6.93147180369123816490e-01;
    const LN2_LO: f64 = 1.90821492927058770002e-10;
    const L1: f64 = 6.666666666666735130e-01;
    const L2: f64 = 3.999999999940941908e-01;
    const L3: f64 = 2.857142874366239149e-01;
    const L4: f64 = 2.222219843214978396e-01;
    const L5: f64 = 1.818357216161805012e-01;
    const L6: f64 = 1.531383769920937332e-01;
    const L7: f64 = 1.479819860511658591e-01;
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    let (mut f1, mut ki) = libm::frexp(x);
    if f1 < std::f64::consts::SQRT_2 / 2.0 {
        f1 *= 2.0;
        ki -= 1;
    }
    let f = f1 - 1.0;
    let k = f64::from(ki);
    let s = f / (2.0 + f);
    let s2 = s * s;
    let s4 = s2 * s2;
    let t1 = s2 * (L1 + s4 * (L3 + s4 * (L5 + s4 * L7)));
    let t2 = s4 * (L2 + s4 * (L4 + s4 * L6));
    let r = t1 + t2;
    let hfsq = 0.5 * f * f;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
}

/// Go's `math.Log2`: exact for powers of two.
fn go_log2(x: f64) -> f64 {
    let (frac, exp) = libm::frexp(x);
    if frac == 0.5 {
        return f64::from(exp - 1);
    }
    go_log(frac) * std::f64::consts::LOG2_E + f64::from(exp)
}

/// Go's `math.Sin`/`Cos`/`Tan` (Cephes): octant reduction with π/4 split in
/// three parts (Payne–Hanek from 2^29 up, as Go), then polynomials.
// The constants are written as published (they round to the same doubles).
#[allow(clippy::excessive_precision)]
mod go_trig {
    const SIN: [f64; 6] = [
        1.58962301576546568060e-10,
        -2.50507477628578072866e-8,
        2.75573136213857245213e-6,
        -1.98412698295895385996e-4,
        8.33333333332211858878e-3,
        -1.66666666666666307295e-1,
    ];
    const COS: [f64; 6] = [
        -1.13585365213876817300e-11,
        2.08757008419747316778e-9,
        -2.75573141792967388112e-7,
        2.48015872888517045348e-5,
        -1.38888888888730564116e-3,
        4.16666666666665929218e-2,
    ];
    const TAN_P: [f64; 3] = [
        -1.30936939181383777646e4,
        1.15351664838587416140e6,
        -1.79565251976484877988e7,
    ];
    const TAN_Q: [f64; 5] = [
        1.0,
        1.36812963470692954678e4,
        -1.32089234440210967447e6,
        2.50083801823357915839e7,
        -5.38695755929454629881e7,
    ];
    const PI4A: f64 = 7.85398125648498535156e-1;
    const PI4B: f64 = 3.77489470793079817668e-8;
    const PI4C: f64 = 2.69515142907905952645e-15;
    const REDUCE_THRESHOLD: f64 = (1u64 << 29) as f64;
    const FOUR_OVER_PI: f64 = 2.0 * std::f64::consts::FRAC_2_PI;

    /// 4/π in binary: `Σ M_PI4[i]·2^(-64·i)` (from the 2/π digits of
    /// fdlibm's `ipio2` table).
    const M_PI4: [u64; 20] = [
        0x0000000000000001,
        0x45f306dc9c882a53,
        0xf84eafa3ea69bb81,
        0xb6c52b3278872083,
        0xfca2c757bd778ac3,
        0x6e48dc74849ba5c0,
        0x0c925dd413a32439,
        0xfc3bd63962534e7d,
        0xd1046bea5d768909,
        0xd338e04d68befc82,
        0x7323ac7306a673e9,
        0x3908bf177bf25076,
        0x3ff12fffbc0b301f,
        0xde5e2316b414da3e,
        0xda6cfd9e4f96136e,
        0x9e8c7ecd3cbfd45a,
        0xea4f758fd7cbe2f6,
        0x7a0e73ef14a525d4,
        0xd7f6bf623f1aba10,
        0xac06608df8f6d757,
    ];

    fn shl(x: u64, n: u32) -> u64 {
        x.checked_shl(n).unwrap_or(0)
    }

    fn shr(x: u64, n: u32) -> u64 {
        x.checked_shr(n).unwrap_or(0)
    }

    /// Go's `trigReduce`: Payne–Hanek reduction by π/4 for large `x`; the
    /// octant and the reduced argument.
    fn payne_hanek(x: f64) -> (u64, f64) {
        const PI4: f64 = std::f64::consts::FRAC_PI_4;
        if x < PI4 {
            return (0, x);
        }
        let mut ix = x.to_bits();
        let exp = ((ix >> 52) & 0x7ff) as i64 - 1023 - 52;
        ix &= !(0x7ff << 52);
        ix |= 1 << 52;
        let (digit, bitshift) = (((exp + 61) / 64) as usize, ((exp + 61) % 64) as u32);
        let word =
            |k: usize| shl(M_PI4[digit + k], bitshift) | shr(M_PI4[digit + k + 1], 64 - bitshift);
        let (z0, z1, z2) = (word(0), word(1), word(2));
        let mul = |a: u64, b: u64| {
            let p = u128::from(a) * u128::from(b);
            ((p >> 64) as u64, p as u64)
        };
        let (z2hi, _) = mul(z2, ix);
        let (z1hi, z1lo) = mul(z1, ix);
        let z0lo = z0.wrapping_mul(ix);
        let (lo, carry) = z1lo.overflowing_add(z2hi);
        let hi = z0lo.wrapping_add(z1hi).wrapping_add(u64::from(carry));
        let mut j = hi >> 61;
        let mut hi = (hi << 3) | (lo >> 61);
        let lz = hi.leading_zeros();
        let e = 1023 - (u64::from(lz) + 1);
        hi = shl(hi, lz + 1) | shr(lo, 64 - (lz + 1));
        hi >>= 64 - 52;
        hi |= e << 52;
        let mut z = f64::from_bits(hi);
        if j & 1 == 1 {
            j = (j + 1) & 7;
            z -= 1.0;
        }
        (j, z * PI4)
    }

    /// The octant `j` (made even) and the reduced argument, for `x >= 0`.
    fn reduce(x: f64) -> (u64, f64) {
        if x >= REDUCE_THRESHOLD {
            return payne_hanek(x);
        }
        let mut j = (x * FOUR_OVER_PI) as u64;
        let mut y = j as f64;
        if j & 1 == 1 {
            j += 1;
            y += 1.0;
        }
        (j & 7, ((x - y * PI4A) - y * PI4B) - y * PI4C)
    }

    fn sin_poly(z: f64, zz: f64) -> f64 {
        z + z
            * zz
            * (((((SIN[0] * zz + SIN[1]) * zz + SIN[2]) * zz + SIN[3]) * zz + SIN[4]) * zz + SIN[5])
    }

    fn cos_poly(zz: f64) -> f64 {
        1.0 - 0.5 * zz
            + zz * zz
                * (((((COS[0] * zz + COS[1]) * zz + COS[2]) * zz + COS[3]) * zz + COS[4]) * zz
                    + COS[5])
    }

    pub(super) fn sin(x: f64) -> f64 {
        if x == 0.0 || x.is_nan() {
            return x;
        }
        if x.is_infinite() {
            return f64::NAN;
        }
        let (x, mut negative) = if x < 0.0 { (-x, true) } else { (x, false) };
        let (mut j, z) = reduce(x);
        if j > 3 {
            negative = !negative;
            j -= 4;
        }
        let zz = z * z;
        let y = if j == 1 || j == 2 {
            cos_poly(zz)
        } else {
            sin_poly(z, zz)
        };
        if negative { -y } else { y }
    }

    pub(super) fn cos(x: f64) -> f64 {
        if x.is_nan() || x.is_infinite() {
            return f64::NAN;
        }
        let x = x.abs();
        let (mut j, z) = reduce(x);
        let mut negative = false;
        if j > 3 {
            j -= 4;
            negative = !negative;
        }
        if j > 1 {
            negative = !negative;
        }
        let zz = z * z;
        let y = if j == 1 || j == 2 {
            sin_poly(z, zz)
        } else {
            cos_poly(zz)
        };
        if negative { -y } else { y }
    }

    pub(super) fn tan(x: f64) -> f64 {
        if x == 0.0 || x.is_nan() {
            return x;
        }
        if x.is_infinite() {
            return f64::NAN;
        }
        let (x, negative) = if x < 0.0 { (-x, true) } else { (x, false) };
        let (j, z) = reduce(x);
        let zz = z * z;
        let mut y = if zz > 1e-14 {
            z + z
                * (zz * ((TAN_P[0] * zz + TAN_P[1]) * zz + TAN_P[2])
                    / ((((zz + TAN_Q[1]) * zz + TAN_Q[2]) * zz + TAN_Q[3]) * zz + TAN_Q[4]))
        } else {
            z
        };
        if j & 2 == 2 {
            y = -1.0 / y;
        }
        if negative { -y } else { y }
    }
}

/// Go's `math.Sinh` (Hart & Cheney #2029 near zero, `exp` elsewhere).
// The constants are written as published (they round to the same doubles).
#[allow(clippy::excessive_precision)]
fn go_sinh(x: f64) -> f64 {
    const P0: f64 = -0.6307673640497716991184787251e+6;
    const P1: f64 = -0.8991272022039509355398013511e+5;
    const P2: f64 = -0.2894211355989563807284660366e+4;
    const P3: f64 = -0.2630563213397497062819489000e+2;
    const Q0: f64 = -0.6307673640497716991212077277e+6;
    const Q1: f64 = 0.1521517378790019070696485176e+5;
    const Q2: f64 = -0.173678953558233699533450911e+3;
    let (x, negative) = if x < 0.0 { (-x, true) } else { (x, false) };
    let t = if x > 21.0 {
        x.exp() * 0.5
    } else if x > 0.5 {
        let ex = x.exp();
        (ex - 1.0 / ex) * 0.5
    } else {
        let sq = x * x;
        (((P3 * sq + P2) * sq + P1) * sq + P0) * x / (((sq + Q2) * sq + Q1) * sq + Q0)
    };
    if negative { -t } else { t }
}

/// Go's `math.Cosh`.
fn go_cosh(x: f64) -> f64 {
    let x = x.abs();
    if x > 21.0 {
        return x.exp() * 0.5;
    }
    let ex = x.exp();
    (ex + 1.0 / ex) * 0.5
}

/// Go's `math.Tanh` (Cephes).
// The constants are written as published (they round to the same doubles).
#[allow(clippy::excessive_precision)]
fn go_tanh(x: f64) -> f64 {
    const P: [f64; 3] = [
        -9.64399179425052238628e-1,
        -9.92877231001918586564e1,
        -1.61468768441708447952e3,
    ];
    const Q: [f64; 3] = [
        1.12811678491632931402e2,
        2.23548839060100448583e3,
        4.84406305325125486048e3,
    ];
    const MAXLOG: f64 = 8.8029691931113054295988e+01;
    let z = x.abs();
    if z > 0.5 * MAXLOG {
        return if x < 0.0 { -1.0 } else { 1.0 };
    }
    if z >= 0.625 {
        let s = (2.0 * z).exp();
        let z = 1.0 - 2.0 / (s + 1.0);
        return if x < 0.0 { -z } else { z };
    }
    if x == 0.0 {
        return x;
    }
    let s = x * x;
    x + x * s * ((P[0] * s + P[1]) * s + P[2]) / (((s + Q[0]) * s + Q[1]) * s + Q[2])
}

/// Go's `expmulti`: `e^r · 2^k` with `r = hi - lo`, `|r| ≤ ln 2 / 2`.
// The constants are written as published (they round to the same doubles).
#[allow(clippy::excessive_precision)]
fn go_expmulti(hi: f64, lo: f64, k: i64) -> f64 {
    const P1: f64 = 1.66666666666666657415e-01;
    const P2: f64 = -2.77777777770155933842e-03;
    const P3: f64 = 6.61375632143793436117e-05;
    const P4: f64 = -1.65339022054652515390e-06;
    const P5: f64 = 4.13813679705723846039e-08;
    let r = hi - lo;
    let t = r * r;
    let c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
    let y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    libm::ldexp(y, k.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
}

/// Go's `math.Exp2`.
// The constants are written as published (they round to the same doubles).
#[allow(clippy::excessive_precision)]
fn go_exp2(x: f64) -> f64 {
    const LN2_HI: f64 = 6.93147180369123816490e-01;
    const LN2_LO: f64 = 1.90821492927058770002e-10;
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x == f64::NEG_INFINITY || x < -1.0740e+03 {
        return 0.0;
    }
    if x > 1.0239999999999999e+03 {
        return f64::INFINITY;
    }
    let k: i64 = if x > 0.0 {
        (x + 0.5) as i64
    } else if x < 0.0 {
        (x - 0.5) as i64
    } else {
        0
    };
    let t = x - k as f64;
    go_expmulti(t * LN2_HI, -t * LN2_LO, k)
}

/// Go's `math.Gamma` (Cephes): Stirling's formula above 33, otherwise a
/// rational approximation on [2, 3] after reduction.
// The constants are written as published (they round to the same doubles).
#[allow(clippy::excessive_precision)]
fn go_gamma(x: f64) -> f64 {
    const P: [f64; 7] = [
        1.60119522476751861407e-04,
        1.19135147006586384913e-03,
        1.04213797561761569935e-02,
        4.76367800457137231464e-02,
        2.07448227648435975150e-01,
        4.94214826801497100753e-01,
        9.99999999999999996796e-01,
    ];
    const Q: [f64; 8] = [
        -2.31581873324120129819e-05,
        5.39605580493303397842e-04,
        -4.45641913851797240494e-03,
        1.18139785222060435552e-02,
        3.58236398605498653373e-02,
        -2.34591795718243348568e-01,
        7.14304917030273074085e-02,
        1.00000000000000000320e+00,
    ];
    const S: [f64; 5] = [
        7.87311395793093628397e-04,
        -2.29549961613378126380e-04,
        -2.68132617805781232825e-03,
        3.47222221605458667310e-03,
        8.33333333333482257126e-02,
    ];
    const EULER: f64 = 0.57721566490153286060651209008240243104215933593992;
    fn stirling(x: f64) -> (f64, f64) {
        const SQRT_TWO_PI: f64 = 2.506628274631000502417;
        const MAX_STIRLING: f64 = 143.01608;
        if x > 200.0 {
            return (f64::INFINITY, 1.0);
        }
        let w = 1.0 / x;
        let w = 1.0 + w * ((((S[0] * w + S[1]) * w + S[2]) * w + S[3]) * w + S[4]);
        let mut y1 = x.exp();
        let mut y2 = 1.0;
        if x > MAX_STIRLING {
            let v = go_pow(x, 0.5 * x - 0.25);
            (y1, y2) = (v, v / y1);
        } else {
            y1 = go_pow(x, x - 0.5) / y1;
        }
        (y1, SQRT_TWO_PI * w * y2)
    }
    let is_neg_int = x < 0.0 && x.fract() == 0.0;
    if is_neg_int || x == f64::NEG_INFINITY || x.is_nan() {
        return f64::NAN;
    }
    if x == f64::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f64::INFINITY.copysign(x);
    }
    let q = x.abs();
    let mut p = q.floor();
    if q > 33.0 {
        if x >= 0.0 {
            let (y1, y2) = stirling(x);
            return y1 * y2;
        }
        let sign = if (p as i64) & 1 == 0 { -1.0 } else { 1.0 };
        let mut z = q - p;
        if z > 0.5 {
            p += 1.0;
            z = q - p;
        }
        let z = q * go_trig::sin(std::f64::consts::PI * z);
        if z == 0.0 {
            return f64::INFINITY * sign;
        }
        let (sq1, sq2) = stirling(q);
        let absz = z.abs();
        let d = absz * sq1 * sq2;
        let z = if d.is_infinite() {
            std::f64::consts::PI / absz / sq1 / sq2
        } else {
            std::f64::consts::PI / d
        };
        return sign * z;
    }
    let mut x = x;
    let mut z = 1.0;
    while x >= 3.0 {
        x -= 1.0;
        z *= x;
    }
    let small = |x: f64, z: f64| {
        if x == 0.0 {
            f64::INFINITY
        } else {
            z / ((1.0 + EULER * x) * x)
        }
    };
    while x < 0.0 {
        if x > -1e-09 {
            return small(x, z);
        }
        z /= x;
        x += 1.0;
    }
    while x < 2.0 {
        if x < 1e-09 {
            return small(x, z);
        }
        z /= x;
        x += 1.0;
    }
    if x == 2.0 {
        return z;
    }
    let x = x - 2.0;
    let p = (((((x * P[0] + P[1]) * x + P[2]) * x + P[3]) * x + P[4]) * x + P[5]) * x + P[6];
    let q = ((((((x * Q[0] + Q[1]) * x + Q[2]) * x + Q[3]) * x + Q[4]) * x + Q[5]) * x + Q[6]) * x
        + Q[7];
    z * p / q
}

/// Go's `math.Cbrt` (the older fdlibm `s_cbrt.c`): a 5-bit estimate from
/// the exponent, a rational step to 23 bits, one Newton step.
// The constants are written as published (they round to the same doubles).
#[allow(clippy::excessive_precision)]
fn go_cbrt(x: f64) -> f64 {
    const B1: u64 = 715094163;
    const B2: u64 = 696219795;
    const C: f64 = 5.42857142857142815906e-01;
    const D: f64 = -7.05306122448979611050e-01;
    const E: f64 = 1.41428571428571436819e+00;
    const F: f64 = 1.60714285714285720630e+00;
    const G: f64 = 3.57142857142857150787e-01;
    const SMALLEST_NORMAL: f64 = 2.22507385850720138309e-308;
    if x == 0.0 || x.is_nan() || x.is_infinite() {
        return x;
    }
    let (x, negative) = if x < 0.0 { (-x, true) } else { (x, false) };
    let mut t = f64::from_bits(x.to_bits() / 3 + (B1 << 32));
    if x < SMALLEST_NORMAL {
        t = (1u64 << 54) as f64 * x;
        t = f64::from_bits(t.to_bits() / 3 + (B2 << 32));
    }
    let r = t * t / x;
    let s = C + r * t;
    t *= G + F / (s + E + D / s);
    t = f64::from_bits((t.to_bits() & (0xFFFFFFFFC << 28)) + (1 << 30));
    let s = t * t;
    let r = x / s;
    let w = t + t;
    let r = (r - t) / (w + r);
    t += t * r;
    if negative { -t } else { t }
}

/// Go's `math.Atan` (Cephes): a rational approximation on [0, 0.66] after
/// range reduction.
// The constants are written as published (they round to the same doubles).
#[allow(clippy::excessive_precision)]
fn go_atan(x: f64) -> f64 {
    fn xatan(x: f64) -> f64 {
        const P0: f64 = -8.750608600031904122785e-01;
        const P1: f64 = -1.615753718733365076637e+01;
        const P2: f64 = -7.500855792314704667340e+01;
        const P3: f64 = -1.228866684490136173410e+02;
        const P4: f64 = -6.485021904942025371773e+01;
        const Q0: f64 = 2.485846490142306297962e+01;
        const Q1: f64 = 1.650270098316988542046e+02;
        const Q2: f64 = 4.328810604912902668951e+02;
        const Q3: f64 = 4.853903996359136964868e+02;
        const Q4: f64 = 1.945506571482613964425e+02;
        let z = x * x;
        let z = z * ((((P0 * z + P1) * z + P2) * z + P3) * z + P4)
            / (((((z + Q0) * z + Q1) * z + Q2) * z + Q3) * z + Q4);
        x * z + x
    }
    fn satan(x: f64) -> f64 {
        use std::f64::consts::PI;
        const MOREBITS: f64 = 6.123233995736765886130e-17;
        const TAN3PIO8: f64 = 2.41421356237309504880;
        if x <= 0.66 {
            return xatan(x);
        }
        if x > TAN3PIO8 {
            return PI / 2.0 - xatan(1.0 / x) + MOREBITS;
        }
        PI / 4.0 + xatan((x - 1.0) / (x + 1.0)) + 0.5 * MOREBITS
    }
    if x == 0.0 || x.is_nan() {
        return x;
    }
    if x > 0.0 { satan(x) } else { -satan(-x) }
}

/// Go's `math.Asin`, through its `atan`.
fn go_asin(x: f64) -> f64 {
    use std::f64::consts::PI;
    if x == 0.0 || x.is_nan() {
        return x;
    }
    let (x, negative) = if x < 0.0 { (-x, true) } else { (x, false) };
    if x > 1.0 {
        return f64::NAN;
    }
    let t = (1.0 - x * x).sqrt();
    let t = if x > 0.7 {
        PI / 2.0 - go_atan(t / x)
    } else {
        go_atan(x / t)
    };
    if negative { -t } else { t }
}

/// Go's `math.Atan2`: special cases, then the quadrant around `atan(y/x)`.
fn go_atan2(y: f64, x: f64) -> f64 {
    use std::f64::consts::PI;
    if y.is_nan() || x.is_nan() {
        return f64::NAN;
    }
    if y == 0.0 {
        return if x >= 0.0 && !x.is_sign_negative() {
            0.0f64.copysign(y)
        } else {
            PI.copysign(y)
        };
    }
    if x == 0.0 {
        return (PI / 2.0).copysign(y);
    }
    if x.is_infinite() {
        return match (x > 0.0, y.is_infinite()) {
            (true, true) => (PI / 4.0).copysign(y),
            (true, false) => 0.0f64.copysign(y),
            (false, true) => (3.0 * PI / 4.0).copysign(y),
            (false, false) => PI.copysign(y),
        };
    }
    if y.is_infinite() {
        return (PI / 2.0).copysign(y);
    }
    let q = go_atan(y / x);
    if x < 0.0 {
        return if q <= 0.0 { q + PI } else { q - PI };
    }
    q
}

/// Go's `math.Hypot`: `p·sqrt(1+(q/p)²)` with `p` the larger magnitude.
fn go_hypot(p: f64, q: f64) -> f64 {
    let (mut p, mut q) = (p.abs(), q.abs());
    if p.is_infinite() || q.is_infinite() {
        return f64::INFINITY;
    }
    if p.is_nan() || q.is_nan() {
        return f64::NAN;
    }
    if p < q {
        std::mem::swap(&mut p, &mut q);
    }
    if p == 0.0 {
        return 0.0;
    }
    let q = q / p;
    p * (1.0 + q * q).sqrt()
}

fn is_odd_int(y: f64) -> bool {
    if y.abs() >= (1u64 << 53) as f64 {
        return false;
    }
    y.trunc() == y && (y as i64) & 1 == 1
}

/// Go's `math.Pow`: special cases, then the fractional part of the exponent
/// through `exp(yf·log(x))` and the integer part by repeated squaring on the
/// mantissa, so integer powers are computed by multiplication as Go does
/// (`pow(-0.3, 3.0)` is `-0.027`, not the correctly rounded
/// `-0.026999999999999996`).
fn go_pow(x: f64, y: f64) -> f64 {
    if y == 0.0 || x == 1.0 {
        return 1.0;
    }
    if y == 1.0 {
        return x;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 {
        return if y < 0.0 {
            if is_odd_int(y) {
                f64::INFINITY.copysign(x)
            } else {
                f64::INFINITY
            }
        } else if is_odd_int(y) {
            x
        } else {
            0.0
        };
    }
    if y.is_infinite() {
        return if x == -1.0 {
            1.0
        } else if (x.abs() < 1.0) == (y > 0.0) {
            0.0
        } else {
            f64::INFINITY
        };
    }
    if x.is_infinite() {
        if x < 0.0 {
            return go_pow(1.0 / x, -y);
        }
        return if y < 0.0 { 0.0 } else { f64::INFINITY };
    }
    if y == 0.5 {
        return x.sqrt();
    }
    if y == -0.5 {
        return 1.0 / x.sqrt();
    }
    let (mut yi, mut yf) = (y.abs().trunc(), y.abs().fract());
    if yf != 0.0 && x < 0.0 {
        return f64::NAN;
    }
    if yi >= 9_223_372_036_854_775_808.0 {
        return if x == -1.0 {
            1.0
        } else if (x.abs() < 1.0) == (y > 0.0) {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let mut a1 = 1.0;
    let mut ae: i64 = 0;
    if yf != 0.0 {
        if yf > 0.5 {
            yf -= 1.0;
            yi += 1.0;
        }
        a1 = (yf * go_log(x)).exp();
    }
    let (mut x1, xe) = libm::frexp(x);
    let mut xe = i64::from(xe);
    let mut i = yi as i64;
    while i != 0 {
        if !(-(1 << 12)..=(1 << 12)).contains(&xe) {
            ae += xe;
            break;
        }
        if i & 1 == 1 {
            a1 *= x1;
            ae += xe;
        }
        x1 *= x1;
        xe <<= 1;
        if x1 < 0.5 {
            x1 += x1;
            xe -= 1;
        }
        i >>= 1;
    }
    if y < 0.0 {
        a1 = 1.0 / a1;
        ae = -ae;
    }
    libm::ldexp(
        a1,
        ae.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
    )
}

fn jn(n: i64, x: f64) -> f64 {
    libm::jn(n as i32, x)
}

fn yn(n: i64, x: f64) -> f64 {
    libm::yn(n as i32, x)
}

/// Go's `strings.ToUpper`/`ToLower` map rune by rune (no multi-rune
/// expansions such as `ß` → `SS`).
fn map_runes(s: &str, upper: bool) -> String {
    s.chars()
        .map(|c| {
            // The one simple lowercase mapping that differs from the first
            // character of the full one.
            if !upper && c == 'İ' {
                return 'i';
            }
            let mut m: Box<dyn Iterator<Item = char>> = if upper {
                Box::new(c.to_uppercase())
            } else {
                Box::new(c.to_lowercase())
            };
            match (m.next(), m.next()) {
                (Some(one), None) => one,
                _ => c,
            }
        })
        .collect()
}

fn byte_index(found: Option<usize>) -> i64 {
    found.map_or(-1, |i| i as i64)
}

const FUNCS: &[(&str, Kind)] = &[
    ("bool", Kind::Bool),
    ("int", Kind::Int),
    ("float", Kind::Float),
    ("string", Kind::String),
    ("duration", Kind::Duration),
    ("abs", Kind::Math1(f64::abs)),
    (
        "acos",
        Kind::Math1(|x| std::f64::consts::PI / 2.0 - go_asin(x)),
    ),
    ("acosh", Kind::Math1(libm::acosh)),
    ("asin", Kind::Math1(go_asin)),
    ("asinh", Kind::Math1(libm::asinh)),
    ("atan", Kind::Math1(go_atan)),
    ("atan2", Kind::Math2(go_atan2)),
    ("atanh", Kind::Math1(libm::atanh)),
    ("cbrt", Kind::Math1(go_cbrt)),
    ("ceil", Kind::Math1(f64::ceil)),
    ("cos", Kind::Math1(go_trig::cos)),
    ("cosh", Kind::Math1(go_cosh)),
    ("erf", Kind::Math1(libm::erf)),
    ("erfc", Kind::Math1(libm::erfc)),
    ("exp", Kind::Math1(f64::exp)),
    ("exp2", Kind::Math1(go_exp2)),
    ("expm1", Kind::Math1(f64::exp_m1)),
    ("floor", Kind::Math1(f64::floor)),
    ("gamma", Kind::Math1(go_gamma)),
    ("hypot", Kind::Math2(go_hypot)),
    ("j0", Kind::Math1(libm::j0)),
    ("j1", Kind::Math1(libm::j1)),
    ("jn", Kind::MathIF(jn)),
    ("log", Kind::Math1(go_log)),
    (
        "log10",
        Kind::Math1(|x| go_log(x) * std::f64::consts::LOG10_E),
    ),
    ("log1p", Kind::Math1(f64::ln_1p)),
    ("log2", Kind::Math1(go_log2)),
    ("logb", Kind::Math1(go_logb)),
    ("max", Kind::Math2(go_max)),
    ("min", Kind::Math2(go_min)),
    ("mod", Kind::Math2(|x, y| x % y)),
    ("pow", Kind::Math2(go_pow)),
    ("pow10", Kind::MathI(go_pow10)),
    ("sin", Kind::Math1(go_trig::sin)),
    ("sinh", Kind::Math1(go_sinh)),
    ("sqrt", Kind::Math1(f64::sqrt)),
    ("tan", Kind::Math1(go_trig::tan)),
    ("tanh", Kind::Math1(go_tanh)),
    ("trunc", Kind::Math1(f64::trunc)),
    ("y0", Kind::Math1(libm::y0)),
    ("y1", Kind::Math1(libm::y1)),
    ("yn", Kind::MathIF(yn)),
    ("strContains", Kind::Str2Bool(|s, t| s.contains(t))),
    (
        "strContainsAny",
        Kind::Str2Bool(|s, t| s.chars().any(|c| t.contains(c))),
    ),
    (
        "strCount",
        Kind::Str2Int(|s, t| {
            if t.is_empty() {
                s.chars().count() as i64 + 1
            } else {
                s.matches(t).count() as i64
            }
        }),
    ),
    ("strHasPrefix", Kind::Str2Bool(|s, t| s.starts_with(t))),
    ("strHasSuffix", Kind::Str2Bool(|s, t| s.ends_with(t))),
    ("strIndex", Kind::Str2Int(|s, t| byte_index(s.find(t)))),
    (
        "strIndexAny",
        Kind::Str2Int(|s, t| byte_index(s.find(|c| t.contains(c)))),
    ),
    ("strLastIndex", Kind::Str2Int(|s, t| byte_index(s.rfind(t)))),
    (
        "strLastIndexAny",
        Kind::Str2Int(|s, t| byte_index(s.rfind(|c| t.contains(c)))),
    ),
    ("strLength", Kind::StrLength),
    ("strReplace", Kind::StrReplace),
    ("strSubstring", Kind::StrSubstring),
    ("strToLower", Kind::Str1Str(|s| map_runes(s, false))),
    ("strToUpper", Kind::Str1Str(|s| map_runes(s, true))),
    (
        "strTrim",
        Kind::Str2Str(|s, t| s.trim_matches(|c| t.contains(c)).to_string()),
    ),
    (
        "strTrimLeft",
        Kind::Str2Str(|s, t| s.trim_start_matches(|c| t.contains(c)).to_string()),
    ),
    (
        "strTrimPrefix",
        Kind::Str2Str(|s, t| s.strip_prefix(t).unwrap_or(s).to_string()),
    ),
    (
        "strTrimRight",
        Kind::Str2Str(|s, t| s.trim_end_matches(|c| t.contains(c)).to_string()),
    ),
    ("strTrimSpace", Kind::Str1Str(|s| s.trim().to_string())),
    (
        "strTrimSuffix",
        Kind::Str2Str(|s, t| s.strip_suffix(t).unwrap_or(s).to_string()),
    ),
    ("regexReplace", Kind::RegexReplace),
    ("isPresent", Kind::IsPresent),
    ("unixNano", Kind::UnixNano),
    ("minute", Kind::Minute),
    ("hour", Kind::Hour),
    ("weekday", Kind::Weekday),
    ("day", Kind::Day),
    ("month", Kind::Month),
    ("year", Kind::Year),
    ("now", Kind::Now),
    ("humanBytes", Kind::HumanBytes),
    ("if", Kind::If),
    ("sigma", Kind::Sigma),
    ("count", Kind::Count),
    ("spread", Kind::Spread),
    ("rand", Kind::Rand),
];

/// The names of every built-in function.
pub fn names() -> impl Iterator<Item = &'static str> {
    FUNCS.iter().map(|(n, _)| *n)
}

/// The state of the stateful functions of one compiled expression (or nested
/// lambda): one instance per function name, as Kapacitor keeps them.
#[derive(Debug, Clone)]
pub(crate) struct FuncState {
    sigma: Sigma,
    count: i64,
    spread_min: f64,
    spread_max: f64,
    rand: Option<rand::rngs::StdRng>,
}

#[derive(Debug, Clone, Default)]
struct Sigma {
    mean: f64,
    variance: f64,
    m2: f64,
    n: f64,
}

impl Default for FuncState {
    fn default() -> Self {
        FuncState {
            sigma: Sigma::default(),
            count: 0,
            spread_min: f64::INFINITY,
            spread_max: f64::NEG_INFINITY,
            rand: None,
        }
    }
}

impl FuncState {
    /// Kapacitor's `Reset` of each function (`rand`'s is a no-op).
    pub(crate) fn reset(&mut self) {
        let rand = self.rand.take();
        *self = FuncState {
            rand,
            ..FuncState::default()
        };
    }
}

/// The local broken-down time of `ns` (Kapacitor evaluates `"time"` as
/// `time.Local()`: the agent's time zone, from `TZ` or `/etc/localtime`).
fn local_time(ns: i64) -> Option<libc::tm> {
    let secs = ns.div_euclid(1_000_000_000) as libc::time_t;
    // SAFETY: `localtime_r` writes into the zeroed `tm` we own and reads
    // only `secs`; it is the thread-safe variant.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return None;
        }
        Some(tm)
    }
}

/// go-humanize's `Bytes`: SI units, one decimal below 10.
fn human_bytes(s: u64) -> String {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if s < 10 {
        return format!("{s} B");
    }
    let e = ((s as f64).ln() / 1000f64.ln()).floor();
    let suffix = SIZES[(e as usize).min(SIZES.len() - 1)];
    let val = ((s as f64) / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {suffix}")
    } else {
        format!("{val:.0} {suffix}")
    }
}

const ORDINALS: [&str; 4] = ["first", "second", "third", "fourth"];

fn arg_str<'v, 'a>(args: &'v [Val<'a>], i: usize, name: &str) -> Result<&'v str, String> {
    match &args[i] {
        Val::Str(s) => Ok(s),
        other => Err(format!(
            "cannot pass {} as {} arg to {name}, must be string",
            other.go_type(),
            ORDINALS[i]
        )),
    }
}

fn arg_int(args: &[Val<'_>], i: usize, name: &str) -> Result<i64, String> {
    match &args[i] {
        Val::Int(n) => Ok(*n),
        other => Err(format!(
            "cannot pass {} as {} arg to {name}, must be int",
            other.go_type(),
            ORDINALS[i]
        )),
    }
}

impl Func {
    /// The built-in function called `name`.
    pub(crate) fn lookup(name: &str) -> Option<Func> {
        FUNCS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(name, kind)| Func { name, kind })
    }

    /// The result type for these argument types, if the signature allows them
    /// (Kapacitor's `Signature()` maps).
    pub(crate) fn signature(&self, args: &[Type]) -> Option<Type> {
        use Type::*;
        let one = |allowed: &[Type], ret: Type| {
            (args.len() == 1 && allowed.contains(&args[0])).then_some(ret)
        };
        match self.kind {
            Kind::Bool => one(&[Bool, String, Int, Float], Bool),
            Kind::Int => one(&[Bool, String, Int, Float], Int),
            Kind::Float => one(&[Bool, String, Int, Float], Float),
            Kind::String => one(&[Bool, String, Int, Float, Duration], String),
            Kind::Duration => match args {
                [Duration] | [Int | Float | String, Duration] => Some(Duration),
                _ => None,
            },
            Kind::Math1(_) | Kind::Sigma | Kind::Spread => one(&[Float], Float),
            Kind::Math2(_) => (args == [Float, Float]).then_some(Float),
            Kind::MathI(_) => one(&[Int], Float),
            Kind::MathIF(_) => (args == [Int, Float]).then_some(Float),
            Kind::Str2Bool(_) => (args == [String, String]).then_some(Bool),
            Kind::Str2Int(_) => (args == [String, String]).then_some(Int),
            Kind::Str2Str(_) => (args == [String, String]).then_some(String),
            Kind::Str1Str(_) => one(&[String], String),
            Kind::StrLength => one(&[String], Int),
            Kind::StrReplace => (args == [String, String, String, Int]).then_some(String),
            Kind::StrSubstring => (args == [String, Int, Int]).then_some(String),
            Kind::RegexReplace => (args == [Regex, String, String]).then_some(String),
            Kind::IsPresent => one(&[Missing, Bool, String, Int, Float], Bool),
            Kind::UnixNano
            | Kind::Minute
            | Kind::Hour
            | Kind::Weekday
            | Kind::Day
            | Kind::Month
            | Kind::Year => one(&[Time], Int),
            Kind::Now => args.is_empty().then_some(Time),
            Kind::HumanBytes => one(&[Float, Int], String),
            Kind::If => match args {
                [Bool, a, b] if a == b && *a != Missing => Some(*a),
                _ => None,
            },
            Kind::Count => args.is_empty().then_some(Int),
            Kind::Rand => matches!(args, [] | [Int]).then_some(Int),
        }
    }

    /// Calls the function as Kapacitor's `Call` does: no signature check,
    /// Go's own argument checks and messages. `now` is the wall clock in ns.
    pub(crate) fn call<'a>(
        &self,
        args: &mut [Val<'a>],
        st: &mut FuncState,
        now: i64,
    ) -> Result<Val<'a>, String> {
        let name = self.name;
        let exactly = |n: usize, word: &str| -> Result<(), String> {
            if args.len() != n {
                Err(format!("{name} expects exactly {word}"))
            } else {
                Ok(())
            }
        };
        let time_arg = |args: &[Val<'_>]| -> Result<i64, String> {
            exactly(1, "one argument")?;
            match &args[0] {
                Val::Time(t) => Ok(*t),
                other => Err(format!("cannot convert {} to time.Time", other.go_type())),
            }
        };
        let local =
            |t: i64| local_time(t).ok_or_else(|| format!("{name}: time {t} is out of range"));
        Ok(match self.kind {
            Kind::Bool => {
                exactly(1, "one argument")?;
                match &args[0] {
                    Val::Bool(b) => Val::Bool(*b),
                    Val::Str(s) => Val::Bool(parse_bool(s)?),
                    Val::Int(0) => Val::Bool(false),
                    Val::Int(1) => Val::Bool(true),
                    Val::Int(i) => return Err(format!("cannot convert {i} to boolean")),
                    Val::Float(f) if *f == 0.0 => Val::Bool(false),
                    Val::Float(f) if *f == 1.0 => Val::Bool(true),
                    Val::Float(f) => {
                        return Err(format!("cannot convert {} to boolean", format_float_f(*f)));
                    }
                    other => return Err(format!("cannot convert {} to boolean", other.go_type())),
                }
            }
            Kind::Int => {
                exactly(1, "one argument")?;
                match &args[0] {
                    Val::Int(i) => Val::Int(*i),
                    Val::Float(f) => Val::Int(go_f64_to_i64(*f)),
                    Val::Str(s) => Val::Int(parse_int(s)?),
                    Val::Bool(b) => Val::Int(*b as i64),
                    Val::Duration(d) => Val::Int(*d),
                    other => return Err(format!("cannot convert {} to integer", other.go_type())),
                }
            }
            Kind::Float => {
                exactly(1, "one argument")?;
                match &args[0] {
                    Val::Int(i) => Val::Float(*i as f64),
                    Val::Float(f) => Val::Float(*f),
                    Val::Str(s) => Val::Float(parse_float(s)?),
                    Val::Bool(b) => Val::Float(if *b { 1.0 } else { 0.0 }),
                    other => return Err(format!("cannot convert {} to float", other.go_type())),
                }
            }
            Kind::String => {
                exactly(1, "one argument")?;
                Val::Str(Cow::Owned(match &args[0] {
                    Val::Int(i) => i.to_string(),
                    Val::Float(f) => format_float_f(*f),
                    Val::Bool(b) => b.to_string(),
                    Val::Duration(d) => format_duration(*d),
                    Val::Str(s) => return Ok(Val::Str(s.clone())),
                    other => return Err(format!("cannot convert {} to string", other.go_type())),
                }))
            }
            Kind::Duration => {
                if args.len() != 1 && args.len() != 2 {
                    return Err("duration expects one or two arguments duration(value, unit) where unit is optional depending on the type of value.".into());
                }
                let unit = |args: &[Val<'_>]| -> Result<i64, String> {
                    match args.get(1) {
                        None => {
                            Err("duration expects unit argument for int and float values".into())
                        }
                        Some(Val::Duration(u)) => Ok(*u),
                        Some(other) => {
                            Err(format!("invalid duration unit type: {}", other.go_type()))
                        }
                    }
                };
                match &args[0] {
                    Val::Duration(d) => Val::Duration(*d),
                    Val::Int(i) => Val::Duration(i.wrapping_mul(unit(args)?)),
                    Val::Float(f) => Val::Duration(go_f64_to_i64(f * unit(args)? as f64)),
                    Val::Str(s) => Val::Duration(
                        parse_influx_duration(s)
                            .ok_or_else(|| format!("invalid duration string {s:?}"))?,
                    ),
                    other => return Err(format!("cannot convert {} to duration", other.go_type())),
                }
            }
            Kind::Math1(f) => {
                exactly(1, "one argument")?;
                match &args[0] {
                    Val::Float(x) => Val::Float(f(*x)),
                    other => {
                        return Err(format!(
                            "cannot pass {} to {name}, must be float64",
                            other.go_type()
                        ));
                    }
                }
            }
            Kind::Math2(f) => {
                exactly(2, "two arguments")?;
                match (&args[0], &args[1]) {
                    (Val::Float(x), Val::Float(y)) => Val::Float(f(*x, *y)),
                    (Val::Float(_), other) | (other, _) => {
                        return Err(format!(
                            "cannot pass {} to {name}, must be float64",
                            other.go_type()
                        ));
                    }
                }
            }
            Kind::MathI(f) => {
                // Kapacitor's message says "two" here; kept.
                exactly(1, "two arguments")?;
                match &args[0] {
                    Val::Int(n) => Val::Float(f(*n)),
                    other => {
                        return Err(format!(
                            "cannot pass {} to {name}, must be int64",
                            other.go_type()
                        ));
                    }
                }
            }
            Kind::MathIF(f) => {
                exactly(2, "two arguments")?;
                match (&args[0], &args[1]) {
                    (Val::Int(n), Val::Float(x)) => Val::Float(f(*n, *x)),
                    (Val::Int(_), other) => {
                        return Err(format!(
                            "cannot pass {} to {name} as second arg, must be float64",
                            other.go_type()
                        ));
                    }
                    (other, _) => {
                        return Err(format!(
                            "cannot pass {} to {name} as first arg, must be int64",
                            other.go_type()
                        ));
                    }
                }
            }
            Kind::Str2Bool(f) => {
                exactly(2, "two arguments")?;
                Val::Bool(f(arg_str(args, 0, name)?, arg_str(args, 1, name)?))
            }
            Kind::Str2Int(f) => {
                exactly(2, "two arguments")?;
                Val::Int(f(arg_str(args, 0, name)?, arg_str(args, 1, name)?))
            }
            Kind::Str2Str(f) => {
                exactly(2, "two arguments")?;
                Val::Str(Cow::Owned(f(
                    arg_str(args, 0, name)?,
                    arg_str(args, 1, name)?,
                )))
            }
            Kind::Str1Str(f) => {
                exactly(1, "one argument")?;
                Val::Str(Cow::Owned(f(arg_str(args, 0, name)?)))
            }
            Kind::StrLength => {
                exactly(1, "one argument")?;
                Val::Int(arg_str(args, 0, name)?.len() as i64)
            }
            Kind::StrReplace => {
                exactly(4, "four arguments")?;
                let (s, old, new) = (
                    arg_str(args, 0, name)?,
                    arg_str(args, 1, name)?,
                    arg_str(args, 2, name)?,
                );
                let n = arg_int(args, 3, name)?;
                Val::Str(Cow::Owned(if n < 0 {
                    s.replace(old, new)
                } else {
                    s.replacen(old, new, n as usize)
                }))
            }
            Kind::StrSubstring => {
                exactly(3, "three arguments")?;
                let s = arg_str(args, 0, name)?;
                let (start, stop) = (arg_int(args, 1, name)?, arg_int(args, 2, name)?);
                if start < 0 {
                    return Err(format!("found negative index for strSubstring: {start}"));
                }
                if stop < 0 {
                    return Err(format!("found negative index for strSubstring: {stop}"));
                }
                if stop as usize >= s.len() {
                    return Err(format!(
                        "stop index too large for string in strSubstring: {stop}"
                    ));
                }
                if start > stop {
                    return Err(format!("slice bounds out of range [{start}:{stop}]"));
                }
                // Byte offsets, as Go slices; a cut inside a character keeps
                // the valid part (Go would keep the raw bytes).
                Val::Str(Cow::Owned(
                    String::from_utf8_lossy(&s.as_bytes()[start as usize..stop as usize])
                        .into_owned(),
                ))
            }
            Kind::RegexReplace => {
                exactly(3, "three arguments")?;
                let re = match &args[0] {
                    Val::Regex(r) => *r,
                    other => {
                        return Err(format!(
                            "cannot pass {} as first arg to regexReplace, must be regex",
                            other.go_type()
                        ));
                    }
                };
                Val::Str(Cow::Owned(
                    re.replace_all(arg_str(args, 1, name)?, arg_str(args, 2, name)?),
                ))
            }
            Kind::IsPresent => {
                if args.len() != 1 {
                    return Err("isMissing expects exactly one argument".into());
                }
                Val::Bool(!matches!(args[0], Val::Missing))
            }
            Kind::UnixNano => Val::Int(time_arg(args)?),
            Kind::Minute => Val::Int(local(time_arg(args)?)?.tm_min as i64),
            Kind::Hour => Val::Int(local(time_arg(args)?)?.tm_hour as i64),
            Kind::Weekday => Val::Int(local(time_arg(args)?)?.tm_wday as i64),
            Kind::Day => Val::Int(local(time_arg(args)?)?.tm_mday as i64),
            Kind::Month => Val::Int(local(time_arg(args)?)?.tm_mon as i64 + 1),
            Kind::Year => Val::Int(local(time_arg(args)?)?.tm_year as i64 + 1900),
            Kind::Now => {
                if !args.is_empty() {
                    return Err("now expects exactly zero argument".into());
                }
                Val::Time(now)
            }
            Kind::HumanBytes => {
                exactly(1, "one argument")?;
                Val::Str(Cow::Owned(match &args[0] {
                    Val::Float(f) => human_bytes(go_f64_to_u64(*f)),
                    Val::Int(i) => human_bytes(*i as u64),
                    other => {
                        return Err(format!("cannot convert {} to humanBytes", other.go_type()));
                    }
                }))
            }
            Kind::If => {
                if args.len() != 3 {
                    return Err("if expects exactly three arguments".into());
                }
                let Val::Bool(cond) = args[0] else {
                    return Err(format!(
                        "first argument to if must be a condition with type of bool - got {}",
                        go_type_short(&args[0])
                    ));
                };
                if std::mem::discriminant(&args[1]) != std::mem::discriminant(&args[2]) {
                    return Err(format!(
                        "Different return types are not supported - second argument is {} and third argument is {}",
                        args[1].go_type(),
                        args[2].go_type()
                    ));
                }
                std::mem::replace(&mut args[if cond { 1 } else { 2 }], Val::Nil)
            }
            Kind::Sigma => {
                exactly(1, "one argument")?;
                let Val::Float(x) = args[0] else {
                    return Err("value is not a float".into());
                };
                let s = &mut st.sigma;
                s.n += 1.0;
                let delta = x - s.mean;
                s.mean += delta / s.n;
                s.m2 += delta * (x - s.mean);
                s.variance = s.m2 / (s.n - 1.0);
                if s.n < 2.0 || s.variance == 0.0 {
                    Val::Float(0.0)
                } else {
                    Val::Float((x - s.mean).abs() / s.variance.sqrt())
                }
            }
            Kind::Count => {
                st.count = st.count.wrapping_add(1);
                Val::Int(st.count)
            }
            Kind::Spread => {
                exactly(1, "one argument")?;
                let Val::Float(x) = args[0] else {
                    return Err("value is not a float".into());
                };
                if x < st.spread_min {
                    st.spread_min = x;
                }
                if x > st.spread_max {
                    st.spread_max = x;
                }
                Val::Float(st.spread_max - st.spread_min)
            }
            Kind::Rand => {
                if args.len() > 1 {
                    return Err("rand expects zero or one argument".into());
                }
                let rng = st.rand.get_or_insert_with(rand::rngs::StdRng::from_entropy);
                match args.first() {
                    None => Val::Int((rng.r#gen::<u64>() & (i64::MAX as u64)) as i64),
                    Some(Val::Int(n)) => {
                        let n = *n as u64;
                        if n == 0 {
                            return Err("rand: argument must be positive".into());
                        }
                        Val::Int((rng.gen_range(0..n) & (i64::MAX as u64)) as i64)
                    }
                    Some(_) => return Err("value is not an int".into()),
                }
            }
        })
    }
}

/// Go's `%T` for the `if` condition message (`int`, as Go prints `int64`
/// values from a Go-level call with an untyped constant).
fn go_type_short(v: &Val<'_>) -> &'static str {
    match v {
        Val::Int(_) => "int",
        other => other.go_type(),
    }
}

/// Go's `uint64(f)` on amd64.
fn go_f64_to_u64(f: f64) -> u64 {
    if (9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&f) {
        f as u64
    } else {
        go_f64_to_i64(f) as u64
    }
}

#[cfg(test)]
mod tests;
