//! Request parsing and JSON responses shared by the handlers.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use percent_encoding::percent_decode_str;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::preferences::validate_id;

/// Default number of results.
pub const DEFAULT_LIMIT: usize = 10;

/// Largest accepted `limit`.
pub const MAX_LIMIT: usize = 100;

/// Largest accepted request body, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Builds a JSON response.
pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_string(value).expect("response types serialise to JSON");
    Response::builder().status(status).header("content-type", "application/json").body(Body::Text(body)).expect("static headers are valid")
}

/// Returns the single value of a query parameter, rejecting a repeated one.
pub fn query_parameter(request: &Request, name: &str) -> Result<Option<String>> {
    let parameters = request.query_string_parameters();
    match parameters.all(name) {
        None => Ok(None),
        Some(values) if values.len() == 1 => Ok(Some(values[0].to_string())),
        Some(values) => Err(Error::invalid(name, values.join(","), "must be given once")),
    }
}

/// Reads `limit` from the query string: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn parse_limit(request: &Request) -> Result<usize> {
    let Some(text) = query_parameter(request, "limit")? else {
        return Ok(DEFAULT_LIMIT);
    };
    // Digits only: `parse` alone would also take a sign such as "+5".
    let digits = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    match text.parse::<usize>() {
        Ok(limit) if digits && (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        Ok(_) if digits => Err(Error::invalid("limit", text, format!("must be between 1 and {MAX_LIMIT}"))),
        _ => Err(Error::invalid("limit", text, format!("must be a whole number between 1 and {MAX_LIMIT}"))),
    }
}

/// Returns the path segments, percent-decoded, rejecting a segment that is not
/// UTF-8 once decoded, so two different raw ids never map to one.
pub fn path_segments(request: &Request) -> Result<Vec<String>> {
    let path = request.raw_http_path();
    let path = if path.is_empty() { request.uri().path().to_string() } else { path.to_string() };
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            percent_decode_str(segment)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| Error::invalid("path", segment, "is not valid UTF-8 once percent-decoded"))
        })
        .collect()
}

/// A matched route with its path parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /items/popular`
    PopularItems,
    /// `GET /items/{item_id}/similar`
    SimilarItems { item_id: String },
    /// `GET /users/{user_id}/recommendations`
    Recommendations { user_id: String },
    /// `POST /users/{user_id}/events`
    PostEvents { user_id: String },
    /// `GET /users/{user_id}/preferences`
    Preferences { user_id: String },
}

/// Matches the request against the API's routes.
///
/// Matching looks at the end of the path, so a stage or function-URL prefix
/// in front of the route does not matter.
pub fn route(request: &Request) -> Result<Route> {
    let segments = path_segments(request)?;
    let tail: Vec<&str> = segments.iter().rev().take(3).rev().map(String::as_str).collect();
    let method = request.method();
    let path = format!("/{}", segments.join("/"));

    let route = match (method, tail.as_slice()) {
        (&Method::GET, [.., "items", "popular"]) => Route::PopularItems,
        (&Method::GET, ["items", item_id, "similar"]) => Route::SimilarItems { item_id: item_id.to_string() },
        (&Method::GET, ["users", user_id, "recommendations"]) => Route::Recommendations { user_id: user_id.to_string() },
        (&Method::POST, ["users", user_id, "events"]) => Route::PostEvents { user_id: user_id.to_string() },
        (&Method::GET, ["users", user_id, "preferences"]) => Route::Preferences { user_id: user_id.to_string() },
        (_, [.., "items", "popular"] | ["items", _, "similar"] | ["users", _, "recommendations" | "preferences"]) => {
            return Err(Error::MethodNotAllowed { method: method.to_string(), path, allowed: "GET" });
        }
        (_, ["users", _, "events"]) => {
            return Err(Error::MethodNotAllowed { method: method.to_string(), path, allowed: "POST" });
        }
        _ => return Err(Error::RouteNotFound { method: method.to_string(), path }),
    };
    match &route {
        Route::SimilarItems { item_id } => validate_id("item_id", item_id)?,
        Route::Recommendations { user_id } | Route::PostEvents { user_id } | Route::Preferences { user_id } => {
            validate_id("user_id", user_id)?
        }
        Route::PopularItems => {}
    }
    Ok(route)
}

/// Returns the JSON body after checking its content type and size.
pub fn json_body(request: &Request) -> Result<&[u8]> {
    let content_type =
        request.headers().get("content-type").map(|value| value.to_str().unwrap_or("<not text>").to_string()).unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if media_type != "application/json" && !media_type.ends_with("+json") {
        return Err(Error::UnsupportedMediaType(content_type));
    }
    let body: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge { size: body.len(), max: MAX_BODY_BYTES });
    }
    if body.is_empty() {
        return Err(Error::InvalidJson("the body is empty: send a JSON event or {\"events\": [...]}".into()));
    }
    Ok(body)
}
