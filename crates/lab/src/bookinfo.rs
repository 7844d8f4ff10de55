//! Istio's Bookinfo, as built-in demo workloads chosen by the bookinfo image names
//! (`istio/examples-bookinfo-productpage-v1`, `-details-v1`, `-reviews-v1/v2/v3`,
//! `-ratings-v1`), with Bookinfo's call graph: productpage calls details and reviews,
//! reviews v2 and v3 call ratings. Upstream names come from the same environment variables
//! the real services read (`DETAILS_HOSTNAME`, `REVIEWS_HOSTNAME`, `RATINGS_HOSTNAME`,
//! `*_SERVICE_PORT`, `SERVICES_DOMAIN`), so the distributed Bookinfo of seed 004 points
//! productpage at `reviews.default.svc.b.remote` without code changes. Every answer names
//! the pod and version that produced it, so a response shows which services it crossed.

use serde_json::{json, Value};

/// One Bookinfo service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bookinfo {
    /// The front page: calls details and reviews.
    Productpage,
    /// Book details.
    Details,
    /// Reviews of this version (`v1` no stars, `v2` black stars, `v3` red stars).
    Reviews(String),
    /// Star ratings.
    Ratings,
}

impl Bookinfo {
    /// The service for an image name such as `examples-bookinfo-reviews-v2`.
    pub fn for_image_name(name: &str) -> Option<Bookinfo> {
        let rest = name.strip_prefix("examples-bookinfo-")?;
        let (service, version) = rest.rsplit_once('-')?;
        match service {
            "productpage" => Some(Bookinfo::Productpage),
            "details" => Some(Bookinfo::Details),
            "reviews" if matches!(version, "v1" | "v2" | "v3") => {
                Some(Bookinfo::Reviews(version.to_string()))
            }
            "ratings" => Some(Bookinfo::Ratings),
            _ => None,
        }
    }

    /// A short name for progress lines.
    pub fn describe(&self) -> String {
        match self {
            Bookinfo::Productpage => "bookinfo productpage".into(),
            Bookinfo::Details => "bookinfo details".into(),
            Bookinfo::Reviews(v) => format!("bookinfo reviews {v}"),
            Bookinfo::Ratings => "bookinfo ratings".into(),
        }
    }
}

/// Where an upstream is, from the environment as Bookinfo reads it.
fn upstream(service: &str) -> (String, u16) {
    let up = service.to_ascii_uppercase();
    let domain = std::env::var("SERVICES_DOMAIN")
        .ok()
        .filter(|d| !d.is_empty())
        .map(|d| format!(".{d}"))
        .unwrap_or_default();
    let host = std::env::var(format!("{up}_HOSTNAME")).unwrap_or_else(|_| service.to_string());
    let port = std::env::var(format!("{up}_SERVICE_PORT"))
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9080);
    (format!("{host}{domain}"), port)
}

/// Calls `service` (by the name the environment gives) for `path`; JSON or an error object
/// that says who could not be reached and why.
async fn call(service: &str, path: &str) -> Value {
    let (host, port) = upstream(service);
    let p = path.to_string();
    let h = host.clone();
    let result = tokio::task::spawn_blocking(move || crate::http::get_by_name(&h, port, &p)).await;
    let failure = |why: String| json!({ "error": format!("{service} at {host}:{port}: {why}") });
    match result {
        Ok(Ok((200, body))) => {
            serde_json::from_str(&body).unwrap_or_else(|e| failure(format!("bad JSON: {e}")))
        }
        Ok(Ok((code, body))) => failure(format!("HTTP {code}: {}", body.trim())),
        Ok(Err(e)) => failure(e.to_string()),
        Err(e) => failure(e.to_string()),
    }
}

fn product_id(path: &str, prefix: &str) -> Option<u64> {
    path.strip_prefix(prefix)?.parse().ok()
}

/// Answers one request: status, content type, body.
pub async fn respond(app: &Bookinfo, pod: &str, path: &str) -> (u16, &'static str, String) {
    let json_body = |v: Value| {
        let mut b = v.to_string();
        b.push('\n');
        (200, "application/json", b)
    };
    match app {
        Bookinfo::Details => match product_id(path, "/details/") {
            Some(id) => json_body(json!({
                "id": id, "author": "William Shakespeare", "year": 1595,
                "type": "paperback", "pages": 200, "publisher": "PublisherA",
                "language": "English", "ISBN-10": "1234567890", "ISBN-13": "123-1234567890",
                "podname": pod,
            })),
            None => not_found(path),
        },
        Bookinfo::Ratings => match product_id(path, "/ratings/") {
            Some(id) => json_body(json!({
                "id": id, "ratings": { "Reviewer1": 5, "Reviewer2": 4 }, "podname": pod,
            })),
            None => not_found(path),
        },
        Bookinfo::Reviews(version) => {
            let Some(id) = product_id(path, "/reviews/") else {
                return not_found(path);
            };
            let mut reviews = vec![
                json!({"reviewer": "Reviewer1", "text": "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"}),
                json!({"reviewer": "Reviewer2", "text": "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."}),
            ];
            let mut ratings_pod = Value::Null;
            if version != "v1" {
                let color = if version == "v2" { "black" } else { "red" };
                let ratings = call("ratings", &format!("/ratings/{id}")).await;
                ratings_pod = ratings.get("podname").cloned().unwrap_or(Value::Null);
                for r in &mut reviews {
                    let who = r["reviewer"].as_str().unwrap_or_default().to_string();
                    r["rating"] = match ratings.get("ratings").and_then(|m| m.get(&who)) {
                        Some(stars) => json!({"stars": stars, "color": color}),
                        None => json!({"error": ratings
                            .get("error")
                            .cloned()
                            .unwrap_or_else(|| json!("Ratings service is currently unavailable"))}),
                    };
                }
            }
            json_body(json!({
                "id": id.to_string(), "podname": pod, "version": version,
                "reviews": reviews, "ratingsPod": ratings_pod,
            }))
        }
        Bookinfo::Productpage => {
            if path != "/productpage" && path != "/" {
                return not_found(path);
            }
            let (details, reviews) =
                tokio::join!(call("details", "/details/0"), call("reviews", "/reviews/0"));
            (200, "text/plain", productpage(pod, &details, &reviews))
        }
    }
}

