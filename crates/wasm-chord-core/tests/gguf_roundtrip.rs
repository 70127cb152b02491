//! Write files with every metadata value type and several tensor types, read
//! them back (from bytes and through a memory map) and compare everything.

use wasm_chord_core::gguf::{
    parse_header, Array, GgufError, GgufFile, GgufWriter, Metadata, Value,
};
use wasm_chord_core::GgmlType;

/// SplitMix64: a small seeded generator so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn f32(&mut self) -> f32 {
        (self.next() as i64 as f64 / i64::MAX as f64 * 1e6) as f32
    }
    fn string(&mut self) -> String {
        const PIECES: [&str; 8] = ["a", "Zé", "▁the", "<0x0A>", "日本", "🙂", " ", "\u{0}"];
        let n = self.below(6);
        (0..n).map(|_| PIECES[self.below(8) as usize]).collect()
    }
}

fn sample_metadata(rng: &mut Rng) -> Metadata {
    let mut m = Metadata::new();
    m.insert("general.architecture", Value::String("llama".into()));
    m.insert("t.u8", Value::U8(rng.next() as u8));
    m.insert("t.i8", Value::I8(rng.next() as i8));
    m.insert("t.u16", Value::U16(rng.next() as u16));
    m.insert("t.i16", Value::I16(rng.next() as i16));
    m.insert("t.u32", Value::U32(rng.next() as u32));
    m.insert("t.i32", Value::I32(rng.next() as i32));
    m.insert("t.f32", Value::F32(rng.f32()));
    m.insert("t.bool", Value::Bool(rng.next() & 1 == 1));
    m.insert("t.string", Value::String(rng.string()));
    m.insert("t.u64", Value::U64(rng.next()));
    m.insert("t.i64", Value::I64(rng.next() as i64));
    m.insert("t.f64", Value::F64(rng.f32() as f64 * 1.5e-3));
    let n = 5 + rng.below(20) as usize;
    m.insert("a.u8", Value::Array(Array::U8(rng.bytes(n))));
    m.insert(
        "a.i8",
        Value::Array(Array::I8((0..n).map(|_| rng.next() as i8).collect())),
    );
    m.insert(
        "a.u16",
        Value::Array(Array::U16((0..n).map(|_| rng.next() as u16).collect())),
    );
    m.insert(
        "a.i16",
        Value::Array(Array::I16((0..n).map(|_| rng.next() as i16).collect())),
    );
    m.insert(
        "a.u32",
        Value::Array(Array::U32((0..n).map(|_| rng.next() as u32).collect())),
    );
    m.insert(
        "a.i32",
        Value::Array(Array::I32((0..n).map(|_| rng.next() as i32).collect())),
    );
    m.insert(
        "a.f32",
        Value::Array(Array::F32((0..n).map(|_| rng.f32()).collect())),
    );
    m.insert(
        "a.bool",
        Value::Array(Array::Bool((0..n).map(|_| rng.next() & 1 == 1).collect())),
    );
    m.insert(
        "a.string",
        Value::Array(Array::String((0..n).map(|_| rng.string()).collect())),
    );
    m.insert(
        "a.u64",
        Value::Array(Array::U64((0..n).map(|_| rng.next()).collect())),
    );
    m.insert(
        "a.i64",
        Value::Array(Array::I64((0..n).map(|_| rng.next() as i64).collect())),
    );
    m.insert(
        "a.f64",
        Value::Array(Array::F64((0..n).map(|_| rng.f32() as f64).collect())),
    );
    m.insert("a.empty", Value::Array(Array::U32(Vec::new())));
    // Arrays of arrays, mixed element types, nested to the cap (4 levels).
    let nested = Array::Array(vec![
        Array::Array(vec![
            Array::Array(vec![Array::I32(vec![rng.next() as i32, -1])]),
            Array::String(vec![rng.string()]),
        ]),
        Array::F32(vec![rng.f32()]),
        Array::Array(Vec::new()),
    ]);
    m.insert("a.nested", Value::Array(nested));
    m
}

/// (name, dims, type) of the tensors written.
const TENSORS: [(&str, &[u64], GgmlType); 7] = [
    ("token_embd.weight", &[64, 3], GgmlType::Q8_0),
    ("blk.0.attn_norm.weight", &[7], GgmlType::F32),
    ("blk.0.attn_q.weight", &[256, 2], GgmlType::Q4_K),
    ("blk.0.ffn_down.weight", &[256, 1, 2], GgmlType::Q6_K),
    ("blk.0.ffn_up.weight", &[32, 3], GgmlType::Q5_0),
    ("half", &[5, 3], GgmlType::F16),
    ("ids", &[2, 2, 2, 2], GgmlType::I32),
];

fn build(version: u32, alignment: Option<u32>, seed: u64) -> (GgufWriter, Metadata, Vec<Vec<u8>>) {
    let mut rng = Rng(seed);
    let mut meta = sample_metadata(&mut rng);
    if let Some(a) = alignment {
        meta.insert("general.alignment", Value::U32(a));
    }
    let mut w = GgufWriter::new();
    w.set_version(version).unwrap();
    w.set_metadata(meta.clone());
    let mut datas = Vec::new();
    for (name, dims, ty) in TENSORS {
        let n: u64 = dims.iter().product();
        let bytes = (n / ty.block_size() as u64 * ty.type_size() as u64) as usize;
        let data = rng.bytes(bytes);
        w.add_tensor(name, dims, ty, data.as_slice()).unwrap();
        datas.push(data);
    }
    (w, meta, datas)
}

