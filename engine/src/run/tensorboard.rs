//! TensorBoard event files, written while a run goes on, so `tensorboard --logdir <output>`
//! shows a live run: training loss and learning rate, per-stage PSNR, evaluation results and a
//! few restored images.
//!
//! The format (TensorFlow's `events.out.tfevents.*`): a sequence of records, each
//! `u64 length | u32 masked CRC-32C of the length | data | u32 masked CRC-32C of the data`
//! (little-endian), the data an `Event` protocol buffer: `wall_time` (1, double), `step` (2,
//! int64), `file_version` (3, string, first record only) or `summary` (5): repeated `value`
//! (1) with `tag` (1), `simple_value` (2, float) or `image` (4: height 1, width 2, colorspace
//! 3, PNG bytes 4). The few fields are encoded here by hand; [`read`] decodes them back by the
//! same rules (the tests hold every record's framing and checksums).
//!
//! Each process writes files of its own (a name with the time, host and process id), one
//! record at a time and flushed, so a killed run leaves every record it wrote whole and a
//! resumed one adds a file beside it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const MASK_DELTA: u32 = 0xa282_ead8;

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(MASK_DELTA)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, ((field as u64) << 3) | wire as u64);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// What one summary value holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f32),
    /// A PNG image.
    Image {
        height: u32,
        width: u32,
        png: Vec<u8>,
    },
}

fn event(wall_time: f64, step: i64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut e = vec![];
    key(&mut e, 1, 1);
    e.extend_from_slice(&wall_time.to_le_bytes());
    key(&mut e, 2, 0);
    varint(&mut e, step as u64);
    body(&mut e);
    e
}

fn summary_event(wall_time: f64, step: i64, values: &[(&str, Value)]) -> Vec<u8> {
    event(wall_time, step, |e| {
        let mut summary = vec![];
        for (tag, v) in values {
            let mut value = vec![];
            bytes_field(&mut value, 1, tag.as_bytes());
            match v {
                Value::Scalar(x) => {
                    key(&mut value, 2, 5);
                    value.extend_from_slice(&x.to_le_bytes());
                }
                Value::Image { height, width, png } => {
                    let mut img = vec![];
                    key(&mut img, 1, 0);
                    varint(&mut img, *height as u64);
                    key(&mut img, 2, 0);
                    varint(&mut img, *width as u64);
                    key(&mut img, 3, 0);
                    varint(&mut img, 3); // RGB
                    bytes_field(&mut img, 4, png);
                    bytes_field(&mut value, 4, &img);
                }
            }
            bytes_field(&mut summary, 1, &value);
        }
        bytes_field(e, 5, &summary);
    })
}

fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut r = Vec::with_capacity(data.len() + 16);
    r.extend_from_slice(&len);
    r.extend_from_slice(&masked_crc(&len).to_le_bytes());
    r.extend_from_slice(data);
    r.extend_from_slice(&masked_crc(data).to_le_bytes());
    r
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One event file of one run (a folder TensorBoard lists as a run).
pub struct EventWriter {
    file: std::fs::File,
    path: PathBuf,
}

impl EventWriter {
    /// A new event file in `dir` (created), named so that TensorBoard reads it and no other
    /// process's file is overwritten.
    pub fn create(dir: &Path) -> std::io::Result<EventWriter> {
        std::fs::create_dir_all(dir)?;
        let wall = now();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty() && !h.contains('/'))
            .unwrap_or_else(|| "localhost".into());
        // Several steps of one process may write to one run in the same second.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}.{seq}.mio",
            wall as u64,
            std::process::id()
        ));
        let file = std::fs::File::options()
            .create_new(true)
            .append(true)
            .open(&path)?;
        let mut w = EventWriter { file, path };
        let first = event(wall, 0, |e| bytes_field(e, 3, b"brain.Event:2"));
        w.write(&first)?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        // One write call per record: a reader (or a kill) never sees half of one.
        self.file.write_all(&record(data))?;
        self.file.flush()
    }

    /// Scalars and images at one step.
    pub fn values(&mut self, step: i64, values: &[(&str, Value)]) -> std::io::Result<()> {
        self.write(&summary_event(now(), step, values))
    }

    pub fn scalar(&mut self, tag: &str, step: i64, v: f32) -> std::io::Result<()> {
        self.values(step, &[(tag, Value::Scalar(v))])
    }

    /// An 8-bit RGB image.
    pub fn image(
        &mut self,
        tag: &str,
        step: i64,
        img: &mio_stdlib::image::Image,
    ) -> std::io::Result<()> {
        let png = img.png_bytes().map_err(std::io::Error::other)?;
        self.values(
            step,
            &[(
                tag,
                Value::Image {
                    height: img.height as u32,
                    width: img.width as u32,
                    png,
                },
            )],
        )
    }
}

