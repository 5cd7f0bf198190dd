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
    let Ok(Val::Str(r)) = call("strReplace", vec![s("aaa"), s("a"), s("b"), Val::Int(2)]) else {
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
        assert!(matches!(f.call(&mut [Val::Float(x)], &mut st, 0), Ok(Val::Float(v)) if v == want));
    }
    st.reset();
    assert!(matches!(f.call(&mut [Val::Float(9.0)], &mut st, 0), Ok(Val::Float(v)) if v == 0.0));
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
    assert!(matches!(call("hour", vec![Val::Time(t)]), Ok(Val::Int(h)) if h == tm.tm_hour as i64));
    assert!(matches!(
        call("year", vec![Val::Time(t)]),
        Ok(Val::Int(2020))
    ));
    assert!(matches!(call("unixNano", vec![Val::Time(t)]), Ok(Val::Int(x)) if x == t));
    assert!(call("hour", vec![Val::Int(1)]).is_err());
}
