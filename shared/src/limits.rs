//! Bounds on what is read from another party and on what is quoted from it: one client's
//! huge answer must not take the memory of a 128 MiB instance, and one API's long message must
//! not make an outcome, a log line, a mail or an event huge.

/// The most of an answer that is read (WhatsApp client, Google APIs); a longer one fails
/// without being read further.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// The most characters of a text another party wrote (an API's message, a body excerpt) that
/// is quoted in a reason.
pub const MAX_QUOTE_CHARS: usize = 300;

/// `text` cut to at most `max` characters; a cut text ends in `…` (counted).
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some(_) if max == 0 => String::new(),
        Some(_) => {
            let end = text.char_indices().nth(max - 1).map_or(0, |(i, _)| i);
            format!("{}…", &text[..end])
        }
    }
}

/// `text`, another party's words, cut to [`MAX_QUOTE_CHARS`].
pub fn quote(text: &str) -> String {
    cut(text, MAX_QUOTE_CHARS)
}

/// Why an answer's body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than [`MAX_ANSWER_BYTES`]: not read further.
    TooLarge,
    /// The connection failed while reading.
    Transport(reqwest::Error),
}

/// The body of `resp`, read chunk by chunk and never past [`MAX_ANSWER_BYTES`] (an announced
/// longer length fails before anything is read).
pub async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// "more than 256 KiB", for messages.
pub fn too_large_words() -> String {
    format!("more than {} KiB", MAX_ANSWER_BYTES / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server on 127.0.0.1 that answers every connection with `len` bytes, announced by a
    /// content-length or chunked; answers its URL.
    async fn serve(len: usize, content_length: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = c.read(&mut buf).await;
                    let head = if content_length {
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n")
                    } else {
                        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".into()
                    };
                    let _ = c.write_all(head.as_bytes()).await;
                    let chunk = vec![b'x'; 16 * 1024];
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        let ok = if content_length {
                            c.write_all(&chunk[..n]).await
                        } else {
                            let mut framed = format!("{n:x}\r\n").into_bytes();
                            framed.extend_from_slice(&chunk[..n]);
                            framed.extend_from_slice(b"\r\n");
                            c.write_all(&framed).await
                        };
                        if ok.is_err() {
                            return;
                        }
                        left -= n;
                    }
                    if !content_length {
                        let _ = c.write_all(b"0\r\n\r\n").await;
                    }
                });
            }
        });
        format!("http://{addr}/")
    }

    async fn read(len: usize, content_length: bool) -> Result<usize, String> {
        let url = serve(len, content_length).await;
        let resp = reqwest::get(url).await.map_err(|e| e.to_string())?;
        match read_body(resp).await {
            Ok(b) => Ok(b.len()),
            Err(BodyError::TooLarge) => Err("too large".into()),
            Err(BodyError::Transport(e)) => Err(e.to_string()),
        }
    }

    #[tokio::test]
    async fn answers_are_read_to_256_kib_at_most() {
        for content_length in [true, false] {
            assert_eq!(read(100 * 1024, content_length).await, Ok(100 * 1024));
            assert_eq!(
                read(MAX_ANSWER_BYTES, content_length).await,
                Ok(MAX_ANSWER_BYTES)
            );
            for len in [MAX_ANSWER_BYTES + 1, 50 << 20] {
                assert_eq!(
                    read(len, content_length).await,
                    Err("too large".to_string()),
                    "{len} bytes, content-length: {content_length}"
                );
            }
        }
    }

    #[test]
    fn cut_counts_characters_and_marks_the_cut() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        assert_eq!(cut("äöüß", 3).chars().count(), 3);
        assert_eq!(cut("", 3), "");
        assert_eq!(cut("abc", 0), "");
        let long = "x".repeat(1 << 20);
        assert_eq!(quote(&long).chars().count(), MAX_QUOTE_CHARS);
        assert_eq!(quote("short"), "short");
    }
}
