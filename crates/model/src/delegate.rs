//! VirtualService delegation as Istio resolves it: a root VirtualService (one with `hosts`)
//! hands an HTTP route to a delegate VirtualService (one without `hosts`) by name; the
//! delegate's routes take its place, each match narrowed by the root route's match (both
//! must hold). A delegate match that contradicts the root's (another exact path, a path
//! outside the root's prefix, another method or header value) is dropped, as in Istio; a
//! delegate that does not exist, is not exported to the root's namespace, or delegates again
//! (one level only) leaves the root route out, with a warning saying why.

use crate::snapshot::{exported_to, Scoped};
use isthmus_api::networking::{HttpMatchRequest, HttpRoute, StringMatch, VirtualService};

/// Why a root route was left out: (root index, route index, message).
pub type Unresolved = (usize, usize, String);

/// The root VirtualServices of `all` with their delegating routes replaced by the delegates'
/// routes, in order, and what could not be resolved. Delegates themselves are not returned:
/// without hosts they route nothing on their own.
pub fn resolve(all: &[Scoped<VirtualService>]) -> (Vec<Scoped<VirtualService>>, Vec<Unresolved>) {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (i, root) in all.iter().enumerate() {
        if root.rule.spec.hosts.is_empty() {
            continue;
        }
        if root.rule.spec.http.iter().all(|r| r.delegate.is_none()) {
            out.push(root.clone());
            continue;
        }
        let mut expanded = root.clone();
        expanded.rule.spec.http = Vec::new();
        for (j, route) in root.rule.spec.http.iter().enumerate() {
            let Some(d) = &route.delegate else {
                expanded.rule.spec.http.push(route.clone());
                continue;
            };
            let name = d.name.as_str();
            let ns = d
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(&root.namespace);
            let found = all.iter().find(|v| {
                v.namespace == ns && &*v.rule.metadata.name == name && v.rule.spec.hosts.is_empty()
            });
            let Some(delegate) = found else {
                problems.push((
                    i,
                    j,
                    format!("delegate VirtualService {ns}/{name} (one without hosts) does not exist; the route is left out"),
                ));
                continue;
            };
            if !exported_to(
                &delegate.rule.spec.export_to,
                &delegate.namespace,
                &root.namespace,
            ) {
                problems.push((
                    i,
                    j,
                    format!("delegate VirtualService {ns}/{name} is not exported to namespace {}; the route is left out", root.namespace),
                ));
                continue;
            }
            for dr in &delegate.rule.spec.http {
                if dr.delegate.is_some() {
                    problems.push((
                        i,
                        j,
                        format!("delegate VirtualService {ns}/{name} delegates again; only one level is supported, that route is left out"),
                    ));
                    continue;
                }
                if let Some(merged) = merge_route(route, dr) {
                    expanded.rule.spec.http.push(merged);
                }
            }
        }
        out.push(expanded);
    }
    (out, problems)
}

/// The delegate's route `dr` under the root's route `root`: its matches narrowed by the
/// root's; `None` when every combination contradicts.
fn merge_route(root: &HttpRoute, dr: &HttpRoute) -> Option<HttpRoute> {
    let mut out = dr.clone();
    out.match_ = match (root.match_.is_empty(), dr.match_.is_empty()) {
        (true, _) => dr.match_.clone(),
        (false, true) => root.match_.clone(),
        (false, false) => {
            let merged: Vec<HttpMatchRequest> = root
                .match_
                .iter()
                .flat_map(|r| dr.match_.iter().filter_map(move |d| merge_match(r, d)))
                .collect();
            if merged.is_empty() {
                return None;
            }
            merged
        }
    };
    Some(out)
}

/// One root match and one delegate match, both holding: `None` when they contradict.
fn merge_match(root: &HttpMatchRequest, d: &HttpMatchRequest) -> Option<HttpMatchRequest> {
    let mut out = d.clone();
    out.uri = merge_uri(root.uri.as_ref(), d.uri.as_ref())?;
    out.scheme = same(root.scheme.as_ref(), d.scheme.as_ref())?;
    out.method = same(root.method.as_ref(), d.method.as_ref())?;
    out.authority = same(root.authority.as_ref(), d.authority.as_ref())?;
    out.port = match (root.port, d.port) {
        (Some(a), Some(b)) if a != b => return None,
        (a, b) => b.or(a),
    };
    for (k, v) in &root.headers {
        match out.headers.get(k) {
            Some(mine) if mine != v => return None,
            _ => {
                out.headers.insert(k.clone(), v.clone());
            }
        }
    }
    for (k, v) in &root.query_params {
        match out.query_params.get(k) {
            Some(mine) if mine != v => return None,
            _ => {
                out.query_params.insert(k.clone(), v.clone());
            }
        }
    }
    // Where the root's route applies is the root's to say.
    out.gateways = root.gateways.clone();
    out.ignore_uri_case = root.ignore_uri_case || d.ignore_uri_case;
    if root.name.is_some() && d.name.is_none() {
        out.name = root.name.clone();
    }
    Some(out)
}

/// Both must hold: equal when both are set.
fn same(a: Option<&StringMatch>, b: Option<&StringMatch>) -> Option<Option<StringMatch>> {
    match (a, b) {
        (Some(a), Some(b)) if a != b => None,
        (a, b) => Some(b.or(a).cloned()),
    }
}

