//! Event data for people: what each kind of event holds (PFP §10.4), read
//! leniently. The data is hostile: nothing here fails, every read is
//! bounds-checked, strings are cut short and their control characters
//! escaped, so a log cannot forge lines on a terminal.

use super::reader::Reader;
use super::Event;

/// The longest text shown for one event.
const MAX_SHOWN: usize = 120;

pub(super) fn describe(event: &Event) -> String {
    let data = event.data.as_slice();
    let text = match event.event_type.0 {
        // EV_POST_CODE, EV_ACTION, EV_EFI_ACTION: ASCII strings.
        0x0000_0001 | 0x0000_0005 | 0x8000_0007 => ascii(data),
        // EV_S_CRTM_VERSION: UTF-16.
        0x0000_0008 => utf16_or_ascii(data),
        // EV_IPL: UTF-16 (systemd-stub's section names) or ASCII (GRUB).
        0x0000_000D => utf16_or_ascii(data),
        0x0000_0004 => format!("separator {}", hex_short(data)),
        0x0000_0006 => tagged(data),
        0x0000_0003 => no_action(data),
        0x8000_0001 | 0x8000_0002 | 0x8000_000C | 0x8000_00E0 => variable(data),
        0x8000_0003..=0x8000_0005 => image_load(data),
        0x8000_0006 => gpt(data),
        0x8000_0008 => blob(data),
        _ => hex_short(data),
    };
    cut(&text)
}

