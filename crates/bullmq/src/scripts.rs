//! BullMQ's Lua scripts, loaded from an installed `bullmq` npm package.
//!
//! Each script is a module `dist/cjs/scripts/<name>-<numberOfKeys>.js` whose text holds
//! the script (its includes already inlined) in a template literal. The file name is the
//! script's signature: the code in `ops` builds exactly that many keys, in BullMQ's order.
//! A package whose scripts have other signatures is refused at load time, naming the
//! version found, rather than called with the wrong arguments.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The scripts this crate calls and the number of keys each takes, as in bullmq 6.7.
pub const REQUIRED: &[(&str, usize)] = &[
    ("moveToActive", 11),
    ("moveToFinished", 14),
    ("moveToDelayed", 11),
    ("retryJob", 11),
    ("extendLocks", 1),
    ("moveStalledJobsToWait", 9),
    ("moveJobFromActiveToWait", 9),
    ("updateProgress", 3),
    ("addLog", 2),
    ("updateData", 1),
];

/// The bullmq versions this code was written for (the range in package.json).
pub const SPOKEN: &str = "bullmq ^6.7.0";

pub struct Scripts {
    by_name: HashMap<&'static str, redis::Script>,
    /// The package's version, from its package.json (for messages).
    pub version: String,
    pub dir: PathBuf,
}

impl Scripts {
    /// Loads the scripts from a bullmq package directory (the one holding its
    /// package.json). Fails with `Error::Scripts` naming the version found and what
    /// differs when a script is missing or has another number of keys.
    pub fn load(package_dir: &Path) -> Result<Scripts> {
        let version = read_version(package_dir);
        let dir = package_dir.join("dist").join("cjs").join("scripts");
        let listing = std::fs::read_dir(&dir).map_err(|e| {
            Error::Scripts(format!(
                "bullmq's scripts are not where this build looks for them ({}): {e}; install {SPOKEN}",
                dir.display()
            ))
        })?;
        let mut found: HashMap<String, Vec<usize>> = HashMap::new();
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((script, keys)) = signature(&name) {
                found.entry(script).or_default().push(keys);
            }
        }
        let mut by_name = HashMap::new();
        for &(name, keys) in REQUIRED {
            match found.get(name) {
                Some(ks) if ks.contains(&keys) => {}
                Some(ks) => {
                    return Err(Error::Scripts(format!(
                        "bullmq {version} at {} has the script {name} with {} keys; this build speaks {SPOKEN}, whose {name} takes {keys}: install a bullmq in that range",
                        package_dir.display(),
                        ks.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(" or "),
                    )))
                }
                None => {
                    return Err(Error::Scripts(format!(
                        "bullmq {version} at {} has no script {name}; this build speaks {SPOKEN} ({name} with {keys} keys): install a bullmq in that range",
                        package_dir.display()
                    )))
                }
            }
            let file = dir.join(format!("{name}-{keys}.js"));
            let text = std::fs::read_to_string(&file).map_err(|e| Error::Scripts(format!("cannot read {}: {e}", file.display())))?;
            let lua = extract_template(&text)
                .ok_or_else(|| Error::Scripts(format!("{} holds no script text this build can read", file.display())))?;
            by_name.insert(name, redis::Script::new(&lua));
        }
        Ok(Scripts { by_name, version, dir })
    }

    /// The script `name` (one of `REQUIRED`).
    pub fn get(&self, name: &str) -> &redis::Script {
        self.by_name.get(name).unwrap_or_else(|| panic!("script {name} is not in REQUIRED"))
    }
}

/// `moveToActive-11.js` → `("moveToActive", 11)`.
fn signature(file: &str) -> Option<(String, usize)> {
    let stem = file.strip_suffix(".js")?;
    let (name, keys) = stem.rsplit_once('-')?;
    Some((name.to_string(), keys.parse().ok()?))
}

fn read_version(package_dir: &Path) -> String {
    std::fs::read_to_string(package_dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_else(|| "(unknown version)".into())
}

/// The text of the module's `const content = \`...\`;` template literal, unescaped.
/// Only the escapes a compiler writes into a literal without substitutions occur
/// (`\\`, `` \` ``, `\$`); anything else means a format this code does not know.
fn extract_template(module: &str) -> Option<String> {
    let start = module.find("const content = `")? + "const content = `".len();
    let mut out = String::new();
    let mut chars = module[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '`' => return Some(out),
            '\\' => match chars.next()? {
                c @ ('\\' | '`' | '$') => out.push(c),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                _ => return None,
            },
            '$' if chars.clone().next() == Some('{') => return None,
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_read_from_file_names() {
        assert_eq!(signature("moveToActive-11.js"), Some(("moveToActive".into(), 11)));
        assert_eq!(signature("index.js"), None);
        assert_eq!(signature("x-y.js"), None);
    }

    #[test]
    fn template_literals_are_unescaped() {
        let m = "x;\nconst content = `a \\` b \\\\ c \\${d}`;\nexports.x = 1;";
        assert_eq!(extract_template(m).as_deref(), Some("a ` b \\ c ${d}"));
        assert_eq!(extract_template("const content = `a ${b}`;"), None);
        assert_eq!(extract_template("const content = 'x';"), None);
    }
}
