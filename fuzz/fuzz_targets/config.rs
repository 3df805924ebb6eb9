//! Config validation on arbitrary YAML: every input must end in a `Config`
//! or a list of problems, never a panic, with and without `${VAR}` values.

#![no_main]

use std::path::Path;

use idp_gate::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.yaml");
    for env in [
        &|_: &str| None as Option<String>,
        // A value with YAML and URL punctuation, so expansion can break the
        // document it lands in.
        &|_: &str| Some("127.0.0.1:8443/x: [y]#z".to_string()),
    ] as [&dyn Fn(&str) -> Option<String>; 2]
    {
        match Config::from_yaml(text, file, env) {
            Ok(config) => {
                // Rendering is what `check-config` and the logs do next.
                let _ = format!("{config:?}");
            }
            Err(e) => {
                assert!(!e.problems.is_empty(), "a refusal without a problem");
                let _ = e.to_string();
            }
        }
    }
});
