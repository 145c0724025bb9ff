//! PE/COFF images (UEFI applications): the headers and sections a verifier
//! needs, and the Authenticode digest that UEFI firmware measures into PCR 4
//! for each boot application it starts.
//!
//! Read from Microsoft's "PE Format" specification (the DOS stub's
//! `e_lfanew` at 0x3c, the COFF header, the optional header of a PE32 or
//! PE32+ image, the section table) and its "Windows Authenticode Portable
//! Executable Signature Format" (the image hash): the headers up to the
//! checksum, then up to the certificate table's data directory entry, then
//! the rest of the headers; the sections with raw data in file order; then
//! whatever follows the last section except the attribute certificates.
//! EDK2's measured boot (`Tcg2Dxe`, `MeasurePeImageAndExtend`) hashes
//! exactly that, with SHA-256 for the SHA-256 PCR bank.
//!
//! A PE image given to the verifier is the owner's own file, but the same
//! parser reads sections out of any image: every offset and size is checked
//! against the file, nothing panics.

use sha2::{Digest as _, Sha256};

/// A PE image that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeError {
    /// A structure or region lies outside the file.
    #[error("PE image: {what} ({offset}..{end}) lies outside the file of {len} bytes")]
    OutOfBounds {
        /// What was read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// Where it ends.
        end: u64,
        /// The file's length.
        len: usize,
    },
    /// A field has a value a PE image cannot have.
    #[error("PE image: {what}: expected {expected}, found {found}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// What is allowed.
        expected: String,
        /// What was found.
        found: String,
    },
}

/// One section header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The name, up to 8 bytes, NULs removed (e.g. `.linux`, `.cmdline`).
    pub name: String,
    /// Its size in memory.
    pub virtual_size: u32,
    /// Its address relative to the image base.
    pub virtual_address: u32,
    /// Its size in the file.
    pub raw_size: u32,
    /// Its offset in the file.
    pub raw_offset: u32,
}

/// A parsed PE image.
#[derive(Clone, Debug)]
pub struct PeImage<'a> {
    bytes: &'a [u8],
    /// Offset of the optional header's checksum field.
    checksum_offset: usize,
    /// Offset of the certificate table's data directory entry, if the
    /// optional header has one.
    cert_entry_offset: Option<usize>,
    /// The certificate table's size (0 if none).
    cert_size: u32,
    /// SizeOfHeaders.
    size_of_headers: u32,
    /// The sections, in the table's order.
    pub sections: Vec<Section>,
    /// COFF TimeDateStamp.
    pub timestamp: u32,
}

const PE32_MAGIC: u16 = 0x10b;
const PE32_PLUS_MAGIC: u16 = 0x20b;
/// The certificate table is data directory 4 (IMAGE_DIRECTORY_ENTRY_SECURITY).
const CERT_DIRECTORY: u32 = 4;
/// A PE image has at most 96 sections (the PE format's limit).
const MAX_SECTIONS: u16 = 96;

fn read<const N: usize>(bytes: &[u8], offset: usize, what: &'static str) -> Result<[u8; N], PeError> {
    offset
        .checked_add(N)
        .and_then(|end| bytes.get(offset..end))
        .map(|s| {
            let mut a = [0u8; N];
            a.copy_from_slice(s);
            a
        })
        .ok_or(PeError::OutOfBounds {
            what,
            offset: offset as u64,
            end: offset as u64 + N as u64,
            len: bytes.len(),
        })
}

fn u16_at(bytes: &[u8], offset: usize, what: &'static str) -> Result<u16, PeError> {
    read::<2>(bytes, offset, what).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], offset: usize, what: &'static str) -> Result<u32, PeError> {
    read::<4>(bytes, offset, what).map(u32::from_le_bytes)
}

fn region<'a>(bytes: &'a [u8], offset: u64, len: u64, what: &'static str) -> Result<&'a [u8], PeError> {
    let end = offset.saturating_add(len);
    usize::try_from(offset)
        .ok()
        .zip(usize::try_from(end).ok())
        .and_then(|(o, e)| bytes.get(o..e))
        .ok_or(PeError::OutOfBounds { what, offset, end, len: bytes.len() })
}

