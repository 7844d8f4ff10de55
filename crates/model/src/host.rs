//! Host names: short names made fully qualified, wildcard matching.

/// The cluster DNS domain Kubernetes services live under.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// Makes a host written in namespace `ns` fully qualified the way Istio does: a name
/// without dots is a Kubernetes service in that namespace.
pub fn fqdn(host: &str, ns: &str) -> String {
    if host.contains('.') || host == "*" {
        host.to_string()
    } else {
        format!("{host}.{ns}.{CLUSTER_DOMAIN}")
    }
}

/// True when `pattern` (exact, `*`, or `*.suffix`) matches `host`.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => pattern == host,
    }
}

/// How specific a matching pattern is: exact beats longer wildcard beats shorter.
pub fn specificity(pattern: &str) -> usize {
    if pattern.starts_with('*') {
        pattern.len()
    } else {
        usize::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_and_wildcards() {
        assert_eq!(
            fqdn("reviews", "default"),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(fqdn("httpbin.bar.global", "foo"), "httpbin.bar.global");
        assert!(host_matches("*.global", "httpbin.bar.global"));
        assert!(host_matches("*.local", "bar.ns2.svc.cluster.local"));
        assert!(!host_matches("*.global", "global"));
        assert!(specificity("a.b") > specificity("*.svc.cluster.local"));
        assert!(specificity("*.svc.cluster.local") > specificity("*.local"));
    }
}
