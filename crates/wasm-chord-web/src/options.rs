//! Generation options from JavaScript, passed as a JSON object, checked
//! field by field so that a typo or a wrong type is an error, not a default.

use crate::error::{WebError, WebResult};
use serde_json::{Map, Value};
use wasm_chord_runtime::sampler::SamplerConfig;

/// Most tokens one generation may ask for.
pub const MAX_TOKENS_LIMIT: usize = 1 << 20;
/// Most stop texts, and the longest one in bytes.
const MAX_STOPS: usize = 64;
const MAX_STOP_BYTES: usize = 1024;
/// Most logit-bias entries.
const MAX_BIAS: usize = 4096;

/// What one generation asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Most new tokens (default 256).
    pub max_tokens: usize,
    /// Texts that end generation.
    pub stop: Vec<String>,
    /// The sampling chain (llama.cpp's defaults unless set).
    pub sampler: SamplerConfig,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            stop: Vec::new(),
            sampler: SamplerConfig::default(),
        }
    }
}

fn number(name: &str, v: &Value) -> WebResult<f64> {
    let x = v
        .as_f64()
        .ok_or_else(|| WebError::invalid(name, format!("expected a number, got {v}")))?;
    if !x.is_finite() {
        return Err(WebError::invalid(name, "must be finite"));
    }
    Ok(x)
}

fn whole(name: &str, v: &Value, max: u64) -> WebResult<u64> {
    let x = number(name, v)?;
    if x < 0.0 || x.fract() != 0.0 || x > max as f64 {
        return Err(WebError::invalid(
            name,
            format!("expected a whole number in 0..={max}, got {x}"),
        ));
    }
    Ok(x as u64)
}

fn count(name: &str, v: &Value, max: usize) -> WebResult<usize> {
    // `max` is a usize, so the value fits one.
    Ok(whole(name, v, max as u64)? as usize)
}

fn float(name: &str, v: &Value) -> WebResult<f32> {
    let x = number(name, v)?;
    if x.abs() > f32::MAX as f64 {
        return Err(WebError::invalid(name, "out of range"));
    }
    Ok(x as f32)
}

fn stops(v: &Value) -> WebResult<Vec<String>> {
    let list: Vec<&Value> = match v {
        Value::String(_) => vec![v],
        Value::Array(a) => a.iter().collect(),
        _ => {
            return Err(WebError::invalid(
                "stop",
                "expected a string or an array of strings",
            ))
        }
    };
    if list.len() > MAX_STOPS {
        return Err(WebError::invalid(
            "stop",
            format!("at most {MAX_STOPS} texts"),
        ));
    }
    list.into_iter()
        .map(|s| match s.as_str() {
            Some(s) if s.len() <= MAX_STOP_BYTES => Ok(s.to_owned()),
            Some(_) => Err(WebError::invalid(
                "stop",
                format!("a stop text is longer than {MAX_STOP_BYTES} bytes"),
            )),
            None => Err(WebError::invalid("stop", "expected strings")),
        })
        .collect()
}

fn logit_bias(v: &Value) -> WebResult<Vec<(u32, f32)>> {
    let map = v
        .as_object()
        .ok_or_else(|| WebError::invalid("logitBias", "expected an object {tokenId: bias}"))?;
    if map.len() > MAX_BIAS {
        return Err(WebError::invalid(
            "logitBias",
            format!("at most {MAX_BIAS} entries"),
        ));
    }
    map.iter()
        .map(|(k, b)| {
            let id: u32 = k
                .parse()
                .map_err(|_| WebError::invalid("logitBias", format!("`{k}` is not a token id")))?;
            // -Infinity bans a token; JSON has no infinities, so null means it.
            let bias = if b.is_null() {
                f32::NEG_INFINITY
            } else {
                float("logitBias", b)?
            };
            Ok((id, bias))
        })
        .collect()
}