/// Escapes everything but printable ASCII, and cuts at [`MAX_SHOWN`].
fn cut(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if out.len() >= MAX_SHOWN {
            out.push_str("...");
            break;
        }
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

fn ascii(data: &[u8]) -> String {
    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

fn utf16(data: &[u8]) -> String {
    let units: Vec<u16> = data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let end = units.iter().position(|u| *u == 0).unwrap_or(units.len());
    String::from_utf16_lossy(&units[..end])
}

/// UTF-16 when every other byte is zero (ASCII in UTF-16), else ASCII.
fn utf16_or_ascii(data: &[u8]) -> String {
    let looks_utf16 =
        data.len() >= 2 && data.len() % 2 == 0 && data.iter().skip(1).step_by(2).all(|b| *b == 0);
    if looks_utf16 {
        utf16(data)
    } else {
        ascii(data)
    }
}

fn hex_short(data: &[u8]) -> String {
    if data.len() <= 16 {
        hex::encode(data)
    } else {
        format!("{}... ({} bytes)", hex::encode(&data[..16]), data.len())
    }
}

/// TCG_PCClientTaggedEvent: taggedEventID u32, taggedEventDataSize u32, data.
fn tagged(data: &[u8]) -> String {
    let mut r = Reader::new(data);
    let (Ok(id), Ok(size)) = (r.u32("tag"), r.u32("size")) else {
        return hex_short(data);
    };
    match r.take(size as usize, "tagged data") {
        Ok(d) => format!("tag 0x{id:08x}: {}", ascii(d)),
        Err(_) => hex_short(data),
    }
}

fn no_action(data: &[u8]) -> String {
    let end = data.iter().take(16).position(|b| *b == 0).unwrap_or(data.len().min(16));
    format!("{} ({} bytes)", ascii(&data[..end]), data.len())
}

/// UEFI_VARIABLE_DATA: VariableName GUID, UnicodeNameLength u64 (characters),
/// VariableDataLength u64, UnicodeName, VariableData.
fn variable(data: &[u8]) -> String {
    let mut r = Reader::new(data);
    let parsed = (|| {
        let guid = guid(r.take(16, "guid").ok()?);
        let name_len = usize::try_from(r.u64("name length").ok()?).ok()?;
        let data_len = r.u64("data length").ok()?;
        let name = utf16(r.take(name_len.checked_mul(2)?, "name").ok()?);
        Some(format!("{name} ({guid}), {data_len} bytes"))
    })();
    parsed.unwrap_or_else(|| hex_short(data))
}

/// UEFI_IMAGE_LOAD_EVENT: ImageLocationInMemory u64, ImageLengthInMemory u64,
/// ImageLinkTimeAddress u64, LengthOfDevicePath u64, DevicePath.
fn image_load(data: &[u8]) -> String {
    let mut r = Reader::new(data);
    let parsed = (|| {
        let _location = r.u64("location").ok()?;
        let length = r.u64("length").ok()?;
        let _link = r.u64("link address").ok()?;
        let path_len = usize::try_from(r.u64("path length").ok()?).ok()?;
        let path = device_path(r.take(path_len, "device path").ok()?);
        Some(format!("image of {length} bytes, {path}"))
    })();
    parsed.unwrap_or_else(|| hex_short(data))
}

/// A device path's file name nodes, or its node types.
fn device_path(mut data: &[u8]) -> String {
    let mut parts = Vec::new();
    while data.len() >= 4 && parts.len() < 16 {
        let (kind, sub, len) = (data[0], data[1], usize::from(u16::from_le_bytes([data[2], data[3]])));
        if len < 4 || len > data.len() {
            break;
        }
        let body = &data[4..len];
        match (kind, sub) {
            (0x7f, _) => break,
            (0x04, 0x04) => parts.push(utf16(body)),
            (0x04, 0x01) => parts.push("hard disk".to_owned()),
            (0x04, 0x03) if body.len() >= 16 => parts.push(format!("vendor {}", guid(&body[..16]))),
            (0x04, 0x06) if body.len() >= 16 => parts.push(format!("firmware file {}", guid(&body[..16]))),
            (0x04, 0x07) if body.len() >= 16 => parts.push(format!("firmware volume {}", guid(&body[..16]))),
            (k, s) => parts.push(format!("node {k:02x}/{s:02x}")),
        }
        data = &data[len..];
    }
    if parts.is_empty() {
        "no device path".to_owned()
    } else {
        format!("path {}", parts.join(" / "))
    }
}

fn gpt(data: &[u8]) -> String {
    // UEFI_GPT_DATA: the partition table header (signature [8], revision
    // u32, HeaderSize u32, ...; HeaderSize bytes), then NumberOfPartitions u64.
    let mut r = Reader::new(data);
    let header_size =
        r.take(8, "signature").ok().and_then(|_| r.u32("revision").ok()).and_then(|_| r.u32("size").ok());
    match header_size.and_then(|size| data.get(size as usize..size as usize + 8)) {
        Some(n) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(n);
            format!("GPT with {} partitions", u64::from_le_bytes(a))
        }
        None => hex_short(data),
    }
}

fn blob(data: &[u8]) -> String {
    let mut r = Reader::new(data);
    match (r.u64("base"), r.u64("length")) {
        (Ok(base), Ok(length)) => format!("firmware blob at 0x{base:x}, {length} bytes"),
        _ => hex_short(data),
    }
}

/// A GUID in its registry form (the first three fields little-endian).
fn guid(b: &[u8]) -> String {
    if b.len() != 16 {
        return hex::encode(b);
    }
    format!(
        "{:08x}-{:04x}-{:04x}-{}-{}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        hex::encode(&b[8..10]),
        hex::encode(&b[10..16])
    )
}

#[cfg(test)]
mod tests {
    use super::super::EventType;
    use super::*;

    fn event(t: u32, data: &[u8]) -> Event {
        Event { number: 1, pcr: 0, event_type: EventType(t), digests: Vec::new(), data: data.to_vec() }
    }

    #[test]
    fn control_characters_are_escaped_and_long_text_cut() {
        let e = event(0x8000_0007, b"evil\x1b[2J\nline");
        assert_eq!(e.describe(), "evil\\u{1b}[2J\\nline");
        let long = event(0x8000_0007, &[b'a'; 500]);
        assert!(long.describe().len() < 140 && long.describe().ends_with("..."));
    }

    #[test]
    fn malformed_data_falls_back_to_hex() {
        assert_eq!(event(0x8000_0001, &[1, 2, 3]).describe(), "010203");
        assert_eq!(event(0x0000_0006, &[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).describe(), "01000000ffffffff");
        // A device path node claiming more bytes than there are.
        let mut load = vec![0u8; 24];
        load.extend_from_slice(&8u64.to_le_bytes());
        load.extend_from_slice(&[4, 4, 0xff, 0x7f, 0, 0, 0, 0]);
        assert_eq!(event(0x8000_0003, &load).describe(), "image of 0 bytes, no device path");
        // A GPT event: a 92-byte header, then the number of partitions.
        let mut gpt = b"EFI PART".to_vec();
        gpt.extend_from_slice(&0x0001_0000u32.to_le_bytes());
        gpt.extend_from_slice(&92u32.to_le_bytes());
        gpt.resize(92, 0);
        gpt.extend_from_slice(&1u64.to_le_bytes());
        assert_eq!(event(0x8000_0006, &gpt).describe(), "GPT with 1 partitions");
        assert_eq!(event(0x8000_0006, &gpt[..95]).describe(), hex_short(&gpt[..95]));
    }
}
