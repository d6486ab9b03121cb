//! Registering the number: `POST /v1/account` sends a code, `POST /v1/account/verify` uses it.

use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{
    answers::{all_digits, error_with, invalid, json_object, ok_meta, required_str, Reject},
    meta, WaState, CODE_GENERIC, CODE_WRONG_VERIFICATION_CODE, DEFAULT_VERIFIED_NAME,
};
use crate::server::json_response;

/// `POST /v1/account`.
pub(super) fn request_code(st: &mut WaState, body: &[u8]) -> Response {
    st.account_requests.push(
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
    );
    let obj = match json_object(body) {
        Ok(obj) => obj,
        Err(resp) => return *resp,
    };
    let check = || -> Result<(), Reject> {
        let cc = required_str(&obj, "cc")?;
        if !all_digits(cc) || cc.len() > 3 || cc.starts_with('0') {
            return Err(Box::new(invalid(
                "cc",
                "must be 1 to 3 digits, not starting with 0",
            )));
        }
        let number = required_str(&obj, "phone_number")?;
        if !all_digits(number) {
            return Err(Box::new(invalid("phone_number", "must be digits only")));
        }
        if cc.len() + number.len() > 15 {
            return Err(Box::new(invalid(
                "phone_number",
                "with the country code, at most 15 digits",
            )));
        }
        let method = required_str(&obj, "method")?;
        if method != "sms" && method != "voice" {
            return Err(Box::new(invalid("method", "must be \"sms\" or \"voice\"")));
        }
        let cert = required_str(&obj, "cert")?;
        if cert.is_empty()
            || base64::engine::general_purpose::STANDARD
                .decode(cert)
                .is_err()
        {
            return Err(Box::new(invalid("cert", "must be the base64 certificate")));
        }
        match obj.get("pin") {
            None | Some(Value::Null) => {}
            Some(Value::String(pin)) if pin.len() == 6 && all_digits(pin) => {}
            Some(_) => return Err(Box::new(invalid("pin", "must be 6 digits"))),
        }
        Ok(())
    };
    if let Err(resp) = check() {
        return *resp;
    }
    if st.registered {
        return ok_meta(201);
    }
    st.code_pending = true;
    json_response(
        202,
        &json!({"account": [{"vname": DEFAULT_VERIFIED_NAME}], "meta": meta()}),
    )
}

/// `POST /v1/account/verify`.
pub(super) fn verify_code(st: &mut WaState, body: &[u8]) -> Response {
    let obj = match json_object(body) {
        Ok(obj) => obj,
        Err(resp) => return *resp,
    };
    let code = match required_str(&obj, "code") {
        Ok(code) => code,
        Err(resp) => return *resp,
    };
    if !st.code_pending {
        let details = if st.registered {
            "Already registered: no verification code pending"
        } else {
            "No verification code pending: request one with POST /v1/account"
        };
        return error_with(400, CODE_GENERIC, "Generic error", details);
    }
    if code != st.verification_code {
        return error_with(
            400,
            CODE_WRONG_VERIFICATION_CODE,
            "Incorrect verification code",
            "code: does not match the code sent",
        );
    }
    st.code_pending = false;
    st.registered = true;
    ok_meta(201)
}