fn check(file: &GgufFile, version: u32, alignment: u64, meta: &Metadata, datas: &[Vec<u8>]) {
    assert_eq!(file.header().version, version);
    assert_eq!(file.header().alignment, alignment);
    assert_eq!(file.header().data_offset % alignment, 0);
    assert_eq!(file.metadata(), meta);
    assert_eq!(file.tensors().len(), TENSORS.len());
    for (info, ((name, dims, ty), data)) in file.tensors().iter().zip(TENSORS.iter().zip(datas)) {
        assert_eq!(info.name, *name);
        assert_eq!(info.dims, *dims);
        assert_eq!(info.ggml_type, *ty);
        assert_eq!(info.offset % alignment, 0);
        assert_eq!(info.n_bytes(), data.len() as u64);
        assert_eq!(file.tensor_data(info), data.as_slice(), "{name}");
        assert_eq!(file.tensor(name), Some(info));
    }
    assert_eq!(file.tensor("absent"), None);
}

#[test]
fn round_trip_from_bytes_and_open() {
    for (i, (version, alignment)) in [
        (3, None),
        (2, None),
        (3, Some(64u32)),
        (2, Some(1)),
        (3, Some(4096)),
    ]
    .into_iter()
    .enumerate()
    {
        let (w, meta, datas) = build(version, alignment, 0x5eed + i as u64);
        let bytes = w.to_bytes().unwrap();
        let align = alignment.map_or(32, u64::from);
        assert_eq!(bytes.len() as u64 % align, 0);

        let header = parse_header(&bytes, bytes.len() as u64).unwrap();
        let file = GgufFile::from_bytes(bytes.clone()).unwrap();
        assert_eq!(&header, file.header());
        assert_eq!(file.file_len(), bytes.len() as u64);
        check(&file, version, align, &meta, &datas);

        let path = std::env::temp_dir().join(format!(
            "wasm-chord-gguf-rt-{}-{i}.gguf",
            std::process::id()
        ));
        let mut f = std::fs::File::create(&path).unwrap();
        w.write_to(&mut f).unwrap();
        drop(f);
        let mapped = GgufFile::open(&path).unwrap();
        check(&mapped, version, align, &meta, &datas);
        assert_eq!(mapped.bytes(), bytes.as_slice());
        drop(mapped);
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn header_parses_from_prefix_and_reports_truncation() {
    let (w, meta, _) = build(3, None, 7);
    let bytes = w.to_bytes().unwrap();
    let full = parse_header(&bytes, bytes.len() as u64).unwrap();
    let data_offset = full.data_offset as usize;
    // The header alone is enough: tensor data may still be streaming.
    let h = parse_header(&bytes[..data_offset], bytes.len() as u64).unwrap();
    assert_eq!(h, full);
    assert_eq!(h.metadata, meta);
    // Shorter prefixes say how much more they need; following `needed`
    // reaches a prefix that parses, ending before the padding at the latest.
    let mut len = 0;
    let mut steps = 0;
    loop {
        match parse_header(&bytes[..len], bytes.len() as u64) {
            Err(GgufError::Truncated {
                needed, available, ..
            }) => {
                assert_eq!(available, len as u64);
                assert!(needed > len as u64, "needed {needed} at {len}");
                len = needed as usize;
                steps += 1;
            }
            Ok(h) => {
                assert_eq!(h, full);
                break;
            }
            Err(other) => panic!("prefix {len}: {other:?}"),
        }
    }
    assert!(
        len <= data_offset && len > data_offset - 32,
        "{len} vs {data_offset}"
    );
    assert!(steps > 50, "{steps}");
    assert!(matches!(
        parse_header(&bytes[..len - 1], bytes.len() as u64),
        Err(GgufError::Truncated { .. })
    ));
    // A range for each tensor lies in the data section.
    for t in &h.tensors {
        let r = h.tensor_range(t).unwrap();
        assert!(r.start >= h.data_offset && r.end <= bytes.len() as u64);
        assert_eq!(r.end - r.start, t.n_bytes());
    }
}

#[test]
fn file_without_tensors_has_empty_data_section() {
    let mut w = GgufWriter::new();
    w.metadata_mut().insert(
        "tokenizer.ggml.tokens",
        Value::Array(Array::String(vec!["a".into(), "b".into()])),
    );
    let bytes = w.to_bytes().unwrap();
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();
    assert!(file.tensors().is_empty());
    assert!(file.header().data_offset <= file.file_len());
    // Files that stop right after the header (as vocab-only files do) parse too.
    let end = bytes.len() - bytes.iter().rev().take_while(|&&b| b == 0).count();
    let cut = GgufFile::from_bytes(bytes[..end].to_vec()).unwrap();
    assert_eq!(cut.metadata(), file.metadata());
    assert_eq!(cut.header().data_offset, end as u64);
}

#[test]
fn foreign_tensor_info_gives_empty_data() {
    let (w, _, _) = build(3, None, 9);
    let file = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    let mut info = file.tensors()[0].clone();
    info.offset = file.file_len();
    assert_eq!(file.tensor_data(&info), &[] as &[u8]);
    assert_eq!(file.try_tensor_data(&info), None);
    info.offset = u64::MAX - 3;
    assert_eq!(file.try_tensor_data(&info), None);
}
