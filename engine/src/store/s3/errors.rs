//! The SDK's errors as the engine's kinds: what asking again may fix is `Transient`, what is not
//! there `NotFound`, a range outside an object `Corrupt`, anything else `Io`. The engine's
//! retries and its messages depend on this one mapping.

use std::fmt;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::{Error, ErrorKind};

fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static, R: fmt::Debug>(
    what: &str,
    e: SdkError<E, R>,
) -> Error {
    let (kind, detail) = match &e {
        // A connector error the client made itself (a bad TLS setup, a malformed endpoint) is
        // not going away by asking again; a refused or reset connection, a timeout is.
        SdkError::DispatchFailure(d) if d.is_user() => {
            (ErrorKind::Io, format!("{}", DisplayErrorContext(&e)))
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (ErrorKind::Transient, format!("{}", DisplayErrorContext(&e)))
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("").to_string();
            let kind = match code.as_str() {
                "NoSuchKey" | "NotFound" | "NoSuchUpload" => ErrorKind::NotFound,
                "InvalidRange" => ErrorKind::Corrupt,
                "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable"
                | "Throttling" => ErrorKind::Transient,
                _ => ErrorKind::Io,
            };
            (
                kind,
                format!("{code} {}", se.err().message().unwrap_or(""))
                    .trim()
                    .to_string(),
            )
        }
        _ => (ErrorKind::Io, format!("{}", DisplayErrorContext(&e))),
    };
    Error::new(kind, format!("S3 {what}: {detail}"))
}

/// Status-code based classification for responses whose error body names no code (HEAD, 5xx
/// from proxies).
pub(super) fn classify_status<
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
>(
    what: &str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Error {
    let status = match &e {
        SdkError::ServiceError(se) => Some(se.raw().status().as_u16()),
        _ => None,
    };
    let mut err = classify(what, e);
    // A HEAD's error has no body: without its status the message would end in nothing.
    if let Some(code) = status
        && err.message().trim_end().ends_with(':')
    {
        let why = match code {
            403 => "HTTP 403 Forbidden: the key was refused or may not use this bucket (check \
                    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the key's policy), or this \
                    machine's clock is 15 minutes or more from the server's"
                .to_string(),
            400 => "HTTP 400 Bad Request (a region the server does not answer to?)".to_string(),
            other => format!("HTTP {other}"),
        };
        err = Error::new(err.kind(), format!("{} {why}", err.message().trim_end()));
    }
    match status {
        Some(404) => err = Error::new(ErrorKind::NotFound, err.message().to_string()),
        Some(416) => err = Error::new(ErrorKind::Corrupt, err.message().to_string()),
        // 501: the server does not do this (a copy of a part): asking again changes nothing.
        Some(501) => err = Error::new(ErrorKind::Io, err.message().to_string()),
        Some(408 | 429 | 500..=599) => {
            err = Error::new(ErrorKind::Transient, err.message().to_string())
        }
        _ => {}
    }
    err
}