/// A path both matches accept, as Istio narrows them: the delegate's exact path or prefix
/// must lie within the root's prefix; an exact root path takes the same exact path or a
/// prefix of it; regular expressions must be equal.
fn merge_uri(root: Option<&StringMatch>, d: Option<&StringMatch>) -> Option<Option<StringMatch>> {
    let (Some(r), Some(d)) = (root, d) else {
        return Some(d.or(root).cloned());
    };
    let ok = match (&r.prefix, &r.exact, &r.regex) {
        (Some(p), _, _) => {
            d.prefix
                .as_deref()
                .is_some_and(|dp| dp.starts_with(p.as_str()))
                || d.exact
                    .as_deref()
                    .is_some_and(|de| de.starts_with(p.as_str()))
        }
        (_, Some(e), _) => {
            d.exact.as_deref() == Some(e.as_str())
                || d.prefix.as_deref().is_some_and(|dp| e.starts_with(dp))
        }
        (_, _, Some(_)) => r == d,
        _ => true,
    };
    if !ok {
        return None;
    }
    // An exact root path stays exact; otherwise the delegate's narrower match.
    Some(Some(if r.exact.is_some() {
        r.clone()
    } else {
        d.clone()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(ns: &str, yaml: &str) -> Scoped<VirtualService> {
        let full = format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{namespace: {ns}, {yaml}"
        );
        let loaded = isthmus_api::load_str(&full, None, ns);
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let Some(isthmus_api::Object::VirtualService(v)) =
            loaded.resources.into_iter().next().map(|r| r.object)
        else {
            panic!("a VirtualService");
        };
        Scoped {
            namespace: ns.into(),
            rule: (*v).clone(),
        }
    }

    fn uris(v: &Scoped<VirtualService>) -> Vec<String> {
        v.rule
            .spec
            .http
            .iter()
            .map(|r| {
                r.match_
                    .iter()
                    .map(|m| {
                        let u = m.uri.as_ref();
                        format!(
                            "{}{}",
                            u.and_then(|u| u.prefix.clone())
                                .map(|p| format!("prefix:{p}"))
                                .unwrap_or_default(),
                            u.and_then(|u| u.exact.clone())
                                .map(|p| format!("exact:{p}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }

    #[test]
    fn delegate_routes_replace_the_root_route_narrowed_by_its_match() {
        let root = vs("front", "name: root}\nspec:\n  hosts: [shop.example]\n  http:\n  - match: [{uri: {prefix: /cart}}]\n    delegate: {name: cart, namespace: cart}\n  - route: [{destination: {host: web}}]\n");
        let delegate = vs("cart", "name: cart}\nspec:\n  http:\n  - match: [{uri: {prefix: /cart/v2}}]\n    route: [{destination: {host: cart-v2}}]\n  - match: [{uri: {exact: /checkout}}]\n    route: [{destination: {host: nowhere}}]\n  - route: [{destination: {host: cart-v1}}]\n");
        let (out, problems) = resolve(&[root, delegate]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(out.len(), 1, "the delegate routes nothing on its own");
        // /checkout is outside /cart: dropped; the match-less route takes the root's match.
        assert_eq!(uris(&out[0]), ["prefix:/cart/v2", "prefix:/cart", ""]);
        let hosts: Vec<&str> = out[0].rule.spec.http[..2]
            .iter()
            .map(|r| r.route[0].destination.host.as_str())
            .collect();
        assert_eq!(hosts, ["cart-v2", "cart-v1"]);
    }

    #[test]
    fn missing_unexported_and_nested_delegates_are_reported() {
        let root = vs("front", "name: root}\nspec:\n  hosts: [shop.example]\n  http:\n  - delegate: {name: gone}\n  - delegate: {name: private, namespace: cart}\n  - delegate: {name: nested, namespace: front}\n");
        let private = vs("cart", "name: private}\nspec:\n  exportTo: ['.']\n  http:\n  - route: [{destination: {host: a}}]\n");
        let nested = vs(
            "front",
            "name: nested}\nspec:\n  http:\n  - delegate: {name: private, namespace: cart}\n",
        );
        let (out, problems) = resolve(&[root, private, nested]);
        assert!(out[0].rule.spec.http.is_empty());
        let msgs: Vec<&str> = problems.iter().map(|p| p.2.as_str()).collect();
        assert!(
            msgs[0].contains("front/gone (one without hosts) does not exist"),
            "{msgs:?}"
        );
        assert!(
            msgs[1].contains("cart/private is not exported to namespace front"),
            "{msgs:?}"
        );
        assert!(msgs[2].contains("delegates again"), "{msgs:?}");
        assert_eq!(problems.iter().map(|p| p.1).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn contradicting_matches_are_dropped() {
        let m = |j: &str| -> HttpMatchRequest { serde_json::from_str(j).expect("match") };
        let get = m(r#"{"method": {"exact": "GET"}}"#);
        let post = m(r#"{"method": {"exact": "POST"}}"#);
        assert!(merge_match(&get, &post).is_none());
        let xa = m(r#"{"headers": {"x": {"exact": "a"}}}"#);
        let xb = m(r#"{"headers": {"x": {"exact": "b"}}}"#);
        assert!(merge_match(&xa, &xb).is_none());
        let a = m(r#"{"uri": {"exact": "/a"}}"#);
        let b = m(r#"{"uri": {"exact": "/b"}}"#);
        assert!(merge_match(&a, &b).is_none());
        let root = m(r#"{"uri": {"exact": "/a"}, "headers": {"x": {"exact": "a"}}}"#);
        let d = m(r#"{"uri": {"prefix": "/"}, "method": {"exact": "GET"}}"#);
        let ok = merge_match(&root, &d).expect("compatible");
        assert_eq!(ok.uri.and_then(|u| u.exact).as_deref(), Some("/a"));
        assert_eq!(ok.headers.len(), 1);
        assert!(ok.method.is_some());
    }
}
