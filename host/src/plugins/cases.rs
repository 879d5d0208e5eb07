//! Golden cases: inputs and expected outputs a component ships beside it
//! (`NAME.cases.yaml` next to `NAME.wasm`). A hot-swap candidate is only
//! swapped in if every case passes; `wasmgate plugin test` runs them for
//! plugin authors' CI. The format is documented in `docs/plugins.md`.
//!
//! Here: finding a component's cases file and reading it into cases. The
//! YAML structure is in `format`, the checks of a case's inputs in
//! `inputs`, and running cases against a component in `check`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Interface;
use crate::identity as id;

mod check;
mod format;
mod inputs;

pub use check::{BoundCase, CaseResult};

/// Largest cases file read, bytes.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// Why a cases file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    /// The file could not be read.
    #[error("cannot read golden cases {path}: {detail}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The file is not a valid cases file.
    #[error("invalid golden cases {path}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Where a component's cases file is expected: `NAME.cases.yaml` beside
/// `NAME.wasm`.
pub fn cases_path_for(component: &Path) -> PathBuf {
    component.with_extension("cases.yaml")
}

/// Where `wasmgate plugin check` and `plugin test` look for a component's
/// cases file, in order: `NAME.cases.yaml` beside `NAME.wasm`, then, for a
/// component in a cargo target folder (`CRATE/target/wasm32-wasip2/release/NAME.wasm`),
/// in the folder holding `target/` (the crate or workspace), named after the
/// artifact (`only_acme.cases.yaml`) or the package (`only-acme.cases.yaml`).
pub fn cases_candidates_for(component: &Path) -> Vec<PathBuf> {
    let mut out = vec![cases_path_for(component)];
    let Some(stem) = component.file_stem().map(|s| s.to_string_lossy().into_owned()) else { return out };
    let crate_dir =
        component.ancestors().skip(1).find(|a| a.file_name().is_some_and(|n| n == "target")).and_then(Path::parent);
    if let Some(dir) = crate_dir {
        for name in [stem.clone(), stem.replace('_', "-")] {
            let p = dir.join(format!("{name}.cases.yaml"));
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// A parsed cases file.
#[derive(Debug, Clone)]
pub struct CaseFile {
    path: PathBuf,
    sha256: String,
    cases: Vec<Case>,
    warnings: Vec<String>,
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    settings: BTreeMap<String, Value>,
    call: CaseCall,
    expect: Value,
}

#[derive(Debug, Clone)]
enum CaseCall {
    Classify(id::CallInfo),
    MapClaims { provider: String, claims: String },
    Authorize(id::AuthzRequest),
    SelectCredentials { call: id::CallInfo, principal: Option<id::Principal>, catalogue: Vec<id::CredentialInfo> },
}

impl CaseCall {
    fn interface(&self) -> Interface {
        match self {
            Self::Classify(_) => Interface::Classifier,
            Self::MapClaims { .. } => Interface::ClaimsMapper,
            Self::Authorize(_) => Interface::Authorizer,
            Self::SelectCredentials { .. } => Interface::CredentialPolicy,
        }
    }
}

impl CaseFile {
    /// Reads and checks a cases file.
    pub fn load(path: &Path) -> Result<Self, CasesError> {
        let read_err = |detail: String| CasesError::Read { path: path.to_owned(), detail };
        let meta = std::fs::metadata(path).map_err(|e| read_err(e.to_string()))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(read_err(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
        Self::parse(path, &text)
    }

    /// Reads the cases file beside `component`, if there is one.
    pub fn beside(component: &Path) -> Result<Option<Self>, CasesError> {
        let path = cases_path_for(component);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => Self::load(&path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CasesError::Read { path, detail: e.to_string() }),
        }
    }

    /// The first of [`cases_candidates_for`] that exists, if any.
    pub fn find(component: &Path) -> Result<Option<Self>, CasesError> {
        for path in cases_candidates_for(component) {
            match std::fs::symlink_metadata(&path) {
                Ok(_) => return Self::load(&path).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CasesError::Read { path, detail: e.to_string() }),
            }
        }
        Ok(None)
    }

    /// Parses cases-file text; `path` is for messages. Inputs the gateway
    /// can never send are refused (a principal on a call without a token,
    /// a gRPC call that is not `POST`, …); combinations it never produces
    /// but that a case may test on purpose (a bearer method without a
    /// token) are accepted with a warning ([`CaseFile::warnings`]).
    pub fn parse(path: &Path, text: &str) -> Result<Self, CasesError> {
        use sha2::Digest;
        let invalid = |detail: String| CasesError::Invalid { path: path.to_owned(), detail };
        let raw: format::Document = serde_norway::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if raw.cases.is_empty() {
            return Err(invalid("no cases".to_owned()));
        }
        let mut names = BTreeSet::new();
        let mut cases = Vec::with_capacity(raw.cases.len());
        let mut warnings = Vec::new();
        for (i, c) in raw.cases.into_iter().enumerate() {
            let name = c.name.clone();
            if name.is_empty() {
                return Err(invalid(format!("case #{} has an empty name", i + 1)));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(format!("case {name:?} appears twice")));
            }
            let case = c.into_case(&raw.settings).map_err(|d| invalid(format!("case {name:?}: {d}")))?;
            let found = inputs::check(&case.call).map_err(|d| invalid(format!("case {name:?}: {d}")))?;
            warnings.extend(found.into_iter().map(|w| format!("case {name:?}: {w}")));
            cases.push(case);
        }
        Ok(Self { path: path.to_owned(), sha256: hex::encode(sha2::Sha256::digest(text.as_bytes())), cases, warnings })
    }

    /// Inputs the gateway never produces but that were accepted, one line
    /// per case and finding.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The file the cases came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the file's text.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// How many cases there are.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// Whether there are none (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }
}

#[cfg(test)]
mod tests;
