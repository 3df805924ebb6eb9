//! `${VAR}` and `${VAR:-default}` expansion in YAML string values.
//!
//! Expansion runs on the parsed YAML tree, not on the file's text, so a
//! `${...}` inside a comment is left alone and every unset variable is
//! reported with the YAML path of the value that names it.

use serde_yaml::Value;

use super::Problem;

/// Expands every string scalar under `value` in place, looking variables up
/// with `lookup`. Problems (unset variables, unterminated `${`) are appended.
pub fn expand_tree(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        Value::String(s) => {
            if s.contains("${") {
                match expand_str(s, lookup) {
                    Ok(expanded) => *s = expanded,
                    Err(message) => problems.push(Problem::new(path, message)),
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_tree(item, &format!("{path}[{i}]"), lookup, problems);
            }
        }
        Value::Mapping(map) => {
            // Keys are expanded too: an organization id in `organizations:`
            // may well come from the environment.
            let entries = std::mem::take(map);
            for (mut key, mut item) in entries {
                let name = match &key {
                    Value::String(k) => k.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let child = if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                };
                if let Value::String(k) = &mut key {
                    if k.contains("${") {
                        match expand_str(k, lookup) {
                            Ok(expanded) => *k = expanded,
                            Err(message) => problems.push(Problem::new(&child, message)),
                        }
                    }
                }
                expand_tree(&mut item, &child, lookup, problems);
                map.insert(key, item);
            }
        }
        Value::Tagged(tagged) => expand_tree(&mut tagged.value, path, lookup, problems),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Expands one string. `$${` is a literal `${`.
pub fn expand_str(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated \"${{\" in {input:?}"))?;
        let expr = &after[..end];
        let (name, default) = match expr.find(":-") {
            Some(i) => (&expr[..i], Some(&expr[i + 2..])),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid variable name {name:?} in \"${{{expr}}}\""));
        }
        match (lookup(name), default) {
            (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (use ${{{name}:-default}} for an optional value)"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_unset_and_defaults() {
        assert_eq!(expand_str("a-${SET}-b", &env).unwrap(), "a-value-b");
        assert_eq!(expand_str("${UNSET:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(expand_str("${UNSET:-}", &env).unwrap(), "");
        assert_eq!(expand_str("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(expand_str("${EMPTY}", &env).unwrap(), "");
        assert_eq!(expand_str("$${SET}", &env).unwrap(), "${SET}");
        assert_eq!(expand_str("no vars", &env).unwrap(), "no vars");
    }

    #[test]
    fn unset_without_default_names_the_variable() {
        let err = expand_str("${IDP_CLIENT_ID}", &env).unwrap_err();
        assert!(err.contains("IDP_CLIENT_ID"), "{err}");
        assert!(expand_str("${OPEN", &env).is_err());
        assert!(expand_str("${bad name}", &env).is_err());
    }

    #[test]
    fn tree_expansion_reports_yaml_paths() {
        let mut v: Value =
            serde_yaml::from_str("idp:\n  audiences: [\"${SET}\", \"${NOPE}\"]\n# ${IN_COMMENT}\n")
                .unwrap();
        let mut problems = Vec::new();
        expand_tree(&mut v, "", &env, &mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "idp.audiences[1]");
        assert_eq!(v["idp"]["audiences"][0].as_str(), Some("value"));

        let mut v: Value =
            serde_yaml::from_str("organizations:\n  \"${SET}\": {name: x}\n").unwrap();
        expand_tree(&mut v, "", &env, &mut problems);
        assert_eq!(v["organizations"]["value"]["name"].as_str(), Some("x"));
    }
}
