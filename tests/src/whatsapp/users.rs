//! Login (with the first password change), the password rules, and API users.

use axum::{http::HeaderMap, response::Response};
use serde_json::{json, Value};
use time::{macros::format_description, OffsetDateTime};

use super::{
    answers::{
        error_response, error_with, invalid, json_object, ok_meta, required_str, Object, Reject,
    },
    meta, Shared, User, WaState, CODE_ACCESS_DENIED, CODE_ALREADY_EXISTS, PASSWORD_CHANGE_REQUIRED,
};
use crate::server::{basic_auth, json_response, lock, random_string};

/// What is wrong with a password by the client's rules (8 to 64 characters, at least one
/// upper-case letter, one lower-case letter, one digit and one special, i.e.
/// non-alphanumeric, character), or `None` if it is acceptable.
pub(super) fn password_problem(password: &str) -> Option<&'static str> {
    let len = password.chars().count();
    if len < 8 {
        Some("must be at least 8 characters long")
    } else if len > 64 {
        Some("must be at most 64 characters long")
    } else if !password.chars().any(char::is_uppercase) {
        Some("must contain an upper-case letter")
    } else if !password.chars().any(char::is_lowercase) {
        Some("must contain a lower-case letter")
    } else if !password.chars().any(|c| c.is_ascii_digit()) {
        Some("must contain a digit")
    } else if password.chars().all(char::is_alphanumeric) {
        Some("must contain a special (non-alphanumeric) character")
    } else {
        None
    }
}

/// A required password field checked by the password rules, or the 400 answer.
fn required_password<'a>(obj: &'a Object, field: &str) -> Result<&'a str, Reject> {
    let password = required_str(obj, field)?;
    match password_problem(password) {
        Some(problem) => Err(Box::new(invalid(field, problem))),
        None => Ok(password),
    }
}

fn valid_username(name: &str) -> bool {
    let len = name.chars().count();
    (1..=64).contains(&len)
        && !name
            .chars()
            .any(|c| matches!(c, ':' | '/' | '%') || c.is_whitespace() || c.is_control())
}

/// `POST /v1/users`.
pub(super) fn create(st: &mut WaState, body: &[u8]) -> Response {
    let obj = match json_object(body) {
        Ok(obj) => obj,
        Err(resp) => return *resp,
    };
    let username = match required_str(&obj, "username") {
        Ok(name) if valid_username(name) => name,
        Ok(_) => {
            return invalid(
                "username",
                "must be 1 to 64 characters without ':', '/', '%' or whitespace",
            )
        }
        Err(resp) => return *resp,
    };
    let password = match required_password(&obj, "password") {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    if st.users.contains_key(username) {
        return error_with(
            409,
            CODE_ALREADY_EXISTS,
            "Resource already exists",
            &format!("User {username} already exists"),
        );
    }
    st.users
        .insert(username.to_owned(), User::new(username, password));
    json_response(
        201,
        &json!({"users": [{"username": username}], "meta": meta()}),
    )
}

/// `PUT /v1/users/{name}`: a new password.
pub(super) fn set_password(st: &mut WaState, name: &str, body: &[u8]) -> Response {
    if !st.users.contains_key(name) {
        return error_response(404, &format!("No user {name}"));
    }
    let obj = match json_object(body) {
        Ok(obj) => obj,
        Err(resp) => return *resp,
    };
    let password = match required_password(&obj, "password") {
        Ok(p) => p.to_owned(),
        Err(resp) => return *resp,
    };
    if let Some(user) = st.users.get_mut(name) {
        user.password = password;
        user.must_change = false;
    }
    ok_meta(200)
}

/// `POST /v1/users/login`: see the module documentation.
pub(super) fn login(state: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    // `None`: no body at all; `Some(Err)`: not JSON.
    let parsed =
        (!body.iter().all(u8::is_ascii_whitespace)).then(|| serde_json::from_slice::<Value>(body));
    let mut st = lock(state);
    if let Some(Ok(v)) = &parsed {
        if let Some(p) = v.get("new_password").and_then(Value::as_str) {
            st.new_passwords.push(p.to_owned());
        }
    }
    let Some((user, password)) = basic_auth(headers) else {
        return error_response(401, "Missing or malformed HTTP Basic credentials");
    };
    let Some(must_change) = st
        .users
        .get(&user)
        .filter(|u| u.password == password)
        .map(|u| u.must_change)
    else {
        return error_response(401, "Invalid username or password");
    };
    let new_password = match &parsed {
        None => None,
        Some(Ok(Value::Object(obj))) => match obj.get("new_password") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => Some(p.clone()),
            Some(_) => return invalid("new_password", "must be a string"),
        },
        Some(_) => return invalid("body", "must be a JSON object"),
    };
    match new_password {
        None if must_change => {
            return error_with(
                400,
                CODE_ACCESS_DENIED,
                "Access denied",
                PASSWORD_CHANGE_REQUIRED,
            )
        }
        None => {}
        Some(p) => {
            if let Some(problem) = password_problem(&p) {
                return invalid("new_password", problem);
            }
            if let Some(u) = st.users.get_mut(&user) {
                u.password = p;
                u.must_change = false;
            }
        }
    }
    let token = random_string(64);
    st.tokens.insert(token.clone(), user);
    st.issued.push(token.clone());
    st.successful_logins += 1;
    let expires = (OffsetDateTime::now_utc() + time::Duration::days(7))
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]+00:00"
        ))
        .unwrap_or_default();
    json_response(
        200,
        &json!({"users": [{"token": token, "expires_after": expires}], "meta": meta()}),
    )
}