/// A model's TensorBoard run, `<output>/tensorboard/<workflow>/<model>/`, written as a step
/// goes on. Writing is best effort: the first failure (a full disk) is said once and the
/// step goes on without it, as nothing downstream reads these files.
pub(crate) struct Board {
    writer: Option<EventWriter>,
}

/// A name as one folder: `/` and characters shells and TensorBoard's run names stumble on
/// become `_`.
fn folder_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.=,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Board {
    pub fn open(jf: &crate::job::JobFile, workflow: &str, model: &str) -> Board {
        let output = jf.store.parent().unwrap_or(&jf.store);
        let dir = output
            .join("tensorboard")
            .join(folder_name(workflow))
            .join(folder_name(model));
        match EventWriter::create(&dir) {
            Ok(w) => Board { writer: Some(w) },
            Err(e) => {
                eprintln!("warning: {}: no TensorBoard events ({e})", dir.display());
                Board { writer: None }
            }
        }
    }

    fn keep(&mut self, r: std::io::Result<()>) {
        if let (Err(e), Some(w)) = (r, &self.writer) {
            eprintln!(
                "warning: {}: TensorBoard events stop here ({e})",
                w.path().display()
            );
            self.writer = None;
        }
    }

    pub fn scalar(&mut self, tag: &str, step: i64, v: f64) {
        if let Some(w) = &mut self.writer {
            let r = w.scalar(tag, step, v as f32);
            self.keep(r);
        }
    }

    pub fn image(&mut self, tag: &str, step: i64, img: &mio_stdlib::image::Image) {
        if let Some(w) = &mut self.writer {
            let r = w.image(tag, step, img);
            self.keep(r);
        }
    }
}

