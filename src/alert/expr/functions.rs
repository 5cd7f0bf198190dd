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
    ("cbrt", Kind::Math1(f64::cbrt)),
    ("ceil", Kind::Math1(f64::ceil)),
    ("cos", Kind::Math1(f64::cos)),
    ("cosh", Kind::Math1(f64::cosh)),
    ("erf", Kind::Math1(libm::erf)),
    ("erfc", Kind::Math1(libm::erfc)),
    ("exp", Kind::Math1(f64::exp)),
    ("exp2", Kind::Math1(f64::exp2)),
    ("expm1", Kind::Math1(f64::exp_m1)),
    ("floor", Kind::Math1(f64::floor)),
    ("gamma", Kind::Math1(libm::tgamma)),
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
    ("sin", Kind::Math1(libm::sin)),
    ("sinh", Kind::Math1(f64::sinh)),
    ("sqrt", Kind::Math1(f64::sqrt)),
    ("tan", Kind::Math1(f64::tan)),
    ("tanh", Kind::Math1(f64::tanh)),
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
mod tests {
    use super::*;

    fn call<'a>(name: &str, mut args: Vec<Val<'a>>) -> Result<Val<'a>, String> {
        Func::lookup(name)
            .unwrap()
            .call(&mut args, &mut FuncState::default(), 0)
    }

    fn s(x: &str) -> Val<'_> {
        Val::Str(Cow::Borrowed(x))
    }

    #[test]
    fn go_math_edges() {
        assert_eq!(go_max(-0.0, 0.0).to_bits(), 0.0f64.to_bits());
        assert_eq!(go_min(-0.0, 0.0).to_bits(), (-0.0f64).to_bits());
        assert!(go_max(1.0, f64::NAN).is_nan());
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert_eq!(go_pow10(2), 100.0);
        assert_eq!(go_pow10(-1), 0.1);
        assert_eq!(go_pow10(400), f64::INFINITY);
        assert_eq!(go_pow10(-400), 0.0);
        assert_eq!(go_logb(8.0), 3.0);
        assert_eq!(go_logb(0.0), f64::NEG_INFINITY);
    }

    #[test]
    fn human_bytes_like_go_humanize() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(9), "9 B");
        assert_eq!(human_bytes(82_854_982), "83 MB");
        assert_eq!(human_bytes(1_000), "1.0 kB");
        assert_eq!(human_bytes(1_500), "1.5 kB");
    }

    #[test]
    fn strings_like_go() {
        assert!(matches!(
            call("strCount", vec![s("abc"), s("")]),
            Ok(Val::Int(4))
        ));
        assert!(matches!(
            call("strLastIndex", vec![s("abc"), s("")]),
            Ok(Val::Int(3))
        ));
        assert!(matches!(
            call("strIndexAny", vec![s("abc"), s("")]),
            Ok(Val::Int(-1))
        ));
        let Ok(Val::Str(up)) = call("strToUpper", vec![s("straße")]) else {
            panic!()
        };
        assert_eq!(up, "STRAßE");
        let Ok(Val::Str(r)) = call("strReplace", vec![s("aaa"), s("a"), s("b"), Val::Int(2)])
        else {
            panic!()
        };
        assert_eq!(r, "bba");
        let Ok(Val::Str(t)) = call("strTrimSpace", vec![s("\u{a0} x \n")]) else {
            panic!()
        };
        assert_eq!(t, "x");
        assert_eq!(
            call("strSubstring", vec![s("abc"), Val::Int(2), Val::Int(1)]).unwrap_err(),
            "slice bounds out of range [2:1]"
        );
    }

    #[test]
    fn stateful_functions_keep_and_reset_state() {
        let f = Func::lookup("spread").unwrap();
        let mut st = FuncState::default();
        for (x, want) in [(3.0, 0.0), (5.0, 2.0), (1.0, 4.0)] {
            assert!(
                matches!(f.call(&mut [Val::Float(x)], &mut st, 0), Ok(Val::Float(v)) if v == want)
            );
        }
        st.reset();
        assert!(
            matches!(f.call(&mut [Val::Float(9.0)], &mut st, 0), Ok(Val::Float(v)) if v == 0.0)
        );
        let r = Func::lookup("rand").unwrap();
        for _ in 0..50 {
            assert!(matches!(
                r.call(&mut [Val::Int(3)], &mut st, 0),
                Ok(Val::Int(0..=2))
            ));
        }
    }

    #[test]
    fn time_functions_use_the_local_zone() {
        // The test process runs with whatever TZ it has: compare with libc.
        let t = 1_580_702_706_003_000_000; // 2020-02-03T04:05:06.003Z
        let tm = local_time(t).unwrap();
        assert!(
            matches!(call("hour", vec![Val::Time(t)]), Ok(Val::Int(h)) if h == tm.tm_hour as i64)
        );
        assert!(matches!(
            call("year", vec![Val::Time(t)]),
            Ok(Val::Int(2020))
        ));
        assert!(matches!(call("unixNano", vec![Val::Time(t)]), Ok(Val::Int(x)) if x == t));
        assert!(call("hour", vec![Val::Int(1)]).is_err());
    }
}