fn not_found(path: &str) -> (u16, &'static str, String) {
    (404, "text/plain", format!("{path} not found\n"))
}

/// The page, as plain text: one line per service that took part.
fn productpage(pod: &str, details: &Value, reviews: &Value) -> String {
    let mut out = format!("The Comedy of Errors (productpage {pod})\n");
    match details.get("error") {
        Some(e) => out.push_str(&format!(
            "Book Details: error: {}\n",
            e.as_str().unwrap_or("")
        )),
        None => out.push_str(&format!(
            "Book Details (details {}): {} pages, {}, {}, ISBN-10 {}\n",
            details["podname"].as_str().unwrap_or("?"),
            details["pages"],
            details["type"].as_str().unwrap_or(""),
            details["publisher"].as_str().unwrap_or(""),
            details["ISBN-10"].as_str().unwrap_or(""),
        )),
    }
    match reviews.get("error") {
        Some(e) => out.push_str(&format!(
            "Book Reviews: error: {}\n",
            e.as_str().unwrap_or("")
        )),
        None => {
            out.push_str(&format!(
                "Book Reviews (reviews-{} {}):\n",
                reviews["version"].as_str().unwrap_or("?"),
                reviews["podname"].as_str().unwrap_or("?"),
            ));
            for r in reviews["reviews"].as_array().into_iter().flatten() {
                let rating = match r.get("rating") {
                    Some(x) if x.get("stars").is_some() => format!(
                        " [{} {} stars from ratings {}]",
                        x["stars"],
                        x["color"].as_str().unwrap_or(""),
                        reviews["ratingsPod"].as_str().unwrap_or("?")
                    ),
                    Some(x) => format!(" [ratings error: {}]", x["error"].as_str().unwrap_or("")),
                    None => String::new(),
                };
                out.push_str(&format!(
                    "  {}: {}{rating}\n",
                    r["reviewer"].as_str().unwrap_or(""),
                    r["text"].as_str().unwrap_or("")
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_select_services() {
        assert_eq!(
            Bookinfo::for_image_name("examples-bookinfo-reviews-v3"),
            Some(Bookinfo::Reviews("v3".into()))
        );
        assert_eq!(
            Bookinfo::for_image_name("examples-bookinfo-productpage-v1"),
            Some(Bookinfo::Productpage)
        );
        assert_eq!(
            Bookinfo::for_image_name("examples-bookinfo-reviews-v9"),
            None
        );
        assert_eq!(Bookinfo::for_image_name("examples-helloworld-v1"), None);
    }

    #[tokio::test]
    async fn leaf_services_answer_with_their_pod() {
        let (code, _, body) = respond(&Bookinfo::Ratings, "ratings-v1-0", "/ratings/0").await;
        assert_eq!(code, 200);
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["ratings"]["Reviewer1"], 5);
        assert_eq!(v["podname"], "ratings-v1-0");
        let (code, _, _) = respond(&Bookinfo::Details, "d", "/nope").await;
        assert_eq!(code, 404);
    }

    #[test]
    fn the_page_shows_every_service_or_the_error() {
        let details = json!({"podname": "details-v1-0", "pages": 200, "type": "paperback", "publisher": "PublisherA", "ISBN-10": "1234567890"});
        let reviews = json!({"version": "v2", "podname": "reviews-v2-0", "ratingsPod": "ratings-v1-0",
            "reviews": [{"reviewer": "Reviewer1", "text": "t", "rating": {"stars": 5, "color": "black"}}]});
        let page = productpage("productpage-v1-0", &details, &reviews);
        assert!(
            page.contains("Book Details (details details-v1-0): 200 pages"),
            "{page}"
        );
        assert!(
            page.contains("Book Reviews (reviews-v2 reviews-v2-0)"),
            "{page}"
        );
        assert!(
            page.contains("[5 black stars from ratings ratings-v1-0]"),
            "{page}"
        );
        let page = productpage(
            "p",
            &json!({"error": "details at x:80: HTTP 503"}),
            &reviews,
        );
        assert!(
            page.contains("Book Details: error: details at x:80: HTTP 503"),
            "{page}"
        );
    }
}
