//! The properties the fuzz targets (`fuzz/`, cargo-fuzz) check, written once
//! so the normal test suite runs them too (short proptest runs below): every
//! parser of hostile input — the frame decoder, the Init option parser, the
//! expression parser, the template parser — takes any bytes without
//! panicking, and keeps its memory and its error text bounded.
//!
//! Each function panics when a property fails (that is how a fuzzer and a
//! test see it); on any input a correct program returns normally.

use bytes::{BufMut, BytesMut};
use prost::Message;
use tokio_util::codec::Decoder;

use crate::alert::expr::Expr;
use crate::alert::node::options;
use crate::alert::template::{Engine, Scope, Template};
use crate::alert::{Destinations, Format};
use crate::proto::{EdgeType, InitRequest};
use crate::udf::codec::AgentCodec;

/// The largest frame the decoder target allows.
const MAX_FRAME: usize = 64 * 1024;

/// Frames: `data[0]` picks the read size, the rest arrives in reads of that
/// size. Never a panic; the buffer never holds much more than the bytes that
/// arrived (an announced length is not reserved).
pub fn frames(data: &[u8]) {
    let Some((&step, bytes)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut codec = AgentCodec::new(MAX_FRAME);
    let mut buf = BytesMut::new();
    for chunk in bytes.chunks(step) {
        buf.put_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(
            buf.capacity() <= 2 * bytes.len() + 16 * 1024,
            "the decoder holds {} bytes for {} received",
            buf.capacity(),
            bytes.len()
        );
    }
    while let Ok(Some(_)) = codec.decode_eof(&mut buf) {}
}

/// Init options: `data` as an `InitRequest`, read for both edges with and
/// without configured endpoints. Never a panic; a refusal of `url` never
/// shows the option's `int_` id whole.
pub fn init_options(data: &[u8]) {
    let Ok(req) = InitRequest::decode(data) else {
        return;
    };
    let with_endpoint = Destinations {
        endpoints: [("oncall".to_string(), Format::Kapacitor)].into(),
        default_endpoint: "oncall".into(),
    };
    for config in [&Destinations::default(), &with_endpoint] {
        for edge in [EdgeType::Stream, EdgeType::Batch] {
            if let Err(e) = options::parse(edge, &req, config)
                && e.option == "url"
            {
                let shown = e.to_string();
                for o in req.options.iter().filter(|o| o.name == "url") {
                    for v in &o.values {
                        if let Some(crate::proto::option_value::Value::StringValue(s)) = &v.value
                            && let Some(i) = s.find("int_")
                        {
                            let id: String = s[i..]
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect();
                            assert!(
                                id.len() < 7 || !shown.contains(&id),
                                "{id} shown in {shown}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The longest error text an expression may produce, whatever its input.
pub const MAX_EXPR_ERROR: usize = 2048;

/// Expressions: any text compiles or is refused, with an error of bounded
/// length that still says where.
pub fn expression(data: &[u8]) {
    let src = String::from_utf8_lossy(data);
    if let Err(e) = Expr::compile(&src) {
        let text = e.to_string();
        assert!(
            text.len() <= MAX_EXPR_ERROR,
            "a {}-byte error for a {}-byte input",
            text.len(),
            src.len()
        );
    }
}

/// Templates: `data[0]` picks the engine and the scope, the rest is the
/// template text. Never a panic.
pub fn template(data: &[u8]) {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let engine = if pick & 1 == 0 {
        Engine::Text
    } else {
        Engine::Html
    };
    let scope = match (pick >> 1) % 3 {
        0 => Scope::Id,
        1 => Scope::Message,
        _ => Scope::Details,
    };
    let _ = Template::parse(engine, scope, &String::from_utf8_lossy(text));
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::proto::{OptionValue, option_value::Value};
    use crate::udf::codec::encode_frame;

    /// Valid frames of every request kind, then cut or corrupted.
    fn frame_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..64),
            0usize..200,
            any::<u8>(),
        )
            .prop_map(|(step, payload, cut, flip)| {
                let mut b = BytesMut::new();
                let req = crate::proto::Request {
                    message: Some(crate::proto::request::Message::Keepalive(
                        crate::proto::KeepaliveRequest {
                            time: payload.len() as i64,
                        },
                    )),
                };
                encode_frame(&req, &mut b);
                b.put_slice(&payload);
                encode_frame(&req, &mut b);
                let mut v = vec![step];
                v.extend_from_slice(&b);
                let i = cut % v.len();
                v[i] ^= flip;
                v
            })
    }

    fn init_bytes() -> impl Strategy<Value = Vec<u8>> {
        let names = prop::sample::select(vec![
            "url",
            "endpoint",
            "format",
            "id",
            "message",
            "details",
            "crit",
            "warn",
            "info",
            "levelFrom",
            "history",
            "flapping",
            "urgency",
            "tags",
            "all",
        ]);
        let value = prop_oneof![
            "\\PC{0,40}".prop_map(Value::StringValue),
            "(https?|ftp)://[a-z:@\\[\\]]{0,12}/integration/int_[A-Za-z0-9]{0,12}(\\?token=[a-z]{0,6})?"
                .prop_map(Value::StringValue),
            any::<f64>().prop_map(Value::DoubleValue),
            any::<i64>().prop_map(Value::IntValue),
            any::<bool>().prop_map(Value::BoolValue),
            any::<i64>().prop_map(Value::DurationValue),
        ];
        prop::collection::vec((names, prop::collection::vec(value, 0..3)), 0..4).prop_map(|opts| {
            InitRequest {
                options: opts
                    .into_iter()
                    .map(|(name, values)| crate::proto::Option {
                        name: name.to_string(),
                        values: values
                            .into_iter()
                            .map(|v| OptionValue {
                                r#type: match v {
                                    Value::BoolValue(_) => 0,
                                    Value::IntValue(_) => 1,
                                    Value::DoubleValue(_) => 2,
                                    Value::StringValue(_) => 3,
                                    Value::DurationValue(_) => 4,
                                },
                                value: Some(v),
                            })
                            .collect(),
                    })
                    .collect(),
                ..InitRequest::default()
            }
            .encode_to_vec()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn frames_never_panic_nor_reserve(data in prop::collection::vec(any::<u8>(), 0..600)) {
            frames(&data);
        }

        #[test]
        fn near_valid_frames_never_panic(data in frame_bytes()) {
            frames(&data);
        }

        #[test]
        fn init_options_never_panic_nor_leak(data in init_bytes()) {
            init_options(&data);
        }

        #[test]
        fn random_init_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
            init_options(&data);
        }

        #[test]
        fn expression_errors_stay_short(src in "(\\PC|[\"'/()]){0,60}", pad in 0usize..5000) {
            let mut s = "x".repeat(pad);
            s.push_str(&src);
            s.push_str(&"y".repeat(pad));
            expression(s.as_bytes());
        }

        #[test]
        fn templates_never_panic(data in prop::collection::vec(any::<u8>(), 0..200), near in "\\{\\{[a-zA-Z .|$()\"-]{0,30}\\}\\}") {
            template(&data);
            let mut v = vec![data.first().copied().unwrap_or(0)];
            v.extend_from_slice(near.as_bytes());
            template(&v);
        }
    }
}
