//! Problems found in user input, each pointing at a file, a line, a resource and a field.

use std::fmt;
use std::path::PathBuf;

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The resource is rejected; the last good configuration keeps serving.
    Error,
    /// The resource is accepted, but something in it is probably not what the user meant.
    Warning,
}

/// One problem in user input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file the resource came from, if any.
    pub file: Option<PathBuf>,
    /// The 1-based line of the field (or of the resource when the field has no line).
    pub line: Option<usize>,
    /// `Kind/namespace/name` or `Kind/name` of the resource, when known.
    pub resource: Option<String>,
    /// Dotted path of the field at fault, such as `spec.ports[0].number`.
    pub field: Option<String>,
    /// What is wrong, in plain words.
    pub message: String,
}

impl Diagnostic {
    /// An error with only a message; the other parts are filled in by the caller.
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: None,
            line: None,
            resource: None,
            field: None,
            message: message.into(),
        }
    }

    /// A warning with only a message.
    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    /// Sets the field path.
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{}: ", file.display(), line)?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        write!(f, "{sev}")?;
        if let Some(r) = &self.resource {
            write!(f, ": {r}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_resource_and_field() {
        let mut d = Diagnostic::error("must be between 1 and 65535").at("spec.ports[0].number");
        d.file = Some("a/se.yaml".into());
        d.line = Some(12);
        d.resource = Some("ServiceEntry/foo/httpbin-bar".into());
        assert_eq!(
            d.to_string(),
            "a/se.yaml:12: error: ServiceEntry/foo/httpbin-bar: spec.ports[0].number: must be between 1 and 65535"
        );
    }
}