impl<'a> PeImage<'a> {
    /// Parses the headers and the section table of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<PeImage<'a>, PeError> {
        if read::<2>(bytes, 0, "DOS header")? != *b"MZ" {
            return Err(PeError::Invalid {
                what: "DOS signature",
                expected: "\"MZ\"".into(),
                found: format!("{:02x?}", bytes.get(..2).unwrap_or_default()),
            });
        }
        let pe = u32_at(bytes, 0x3c, "e_lfanew")? as usize;
        if read::<4>(bytes, pe, "PE signature")? != *b"PE\0\0" {
            return Err(PeError::Invalid {
                what: "PE signature",
                expected: "\"PE\\0\\0\"".into(),
                found: "other bytes".into(),
            });
        }
        let coff = pe + 4;
        let number_of_sections = u16_at(bytes, coff + 2, "NumberOfSections")?;
        let timestamp = u32_at(bytes, coff + 4, "TimeDateStamp")?;
        let optional_size = u16_at(bytes, coff + 16, "SizeOfOptionalHeader")?;
        let optional = coff + 20;
        let magic = u16_at(bytes, optional, "optional header magic")?;
        let (rva_count_offset, directories) = match magic {
            PE32_MAGIC => (optional + 92, optional + 96),
            PE32_PLUS_MAGIC => (optional + 108, optional + 112),
            other => {
                return Err(PeError::Invalid {
                    what: "optional header magic",
                    expected: "0x10b (PE32) or 0x20b (PE32+)".into(),
                    found: format!("0x{other:x}"),
                })
            }
        };
        let checksum_offset = optional + 64;
        let size_of_headers = u32_at(bytes, optional + 60, "SizeOfHeaders")?;
        let rva_count = u32_at(bytes, rva_count_offset, "NumberOfRvaAndSizes")?;
        let optional_end = optional + usize::from(optional_size);
        let (cert_entry_offset, cert_size) = if rva_count > CERT_DIRECTORY {
            let entry = directories + 8 * CERT_DIRECTORY as usize;
            if entry + 8 > optional_end {
                return Err(PeError::Invalid {
                    what: "NumberOfRvaAndSizes",
                    expected: "directories within SizeOfOptionalHeader".into(),
                    found: format!("{rva_count} directories in {optional_size} bytes"),
                });
            }
            (Some(entry), u32_at(bytes, entry + 4, "certificate table size")?)
        } else {
            (None, 0)
        };
        if checksum_offset + 4 > size_of_headers as usize || optional_end > size_of_headers as usize {
            return Err(PeError::Invalid {
                what: "SizeOfHeaders",
                expected: format!(
                    "at least {} (the headers it covers)",
                    optional_end.max(checksum_offset + 4)
                ),
                found: size_of_headers.to_string(),
            });
        }
        region(bytes, 0, u64::from(size_of_headers), "headers")?;
        if number_of_sections > MAX_SECTIONS {
            return Err(PeError::Invalid {
                what: "NumberOfSections",
                expected: format!("at most {MAX_SECTIONS}"),
                found: number_of_sections.to_string(),
            });
        }
        let mut sections = Vec::with_capacity(usize::from(number_of_sections));
        for i in 0..usize::from(number_of_sections) {
            let at = optional_end + 40 * i;
            let raw = read::<40>(bytes, at, "section header")?;
            let name_end = raw[..8].iter().position(|b| *b == 0).unwrap_or(8);
            let field = |o: usize| u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
            sections.push(Section {
                name: String::from_utf8_lossy(&raw[..name_end]).into_owned(),
                virtual_size: field(8),
                virtual_address: field(12),
                raw_size: field(16),
                raw_offset: field(20),
            });
        }
        for s in &sections {
            region(bytes, u64::from(s.raw_offset), u64::from(s.raw_size), "section data")?;
        }
        Ok(PeImage {
            bytes,
            checksum_offset,
            cert_entry_offset,
            cert_size,
            size_of_headers,
            sections,
            timestamp,
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// A section's data as it lies in memory once loaded: its first
    /// `virtual_size` bytes (what a loader maps and systemd-stub measures).
    /// A section whose size in memory exceeds its data in the file (memory
    /// the loader would zero) is refused: no section a UKI measures has one.
    pub fn section_data(&self, section: &Section) -> Result<&'a [u8], PeError> {
        if section.virtual_size > section.raw_size {
            return Err(PeError::Invalid {
                what: "section size in memory",
                expected: format!(
                    "at most its {} bytes in the file (section {})",
                    section.raw_size, section.name
                ),
                found: section.virtual_size.to_string(),
            });
        }
        region(self.bytes, u64::from(section.raw_offset), u64::from(section.virtual_size), "section data")
    }

    /// The Authenticode image digest with SHA-256 (see the module
    /// documentation): what the firmware extends into PCR 4 when it starts
    /// this image as a boot application.
    pub fn authenticode_sha256(&self) -> Result<[u8; 32], PeError> {
        let b = self.bytes;
        let headers = self.size_of_headers as usize;
        let mut h = Sha256::new();
        h.update(&b[..self.checksum_offset]);
        match self.cert_entry_offset {
            Some(entry) => {
                h.update(&b[self.checksum_offset + 4..entry]);
                h.update(&b[entry + 8..headers]);
            }
            None => h.update(&b[self.checksum_offset + 4..headers]),
        }
        let mut hashed = u64::from(self.size_of_headers);
        let mut sorted: Vec<&Section> = self.sections.iter().filter(|s| s.raw_size > 0).collect();
        sorted.sort_by_key(|s| s.raw_offset);
        for s in sorted {
            h.update(region(b, u64::from(s.raw_offset), u64::from(s.raw_size), "section data")?);
            hashed += u64::from(s.raw_size);
        }
        let len = b.len() as u64;
        if len > hashed {
            let cert = u64::from(self.cert_size);
            if len < hashed + cert {
                return Err(PeError::Invalid {
                    what: "certificate table size",
                    expected: format!("at most the {} bytes after the sections", len - hashed),
                    found: cert.to_string(),
                });
            }
            h.update(region(b, hashed, len - hashed - cert, "data after the sections")?);
        }
        Ok(h.finalize().into())
    }
}

/// Test images, shared with the UKI tests.
/// Builds small images for tests and for the fuzz targets' seeds.
#[cfg(any(test, feature = "simulator"))]
pub(crate) mod tests_support {
    use super::PE32_PLUS_MAGIC;