impl GenerateOptions {
    /// Parses `json` (an object; `""`, `null` and `{}` give the defaults).
    pub fn from_json(json: &str) -> WebResult<Self> {
        let mut out = Self::default();
        if json.trim().is_empty() {
            return Ok(out);
        }
        let v: Value = serde_json::from_str(json)
            .map_err(|e| WebError::invalid("options", format!("not JSON: {e}")))?;
        let empty = Map::new();
        let obj = match &v {
            Value::Null => &empty,
            Value::Object(o) => o,
            _ => return Err(WebError::invalid("options", "expected an object")),
        };
        let s = &mut out.sampler;
        for (key, v) in obj {
            if v.is_null() && key != "logitBias" {
                continue;
            }
            match key.as_str() {
                "maxTokens" => out.max_tokens = count(key, v, MAX_TOKENS_LIMIT)?,
                "stop" => out.stop = stops(v)?,
                "temperature" => s.temperature = float(key, v)?,
                "topK" => s.top_k = count(key, v, u32::MAX as usize)?,
                "topP" => s.top_p = float(key, v)?,
                "minP" => s.min_p = float(key, v)?,
                "typicalP" => s.typical_p = float(key, v)?,
                "repeatPenalty" => s.repeat_penalty = float(key, v)?,
                "repeatLastN" => s.repeat_last_n = count(key, v, u32::MAX as usize)?,
                "presencePenalty" => s.presence_penalty = float(key, v)?,
                "frequencyPenalty" => s.frequency_penalty = float(key, v)?,
                "seed" => s.seed = whole(key, v, (1u64 << 53) - 1)?,
                "logitBias" => s.logit_bias = logit_bias(v)?,
                "greedy" => {
                    if v.as_bool()
                        .ok_or_else(|| WebError::invalid(key, "expected a boolean"))?
                    {
                        s.temperature = 0.0;
                    }
                }
                _ => {
                    return Err(WebError::invalid(
                        key,
                        "unknown option (known: maxTokens, stop, temperature, topK, topP, \
                         minP, typicalP, repeatPenalty, repeatLastN, presencePenalty, \
                         frequencyPenalty, seed, logitBias, greedy)",
                    ))
                }
            }
        }
        // The sampler checks its own ranges; build it once now so a bad
        // setting fails before any work.
        wasm_chord_runtime::sampler::Sampler::new(out.sampler.clone())?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_field() {
        assert_eq!(
            GenerateOptions::from_json("").unwrap(),
            GenerateOptions::default()
        );
        assert_eq!(
            GenerateOptions::from_json("null").unwrap(),
            GenerateOptions::default()
        );
        let o = GenerateOptions::from_json(
            r#"{"maxTokens": 7, "stop": "\n", "temperature": 0.5, "topK": 3, "topP": 0.9,
                "minP": 0.1, "typicalP": 0.8, "repeatPenalty": 1.1, "repeatLastN": 16,
                "presencePenalty": 0.2, "frequencyPenalty": 0.3, "seed": 42,
                "logitBias": {"5": -1.5, "9": null}}"#,
        )
        .unwrap();
        assert_eq!(o.max_tokens, 7);
        assert_eq!(o.stop, vec!["\n".to_string()]);
        let s = &o.sampler;
        assert_eq!(
            (s.temperature, s.top_k, s.top_p, s.min_p),
            (0.5, 3, 0.9, 0.1)
        );
        assert_eq!(
            (s.typical_p, s.repeat_penalty, s.repeat_last_n),
            (0.8, 1.1, 16)
        );
        assert_eq!(
            (s.presence_penalty, s.frequency_penalty, s.seed),
            (0.2, 0.3, 42)
        );
        assert_eq!(s.logit_bias, vec![(5, -1.5), (9, f32::NEG_INFINITY)]);
        let g = GenerateOptions::from_json(r#"{"greedy": true}"#).unwrap();
        assert_eq!(g.sampler.temperature, 0.0);
    }

    #[test]
    fn bad_values_are_errors_not_defaults() {
        for bad in [
            r#"{"maxTokens": -1}"#,
            r#"{"maxTokens": 1.5}"#,
            r#"{"maxTokens": "8"}"#,
            r#"{"temprature": 0.5}"#,
            r#"{"topP": 1.5}"#,
            r#"{"repeatPenalty": 0}"#,
            r#"{"stop": [1]}"#,
            r#"{"logitBias": {"x": 1}}"#,
            r#"{"seed": 1e300}"#,
            "[1]",
            "{",
        ] {
            let e = GenerateOptions::from_json(bad).unwrap_err();
            assert_eq!(e.code(), "INVALID_ARGUMENT", "{bad}: {e}");
        }
    }
}
