//! Runbook step 5: click-to-chat links, correctly URL-encoded, and their QR code.

use std::io::IsTerminal;
use std::path::Path;

use crate::StepError;

/// Both link forms for a number (any formatting; digits are kept) and an optional text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    pub api: String,
    pub wa_me: String,
}

/// The number in full international form, digits only: no `+`, spaces, dashes, leading
/// zeros (`00` international prefix included).
pub fn normalise_number(raw: &str) -> String {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    digits.trim_start_matches('0').to_string()
}

/// Percent-encodes everything but RFC 3986's unreserved characters (so `&`, `#`, `+`, `=`,
/// `?`, spaces, umlauts and emoji are all safe inside a query value).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(*b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn links(number: &str, text: Option<&str>) -> Links {
    let n = normalise_number(number);
    match text.filter(|t| !t.is_empty()) {
        Some(t) => {
            let t = encode(t);
            Links {
                api: format!("https://api.whatsapp.com/send?phone={n}&text={t}"),
                wa_me: format!("https://wa.me/{n}?text={t}"),
            }
        }
        None => Links {
            api: format!("https://api.whatsapp.com/send?phone={n}"),
            wa_me: format!("https://wa.me/{n}"),
        },
    }
}

/// Prints both links, the QR code of the wa.me link on a terminal, and writes it as PNG.
pub fn run(number: &str, text: Option<&str>, png: Option<&Path>) -> Result<(), StepError> {
    let l = links(number, text);
    println!("link: +{}", normalise_number(number));
    println!("  {}", l.api);
    println!("  {}", l.wa_me);
    let code = qrcode::QrCode::new(l.wa_me.as_bytes())
        .map_err(|e| StepError::failed("QR code", e.to_string()))?;
    if std::io::stdout().is_terminal() {
        let text = code
            .render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build();
        println!("{text}");
    }
    if let Some(path) = png {
        write_png(&code, path)
            .map_err(|e| StepError::failed(format!("PNG {}", path.display()), e))?;
        println!("  QR code written to {}", path.display());
    }
    Ok(())
}

fn write_png(code: &qrcode::QrCode, path: &Path) -> Result<(), String> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let width = code.width();
    let colors = code.to_colors();
    let side = (width + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for y in 0..width {
        for x in 0..width {
            if colors[y * width + x] == qrcode::Color::Dark {
                for dy in 0..SCALE {
                    let row = (y + QUIET) * SCALE + dy;
                    let start = row * side + (x + QUIET) * SCALE;
                    pixels[start..start + SCALE].fill(0);
                }
            }
        }
    }
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), side as u32, side as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| e.to_string())?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tricky_texts_are_encoded() {
        let cases = [
            ("Hello World", "Hello%20World"),
            ("Fish & Chips", "Fish%20%26%20Chips"),
            ("Order #42", "Order%20%2342"),
            ("1+1=2", "1%2B1%3D2"),
            ("Grüße aus Köln", "Gr%C3%BC%C3%9Fe%20aus%20K%C3%B6ln"),
            ("Hi 👋", "Hi%20%F0%9F%91%8B"),
            ("a?b/c", "a%3Fb%2Fc"),
            ("100% sure", "100%25%20sure"),
            ("line\nbreak", "line%0Abreak"),
        ];
        for (text, want) in cases {
            assert_eq!(encode(text), want, "{text}");
        }
    }

    #[test]
    fn numbers_are_digits_only() {
        for raw in [
            "+49 151 12345678",
            "0049-151-12345678",
            "49 (151) 123 456 78",
            "4915112345678",
        ] {
            assert_eq!(normalise_number(raw), "4915112345678", "{raw}");
        }
    }

    #[test]
    fn both_link_forms() {
        let l = links("+49 151 12345678", Some("Hallo & tschüss"));
        assert_eq!(
            l.api,
            "https://api.whatsapp.com/send?phone=4915112345678&text=Hallo%20%26%20tsch%C3%BCss"
        );
        assert_eq!(
            l.wa_me,
            "https://wa.me/4915112345678?text=Hallo%20%26%20tsch%C3%BCss"
        );
        let l = links("4915112345678", None);
        assert_eq!(l.wa_me, "https://wa.me/4915112345678");
    }
}