    /// A minimal PE32+ image: DOS header, COFF header, a PE32+ optional
    /// header with 16 data directories, `sections` (name, data), and `tail`
    /// after the sections.
    pub(crate) fn image(sections: &[(&str, &[u8])], tail: &[u8], cert_size: u32) -> Vec<u8> {
        let optional_size = 112 + 16 * 8;
        let headers_end = 0x40 + 4 + 20 + optional_size + 40 * sections.len();
        let size_of_headers = headers_end.div_ceil(0x200) * 0x200;
        let mut b = vec![0u8; size_of_headers];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        b[0x40..0x44].copy_from_slice(b"PE\0\0");
        let coff = 0x44;
        b[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        b[coff + 2..coff + 4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        b[coff + 16..coff + 18].copy_from_slice(&(optional_size as u16).to_le_bytes());
        let opt = coff + 20;
        b[opt..opt + 2].copy_from_slice(&PE32_PLUS_MAGIC.to_le_bytes());
        b[opt + 60..opt + 64].copy_from_slice(&(size_of_headers as u32).to_le_bytes());
        b[opt + 64..opt + 68].copy_from_slice(&0xdead_beefu32.to_le_bytes()); // checksum
        b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let mut raw = size_of_headers;
        let mut table = opt + optional_size;
        let mut body = Vec::new();
        for (i, (name, data)) in sections.iter().enumerate() {
            let padded = data.len().div_ceil(0x200) * 0x200;
            b[table..table + name.len()].copy_from_slice(name.as_bytes());
            b[table + 8..table + 12].copy_from_slice(&(data.len() as u32).to_le_bytes());
            b[table + 12..table + 16].copy_from_slice(&(0x1000 * (i as u32 + 1)).to_le_bytes());
            b[table + 16..table + 20].copy_from_slice(&(padded as u32).to_le_bytes());
            b[table + 20..table + 24].copy_from_slice(&(raw as u32).to_le_bytes());
            let mut d = data.to_vec();
            d.resize(padded, 0);
            body.extend_from_slice(&d);
            raw += padded;
            table += 40;
        }
        b.extend_from_slice(&body);
        if cert_size > 0 {
            let entry = opt + 112 + 4 * 8;
            b[entry..entry + 4].copy_from_slice(&((raw + tail.len()) as u32).to_le_bytes());
            b[entry + 4..entry + 8].copy_from_slice(&cert_size.to_le_bytes());
        }
        b.extend_from_slice(tail);
        b.extend(std::iter::repeat_n(0xc5, cert_size as usize));
        b
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::image;
    use super::*;

    #[test]
    fn sections_and_their_data_are_read() {
        let img = image(&[(".text", b"code"), (".cmdline", b"console=ttyS0")], b"", 0);
        let pe = PeImage::parse(&img).unwrap();
        let names: Vec<&str> = pe.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [".text", ".cmdline"]);
        assert_eq!(pe.section_data(&pe.sections[1]).unwrap(), b"console=ttyS0");
        let mut big = pe.sections[1].clone();
        big.virtual_size = 0x201;
        assert!(pe.section_data(&big).unwrap_err().to_string().contains("size in memory"));
    }

    #[test]
    fn authenticode_skips_the_checksum_and_the_certificate_table() {
        let signed = image(&[(".text", b"code")], b"tail", 64);
        let pe = PeImage::parse(&signed).unwrap();
        let digest = pe.authenticode_sha256().unwrap();
        // What the digest covers, by hand: headers without the checksum
        // and the certificate entry, the section, the tail, no certificates.
        let opt = 0x44 + 20;
        let entry = opt + 112 + 32;
        let headers = 0x200;
        let mut h = Sha256::new();
        h.update(&signed[..opt + 64]);
        h.update(&signed[opt + 68..entry]);
        h.update(&signed[entry + 8..headers]);
        h.update(&signed[headers..headers + 0x200]);
        h.update(b"tail");
        assert_eq!(digest, <[u8; 32]>::from(h.finalize()));

        // The checksum, the certificate entry and the certificates do not
        // change the digest; a byte of a section or of the tail does.
        let mut other = signed.clone();
        other[opt + 64] ^= 0xff;
        other[entry] ^= 0x01; // the certificate table's offset
        let last = other.len() - 1;
        other[last] ^= 0xff;
        assert_eq!(PeImage::parse(&other).unwrap().authenticode_sha256().unwrap(), digest);
        let mut code = signed.clone();
        code[headers] ^= 1;
        assert_ne!(PeImage::parse(&code).unwrap().authenticode_sha256().unwrap(), digest);
        let mut tail = signed;
        tail[headers + 0x200] ^= 1;
        assert_ne!(PeImage::parse(&tail).unwrap().authenticode_sha256().unwrap(), digest);
    }

    #[test]
    fn malformed_images_are_refused_without_panic() {
        let img = image(&[(".text", b"code"), (".linux", &[7; 700])], b"", 0);
        for n in 0..img.len() {
            if let Ok(pe) = PeImage::parse(&img[..n]) {
                let _ = pe.authenticode_sha256();
            }
        }
        for i in 0..0x200 {
            let mut b = img.clone();
            b[i] ^= 0xff;
            if let Ok(pe) = PeImage::parse(&b) {
                let _ = pe.authenticode_sha256();
                for s in &pe.sections {
                    if let Ok(data) = pe.section_data(s) {
                        assert_eq!(data.len(), s.virtual_size as usize);
                    }
                }
            }
        }
        let e = PeImage::parse(b"ZM").unwrap_err().to_string();
        assert!(e.contains("DOS signature"), "{e}");
        let mut far = img.clone();
        far[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(PeImage::parse(&far), Err(PeError::OutOfBounds { what: "PE signature", .. })));
        // A certificate table larger than what follows the sections.
        let mut cert = image(&[(".text", b"code")], b"", 0);
        let entry = 0x44 + 20 + 112 + 32;
        cert[entry + 4..entry + 8].copy_from_slice(&0x10_0000u32.to_le_bytes());
        cert.push(0);
        let e = PeImage::parse(&cert).unwrap().authenticode_sha256().unwrap_err().to_string();
        assert!(e.contains("certificate table size"), "{e}");
    }
}