/// One decoded event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    pub values: Vec<(String, Value)>,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.at >= self.b.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at).ok_or("a varint runs past the end")?;
            self.at += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err("a varint of more than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let end = end.ok_or("a field runs past the end")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// The next (field, wire type) and, for length-delimited fields, the bytes; other wire
    /// types' values come back as their 8 bytes (fixed) or varint.
    fn field(&mut self) -> Result<(u64, Field<'a>), String> {
        let k = self.varint()?;
        let f = match k & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed64(self.take(8)?.try_into().expect("8 bytes")),
            2 => {
                let n = self.varint()? as usize;
                Field::Bytes(self.take(n)?)
            }
            5 => Field::Fixed32(self.take(4)?.try_into().expect("4 bytes")),
            w => return Err(format!("wire type {w} is not used by events")),
        };
        Ok((k >> 3, f))
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Fixed32([u8; 4]),
    Bytes(&'a [u8]),
}

fn decode_value(b: &[u8]) -> Result<(String, Value), String> {
    let mut r = Reader { b, at: 0 };
    let (mut tag, mut value) = (String::new(), None);
    while !r.done() {
        match r.field()? {
            (1, Field::Bytes(t)) => tag = String::from_utf8_lossy(t).into_owned(),
            (2, Field::Fixed32(x)) => value = Some(Value::Scalar(f32::from_le_bytes(x))),
            (4, Field::Bytes(img)) => {
                let mut r = Reader { b: img, at: 0 };
                let (mut height, mut width, mut png) = (0, 0, vec![]);
                while !r.done() {
                    match r.field()? {
                        (1, Field::Varint(h)) => height = h as u32,
                        (2, Field::Varint(w)) => width = w as u32,
                        (4, Field::Bytes(p)) => png = p.to_vec(),
                        _ => {}
                    }
                }
                value = Some(Value::Image { height, width, png });
            }
            _ => {}
        }
    }
    let value = value.ok_or(format!("`{tag}` holds no value"))?;
    Ok((tag, value))
}

fn decode_event(b: &[u8]) -> Result<Event, String> {
    let mut r = Reader { b, at: 0 };
    let mut e = Event {
        wall_time: 0.0,
        step: 0,
        file_version: None,
        values: vec![],
    };
    while !r.done() {
        match r.field()? {
            (1, Field::Fixed64(x)) => e.wall_time = f64::from_le_bytes(x),
            (2, Field::Varint(s)) => e.step = s as i64,
            (3, Field::Bytes(v)) => e.file_version = Some(String::from_utf8_lossy(v).into()),
            (5, Field::Bytes(s)) => {
                let mut r = Reader { b: s, at: 0 };
                while !r.done() {
                    if let (1, Field::Bytes(v)) = r.field()? {
                        e.values.push(decode_value(v)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(e)
}

/// Reads an event file back, checking every record's framing and both checksums.
pub fn read(path: &Path) -> Result<Vec<Event>, String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut at = 0;
    let mut out = vec![];
    while at < b.len() {
        let head = b
            .get(at..at + 12)
            .ok_or(format!("a record header is cut at byte {at}"))?;
        let len_bytes = &head[..8];
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        let crc = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        if crc != masked_crc(len_bytes) {
            return Err(format!("the length's checksum is wrong at byte {at}"));
        }
        let data = b
            .get(at + 12..at + 12 + len)
            .ok_or(format!("a record is cut at byte {at}"))?;
        let tail = b
            .get(at + 12 + len..at + 16 + len)
            .ok_or(format!("a record's checksum is cut at byte {at}"))?;
        if u32::from_le_bytes(tail.try_into().expect("4 bytes")) != masked_crc(data) {
            return Err(format!("the data's checksum is wrong at byte {at}"));
        }
        out.push(decode_event(data)?);
        at += 16 + len;
    }
    Ok(out)
}

/// Every event file under `dir` (recursively), as TensorBoard finds them.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains("tfevents"))
        {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_crc32c_masked_as_tensorflow_masks_it() {
        // CRC-32C of "123456789" is 0xe3069283 (the standard check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let c = 0xe306_9283u32;
        assert_eq!(
            masked_crc(b"123456789"),
            c.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn records_read_back_and_a_damaged_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("mio-tb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = EventWriter::create(&dir.join("run a")).unwrap();
        w.scalar("train/loss", 7, 0.25).unwrap();
        let img = mio_stdlib::image::Image::new(3, 2);
        w.image("restored/x", 9, &img).unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        assert_eq!(files_under(&dir), vec![path.clone()]);
        let ev = read(&path).unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].file_version.as_deref(), Some("brain.Event:2"));
        assert_eq!(ev[1].step, 7);
        assert_eq!(
            ev[1].values,
            vec![("train/loss".into(), Value::Scalar(0.25))]
        );
        match &ev[2].values[0].1 {
            Value::Image { height, width, png } => {
                assert_eq!((*height, *width), (2, 3));
                assert_eq!(&png[1..4], b"PNG");
            }
            v => panic!("not an image: {v:?}"),
        }
        let mut b = std::fs::read(&path).unwrap();
        let n = b.len();
        b[n - 30] ^= 1;
        std::fs::write(&path, &b).unwrap();
        assert!(read(&path).unwrap_err().contains("checksum"));
        std::fs::write(&path, &b[..n - 3]).unwrap();
        assert!(read(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
