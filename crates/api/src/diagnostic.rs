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

/// An analysis message's code and name: Istio's where `istioctl analyze` has one for the
/// same problem (`IST0101 ReferencedResourceNotFound`), else Isthmus's own (`ISM....`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Code {
    /// `IST0101`.
    pub id: &'static str,
    /// `ReferencedResourceNotFound`.
    pub name: &'static str,
}

/// The codes Isthmus reports.
pub mod codes {
    use super::Code;

    /// A gateway, host, subset, selector, Secret or delegate that a resource names does not
    /// exist.
    pub const REFERENCED_RESOURCE_NOT_FOUND: Code = Code {
        id: "IST0101",
        name: "ReferencedResourceNotFound",
    };
    /// A Gateway's server port that no Service of its workload exposes.
    pub const GATEWAY_PORT_NOT_ON_WORKLOAD: Code = Code {
        id: "IST0104",
        name: "GatewayPortNotOnWorkload",
    };
    /// A resource that is not valid by itself (schema, values, fields Isthmus refuses).
    pub const SCHEMA_VALIDATION_ERROR: Code = Code {
        id: "IST0106",
        name: "SchemaValidationError",
    };
    /// Two VirtualServices bound to the mesh gateway for one host.
    pub const CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS: Code = Code {
        id: "IST0109",
        name: "ConflictingMeshGatewayVirtualServiceHosts",
    };
    /// A DestinationRule's TLS to a server whose certificate nothing verifies.
    pub const NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL: Code = Code {
        id: "IST0128",
        name: "NoServerCertificateVerificationDestinationLevel",
    };
    /// Two ServiceEntries defining one host (the control plane keeps the first).
    pub const CONFLICTING_SERVICE_ENTRY_HOSTS: Code = Code {
        id: "ISM0001",
        name: "ConflictingServiceEntryHosts",
    };
    /// Two services of one cluster with one address (the control plane keeps the first).
    pub const CONFLICTING_SERVICE_ADDRESSES: Code = Code {
        id: "ISM0002",
        name: "ConflictingServiceAddresses",
    };
    /// A Secret a Gateway's `credentialName` names that gives no certificate and key.
    pub const INVALID_CREDENTIAL_SECRET: Code = Code {
        id: "ISM0003",
        name: "InvalidCredentialSecret",
    };
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
    /// The analysis code, when one applies.
    pub code: Option<&'static Code>,
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
            code: None,
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

    /// Sets the analysis code.
    pub fn code(mut self, code: &'static Code) -> Self {
        self.code = Some(code);
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
        write!(f, ": {}", self.message)?;
        if let Some(c) = self.code {
            write!(f, " [{} {}]", c.id, c.name)?;
        }
        Ok(())
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
        let coded = d.code(&codes::SCHEMA_VALIDATION_ERROR);
        assert!(coded
            .to_string()
            .ends_with("65535 [IST0106 SchemaValidationError]"));
    }
}
