//! Loading scenario files and expanding their matrices into cases.

use crate::model::ScenarioFile;
use anyhow::{bail, Context, Result};

/// One runnable case of a scenario file (a file without a matrix has exactly one).
#[derive(Debug, Clone)]
pub struct Case {
    /// `suite/name` or `suite/name[a=x,b=y]`.
    pub id: String,
    /// `suite/name`.
    pub base: String,
    pub suite: String,
    /// Where the file came from (a path, or `suites/<suite>/<file>` when built in).
    pub file: String,
    pub matrix: Vec<(String, String)>,
    pub spec: ScenarioFile,
}

fn value_text(v: &toml::Value) -> Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => bail!("matrix values must be strings, numbers or booleans, not {other}"),
    })
}

/// Parse a scenario file's text into its cases.
pub fn cases(suite: &str, file: &str, text: &str) -> Result<Vec<Case>> {
    // Placeholders may stand where TOML wants a value (`hairpin = ${hairpin}`): read the
    // matrix from a copy where each placeholder is a harmless literal.
    let raw: toml::Table = toml::from_str(&blank_placeholders(text))
        .with_context(|| format!("{file}: not valid TOML"))?;
    let mut axes: Vec<(String, Vec<String>)> = Vec::new();
    if let Some(m) = raw.get("matrix") {
        let m = m
            .as_table()
            .with_context(|| format!("{file}: [matrix] must be a table"))?;
        for (k, v) in m {
            let vals = v
                .as_array()
                .with_context(|| format!("{file}: matrix `{k}` must be a list"))?;
            if vals.is_empty() {
                bail!("{file}: matrix `{k}` is empty");
            }
            let vals = vals
                .iter()
                .map(value_text)
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("{file}: matrix `{k}`"))?;
            axes.push((k.clone(), vals));
        }
    }
    let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (k, vals) in &axes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                vals.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((k.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    let mut out = Vec::new();
    for combo in combos {
        let mut t = text.to_string();
        for (k, v) in &combo {
            t = t.replace(&format!("${{{k}}}"), v);
        }
        if let Some(pos) = t.find("${") {
            let end = t[pos..].find('}').map(|e| pos + e + 1).unwrap_or(t.len());
            bail!("{file}: `{}` is not a matrix key", &t[pos..end]);
        }
        let spec: ScenarioFile =
            toml::from_str(&t).with_context(|| format!("{file}: invalid scenario"))?;
        let base = format!("{suite}/{}", spec.scenario.name);
        let id = if combo.is_empty() {
            base.clone()
        } else {
            let params: Vec<String> = combo.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{base}[{}]", params.join(","))
        };
        out.push(Case {
            id,
            base,
            suite: suite.to_string(),
            file: file.to_string(),
            matrix: combo,
            spec,
        });
    }
    Ok(out)
}

fn blank_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                out.push('0');
                rest = &rest[start + end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Expand `{i}` and `{i%K}` in a name template for index `i`.
pub fn instantiate(template: &str, i: usize) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{i") {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let Some(end) = tail.find('}') else {
            out.push_str(tail);
            return out;
        };
        let expr = &tail[2..end];
        let v = match expr.strip_prefix('%').and_then(|k| k.parse::<usize>().ok()) {
            Some(k) if k > 0 => i % k,
            _ if expr.is_empty() => i,
            _ => {
                out.push_str(&tail[..=end]);
                rest = &tail[end + 1..];
                continue;
            }
        };
        out.push_str(&v.to_string());
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[scenario]
name = "m"
duration = "1s"
[matrix]
b = ["x", "y"]
a = [1, 2, 3]
[[host]]
name = "h-${a}-${b}"
"#;

    #[test]
    fn matrix_expands_in_file_order() {
        let cs = cases("s", "f.toml", FILE).unwrap();
        assert_eq!(cs.len(), 6);
        assert_eq!(cs[0].id, "s/m[b=x,a=1]");
        assert_eq!(cs[5].id, "s/m[b=y,a=3]");
        assert_eq!(cs[4].spec.host[0].name, "h-2-y");
    }

    #[test]
    fn unknown_placeholder_is_an_error() {
        let bad = FILE.replace("${a}-${b}", "${c}");
        let e = cases("s", "f.toml", &bad).unwrap_err();
        assert!(format!("{e:#}").contains("${c}"), "{e:#}");
    }

    #[test]
    fn templates_expand_index_and_modulo() {
        assert_eq!(instantiate("h{i}", 7), "h7");
        assert_eq!(instantiate("nat{i%3}", 7), "nat1");
        assert_eq!(instantiate("plain", 7), "plain");
    }
}
