//! A safe reader for PyTorch `model.pth` state dicts (the zip format of `torch.save` since 1.6).
//! It interprets only the pickle subset a state dict uses: an `OrderedDict` of
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` calls whose storages are
//! persistent ids naming `archive/data/N`. Globals are checked against an allow-list and nothing
//! is ever executed; any other opcode or global is an error that names it. Storages are raw
//! little-endian bytes; offsets and strides are honoured. Hostile files are bounded: pickle
//! nesting depth, stack, memo and copy work are capped; each view is checked against its own
//! geometry and its storage before memory is reserved; only the storages the tensors reach are
//! inflated, and only as far as they reach; weights must be finite. spec: codec.md §8.1.
//! May use: error, weights.

use crate::error::{Error, Result};
use crate::weights::{HostTensor, WeightMap};
use half::{bf16, f16};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

/// Element type of a storage (`torch.FloatStorage` ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageDtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
}

impl StorageDtype {
    fn from_global(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => StorageDtype::F32,
            "DoubleStorage" => StorageDtype::F64,
            "HalfStorage" => StorageDtype::F16,
            "BFloat16Storage" => StorageDtype::BF16,
            "LongStorage" => StorageDtype::I64,
            "IntStorage" => StorageDtype::I32,
            _ => return None,
        })
    }
    pub fn size_bytes(self) -> usize {
        match self {
            StorageDtype::F32 | StorageDtype::I32 => 4,
            StorageDtype::F64 | StorageDtype::I64 => 8,
            StorageDtype::F16 | StorageDtype::BF16 => 2,
        }
    }
    fn to_f32(self, b: &[u8]) -> f32 {
        match self {
            StorageDtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            StorageDtype::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            StorageDtype::F64 => {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            StorageDtype::I64 => {
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            StorageDtype::F16 => f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
            StorageDtype::BF16 => bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
        }
    }
}

/// A tensor as the pickle describes it: a view into a storage file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// The storage's file name under `<archive>/data/`.
    pub storage_key: String,
    pub dtype: StorageDtype,
    /// Element offset into the storage.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// The globals a state dict may name. Anything else is refused before it is used.
#[derive(Clone, Debug, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    Storage(StorageDtype),
}

/// A value on the pickle stack. Containers are reference-counted so memo copies stay cheap, and
/// carry their nesting depth (1 + the deepest item) so the depth cap costs O(1) per item.
#[derive(Clone, Debug)]
enum Value {
    Mark,
    None,
    Bool,
    Int(i64),
    Float,
    Str(Rc<str>),
    Tuple(Rc<Vec<Value>>, u8),
    List(Rc<Vec<Value>>, u8),
    Dict(Rc<Vec<(Value, Value)>>, u8),
    Global(Global),
    Storage { key: String, dtype: StorageDtype },
    Tensor(Rc<TensorRef>),
}

impl Value {
    fn depth(&self) -> u8 {
        match self {
            Value::Tuple(_, d) | Value::List(_, d) | Value::Dict(_, d) => *d,
            _ => 0,
        }
    }
    /// A short name for error messages; never the value itself, whose Debug form can be
    /// exponentially large when memo references share sub-trees.
    fn kind(&self) -> &'static str {
        match self {
            Value::Mark => "MARK",
            Value::None => "None",
            Value::Bool => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Tuple(..) => "tuple",
            Value::List(..) => "list",
            Value::Dict(..) => "dict",
            Value::Global(_) => "global",
            Value::Storage { .. } => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// Limits that keep a hostile pickle from exhausting memory, stack or time.
const MAX_STACK: usize = 1 << 16;
const MAX_MEMO: usize = 1 << 20;
const MAX_RANK: usize = 8;
/// A state dict nests at most ~5 deep (dict -> tensor args -> shape tuple); 32 leaves room for
/// `_metadata` while keeping recursive drop and Debug of any value far from the stack limit.
const MAX_DEPTH: u8 = 32;
/// Elements copied when a shared (memoized) container is mutated; bounds the quadratic
/// "append to a memo copy of a long list" pattern.
const MAX_COPY_WORK: usize = 1 << 26;
/// `data.pkl` of the released codec is ~1 MB; a larger pickle is not a state dict we know.
const MAX_PICKLE_BYTES: u64 = 64 << 20;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
    path: &'a Path,
    copy_work: usize,
}

impl<'a> Machine<'a> {
    fn err(&self, what: impl Into<String>) -> Error {
        Error::checkpoint(
            self.path,
            "data.pkl",
            format!("at byte {}: {}", self.pos, what.into()),
        )
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.err(format!("truncated pickle (need {n} more bytes)"))),
        }
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .take(256)
            .position(|&c| c == b'\n')
            .ok_or_else(|| self.err("GLOBAL name without newline"))?;
        let s =
            std::str::from_utf8(&rest[..n]).map_err(|_| self.err("GLOBAL name is not utf-8"))?;
        self.pos += n + 1;
        Ok(s)
    }
    fn push(&mut self, v: Value) -> Result<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(self.err("pickle stack too deep"));
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> Result<Value> {
        self.stack
            .pop()
            .ok_or_else(|| self.err("pop from empty stack"))
    }
    fn top(&mut self) -> Result<&mut Value> {
        let e = self.err("empty stack");
        self.stack.last_mut().ok_or(e)
    }
    /// Pop everything above the topmost MARK (and the mark itself).
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| self.err("no MARK on the stack"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }
    fn memo_put(&mut self, idx: u32) -> Result<()> {
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&idx) {
            return Err(self.err("pickle memo too large"));
        }
        let v = self.top()?.clone();
        if matches!(v, Value::Mark) {
            return Err(self.err("memoizing a MARK"));
        }
        self.memo.insert(idx, v);
        Ok(())
    }
    fn memo_get(&mut self, idx: u32) -> Result<()> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| self.err(format!("memo {idx} not set")))?;
        self.push(v)
    }

    /// Depth of a new container holding `items`, refused past `MAX_DEPTH`.
    fn depth_of<'v>(&self, items: impl Iterator<Item = &'v Value>) -> Result<u8> {
        let d = items.map(Value::depth).max().unwrap_or(0) + 1;
        if d > MAX_DEPTH {
            return Err(self.err(format!(
                "pickle nests deeper than {MAX_DEPTH} levels (not a state dict)"
            )));
        }
        Ok(d)
    }

    /// Account for copying a shared container of `len` items before it is mutated.
    fn charge_copy(&mut self, shared: bool, len: usize) -> Result<()> {
        if shared {
            self.copy_work = self.copy_work.saturating_add(len);
            if self.copy_work > MAX_COPY_WORK {
                return Err(self.err("pickle copies shared containers too often"));
            }
        }
        Ok(())
    }

    fn push_tuple(&mut self, items: Vec<Value>) -> Result<()> {
        let d = self.depth_of(items.iter())?;
        self.push(Value::Tuple(Rc::new(items), d))
    }

    fn global(&self, module: &str, name: &str) -> Result<Global> {
        Ok(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch", s) if StorageDtype::from_global(s).is_some() => {
                // The guard above proves from_global returns Some.
                Global::Storage(StorageDtype::from_global(s).unwrap_or(StorageDtype::F32))
            }
            _ => {
                return Err(self.err(format!(
                    "global `{module}.{name}` is not allowed in a state dict"
                )))
            }
        })
    }

    fn tuple_n(&mut self, n: usize) -> Result<()> {
        if self.stack.len() < n {
            return Err(self.err("TUPLE with too few items"));
        }
        let items = self.stack.split_off(self.stack.len() - n);
        if items.iter().any(|v| matches!(v, Value::Mark)) {
            return Err(self.err("MARK inside a TUPLEn"));
        }
        self.push_tuple(items)
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("SETITEMS with an odd number of items"));
        }
        let new_depth = self.depth_of(items.iter())?;
        let err = self.err("SETITEM(S) target is not a dict");
        let (shared, len) = match self.top()? {
            Value::Dict(d, _) => (Rc::strong_count(d) > 1, d.len()),
            _ => return Err(err),
        };
        self.charge_copy(shared, len)?;
        if let Value::Dict(d, depth) = self.top()? {
            *depth = (*depth).max(new_depth);
            let d = Rc::make_mut(d);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                d.push((k, v));
            }
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<()> {
        let new_depth = self.depth_of(items.iter())?;
        let err = self.err("APPEND target is not a list");
        let (shared, len) = match self.top()? {
            Value::List(l, _) => (Rc::strong_count(l) > 1, l.len()),
            _ => return Err(err),
        };
        self.charge_copy(shared, len)?;
        if let Value::List(l, depth) = self.top()? {
            *depth = (*depth).max(new_depth);
            Rc::make_mut(l).extend(items);
        }
        Ok(())
    }

    fn reduce(&mut self) -> Result<()> {
        let args = self.pop()?;
        let func = self.pop()?;
        let Value::Tuple(args, _) = args else {
            return Err(self.err("REDUCE arguments are not a tuple"));
        };
        let v = match func {
            Value::Global(Global::OrderedDict) => Value::Dict(Rc::new(Vec::new()), 1),
            Value::Global(Global::RebuildTensorV2) => {
                Value::Tensor(Rc::new(self.rebuild_tensor(&args)?))
            }
            Value::Global(Global::RebuildParameter) => match args.first() {
                Some(Value::Tensor(t)) => Value::Tensor(t.clone()),
                _ => return Err(self.err("_rebuild_parameter without a tensor")),
            },
            other => return Err(self.err(format!("REDUCE of a non-callable {}", other.kind()))),
        };
        self.push(v)
    }

    fn usize_tuple(&self, v: &Value, what: &str) -> Result<Vec<usize>> {
        let Value::Tuple(items, _) = v else {
            return Err(self.err(format!("tensor {what} is not a tuple")));
        };
        if items.len() > MAX_RANK {
            return Err(self.err(format!(
                "tensor {what} has rank {} (> {MAX_RANK})",
                items.len()
            )));
        }
        items
            .iter()
            .map(|x| match x {
                Value::Int(i) => usize::try_from(*i)
                    .map_err(|_| self.err(format!("tensor {what} holds a negative value {i}"))),
                other => Err(self.err(format!("tensor {what} holds a {}", other.kind()))),
            })
            .collect()
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, meta])`.
    fn rebuild_tensor(&self, args: &[Value]) -> Result<TensorRef> {
        if args.len() < 4 {
            return Err(self.err("_rebuild_tensor_v2 with fewer than 4 arguments"));
        }
        let Value::Storage { key, dtype } = &args[0] else {
            return Err(self.err("_rebuild_tensor_v2: first argument is not a storage"));
        };
        let Value::Int(offset) = args[1] else {
            return Err(self.err("_rebuild_tensor_v2: offset is not an int"));
        };
        let offset = usize::try_from(offset).map_err(|_| self.err("negative storage offset"))?;
        let shape = self.usize_tuple(&args[2], "size")?;
        let stride = self.usize_tuple(&args[3], "stride")?;
        if shape.len() != stride.len() {
            return Err(self.err("tensor size and stride ranks differ"));
        }
        Ok(TensorRef {
            storage_key: key.clone(),
            dtype: *dtype,
            offset,
            shape,
            stride,
        })
    }

    /// `('storage', storage_type, key, location, numel)`.
    fn persistent_load(&mut self) -> Result<()> {
        let pid = self.pop()?;
        let Value::Tuple(items, _) = pid else {
            return Err(self.err("persistent id is not a tuple"));
        };
        match items.as_slice() {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), key, _location, _numel]
                if &**tag == "storage" =>
            {
                let key = match key {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    _ => return Err(self.err("storage key is not a string")),
                };
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(self.err(format!("storage key `{key}` is not a plain name")));
                }
                self.push(Value::Storage { key, dtype: *dtype })
            }
            _ => Err(self.err(
                "persistent id is not ('storage', <allowed storage type>, key, location, numel)",
            )),
        }
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(self.err(format!("pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'}' => self.push(Value::Dict(Rc::new(Vec::new()), 1))?,
                b']' => self.push(Value::List(Rc::new(Vec::new()), 1))?,
                b')' => self.push(Value::Tuple(Rc::new(Vec::new()), 1))?,
                b'(' => self.push(Value::Mark)?,
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool)?,
                0x89 => self.push(Value::Bool)?,
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64))?
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v as i64))?
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n <= 8 bytes.
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err(self.err(format!("LONG1 of {n} bytes")));
                    }
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Value::Int(v))?
                }
                b'G' => {
                    // BINFLOAT: no state-dict field needs the value.
                    self.take(8)?;
                    self.push(Value::Float)?
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.u32()? as usize,
                        0x8c => self.u8()? as usize,
                        _ => {
                            let b = self.take(8)?;
                            usize::try_from(u64::from_le_bytes([
                                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                            ]))
                            .map_err(|_| self.err("string length overflows"))?
                        }
                    };
                    let b = self.take(n)?;
                    let s = std::str::from_utf8(b).map_err(|_| self.err("string is not utf-8"))?;
                    self.push(Value::Str(Rc::from(s)))?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(module, name)?;
                    self.push(Value::Global(g))?
                }
                0x93 => {
                    // STACK_GLOBAL (protocol 4): module and name are strings on the stack.
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(m), Value::Str(n)) = (module, name) else {
                        return Err(self.err("STACK_GLOBAL operands are not strings"));
                    };
                    let g = self.global(&m, &n)?;
                    self.push(Value::Global(g))?
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.memo_get(i)?
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_tuple(items)?
                }
                0x85 => self.tuple_n(1)?,
                0x86 => self.tuple_n(2)?,
                0x87 => self.tuple_n(3)?,
                b'l' => {
                    let items = self.pop_mark()?;
                    let d = self.depth_of(items.iter())?;
                    self.push(Value::List(Rc::new(items), d))?
                }
                b'a' | b'e' => {
                    let items = if op == b'a' {
                        vec![self.pop()?]
                    } else {
                        self.pop_mark()?
                    };
                    self.append(items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?
                }
                b'Q' => self.persistent_load()?,
                b'R' => self.reduce()?,
                b'b' => {
                    // BUILD sets instance state; a state dict's only state is `_metadata`
                    // (per-module versions), which inference does not need.
                    let _state = self.pop()?;
                    if !matches!(self.top()?, Value::Dict(..) | Value::Tensor(_)) {
                        return Err(self.err("BUILD on something other than a dict or tensor"));
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                other => {
                    return Err(self.err(format!(
                        "pickle opcode 0x{other:02x} is not supported in a state dict"
                    )))
                }
            }
        }
    }
}

/// Parse a `data.pkl` into `(key, tensor view)` pairs, in file order.
pub fn parse_state_dict_pickle(path: &Path, data: &[u8]) -> Result<Vec<(String, TensorRef)>> {
    let m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        path,
        copy_work: 0,
    };
    let top = m.run()?;
    let Value::Dict(items, _) = top else {
        return Err(Error::checkpoint(
            path,
            "data.pkl",
            "the pickle is not a dict of tensors",
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (k, v) in items.iter() {
        let Value::Str(k) = k else {
            return Err(Error::checkpoint(
                path,
                "data.pkl",
                "a state-dict key is not a string",
            ));
        };
        let Value::Tensor(t) = v else {
            return Err(Error::checkpoint(path, &**k, "value is not a tensor"));
        };
        out.push((k.to_string(), (**t).clone()));
    }
    Ok(out)
}

/// Elements of the storage a view reaches (largest element index + 1; 0 for an empty view),
/// checked with overflow-free arithmetic. A view with more elements than that (stride 0 or
/// overlapping strides) is refused: a state dict never holds one, and it is how a few bytes of
/// storage could claim terabytes of output.
pub fn view_extent(path: &Path, key: &str, t: &TensorRef) -> Result<usize> {
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            Error::checkpoint(
                path,
                key,
                format!("shape {:?} element count overflows", t.shape),
            )
        })?;
    if numel == 0 {
        return Ok(0);
    }
    let mut last = t.offset;
    for (&d, &s) in t.shape.iter().zip(&t.stride) {
        last = (d - 1)
            .checked_mul(s)
            .and_then(|x| x.checked_add(last))
            .ok_or_else(|| {
                Error::checkpoint(
                    path,
                    key,
                    format!("shape {:?} with stride {:?} overflows", t.shape, t.stride),
                )
            })?;
    }
    let extent = last + 1;
    if numel > extent {
        return Err(Error::checkpoint(
            path,
            key,
            format!(
                "view of shape {:?} with stride {:?} has {numel} elements but spans only \
                 {extent} of its storage (overlapping or broadcast strides are not supported)",
                t.shape, t.stride
            ),
        ));
    }
    Ok(extent)
}

/// Gather a (possibly strided) view out of raw storage bytes, widening to f32. The view is
/// checked against the storage before any output memory is reserved.
pub fn materialize(path: &Path, key: &str, t: &TensorRef, bytes: &[u8]) -> Result<HostTensor> {
    let es = t.dtype.size_bytes();
    let n_storage = bytes.len() / es;
    let extent = view_extent(path, key, t)?;
    if extent > n_storage {
        return Err(Error::checkpoint(
            path,
            key,
            format!(
                "view (offset {}, shape {:?}, stride {:?}) reaches element {}, storage `{}` has {n_storage}",
                t.offset,
                t.shape,
                t.stride,
                extent - 1,
                t.storage_key
            ),
        ));
    }
    // view_extent proved numel <= extent <= n_storage, so this neither overflows nor
    // reserves more than the storage already holds.
    let numel: usize = t.shape.iter().product();
    let mut out = Vec::with_capacity(numel);
    if numel > 0 {
        // A size-1 axis never advances, so its stride (which may be anything) is ignored; every
        // other stride is <= extent, so the running index cannot overflow.
        let stride: Vec<usize> = t
            .shape
            .iter()
            .zip(&t.stride)
            .map(|(&d, &s)| if d == 1 { 0 } else { s })
            .collect();
        let rank = t.shape.len();
        let mut idx = vec![0usize; rank];
        let mut lin = t.offset;
        for _ in 0..numel {
            out.push(t.dtype.to_f32(&bytes[lin * es..lin * es + es]));
            // Odometer increment over the shape, tracking the storage index.
            for ax in (0..rank).rev() {
                idx[ax] += 1;
                lin += stride[ax];
                if idx[ax] < t.shape[ax] {
                    break;
                }
                lin -= stride[ax] * t.shape[ax];
                idx[ax] = 0;
            }
        }
    }
    Ok(HostTensor::new(t.shape.clone(), out))
}

/// Bytes of each storage the tensors need, refusing views that do not fit their own geometry
/// and a total output beyond twice the storage (tied weights may share one storage; a hostile
/// file could otherwise name one storage from a million keys).
fn storage_needs(path: &Path, refs: &[(String, TensorRef)]) -> Result<HashMap<String, u64>> {
    let mut need: HashMap<String, u64> = HashMap::new();
    let mut out_elems: u64 = 0;
    for (key, t) in refs {
        let extent = view_extent(path, key, t)? as u64;
        let bytes = extent
            .checked_mul(t.dtype.size_bytes() as u64)
            .ok_or_else(|| {
                Error::checkpoint(
                    path,
                    key,
                    format!("shape {:?} byte size overflows", t.shape),
                )
            })?;
        let e = need.entry(t.storage_key.clone()).or_default();
        *e = (*e).max(bytes);
        out_elems = out_elems.saturating_add(t.shape.iter().product::<usize>() as u64);
    }
    let storage_elems: u64 = need.values().map(|b| b / 2).sum();
    if out_elems > storage_elems.saturating_mul(2).saturating_add(1 << 20) {
        return Err(Error::checkpoint(
            path,
            "data.pkl",
            format!(
                "{} tensors hold {out_elems} elements in total, far more than their storages",
                refs.len()
            ),
        ));
    }
    Ok(need)
}

/// Read every tensor of a `torch.save` zip checkpoint as f32.
pub fn read_pth(path: &Path) -> Result<WeightMap> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        Error::checkpoint(path, "<zip>", format!("not a PyTorch zip checkpoint: {e}"))
    })?;
    // The archive's top folder is named after the file at save time ("archive", "model", ...).
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_string))
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| {
            Error::checkpoint(
                path,
                "data.pkl",
                "no <archive>/data.pkl in the zip (legacy or non-torch file?)",
            )
        })?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    check_byteorder(&mut zip, path, &format!("{prefix}byteorder"))?;
    let pkl = read_entry(
        &mut zip,
        path,
        &pkl_name,
        EntryLimit::AtMost(MAX_PICKLE_BYTES),
    )?;
    let refs = parse_state_dict_pickle(path, &pkl)?;
    let need = storage_needs(path, &refs)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = WeightMap::new(path);
    for (key, t) in refs {
        if !storages.contains_key(&t.storage_key) {
            let name = format!("{prefix}data/{}", t.storage_key);
            let n = need.get(&t.storage_key).copied().unwrap_or(0);
            let b =
                read_entry(&mut zip, path, &name, EntryLimit::Prefix(n)).map_err(|e| match e {
                    Error::Checkpoint { reason, .. } => {
                        Error::checkpoint(path, &key, format!("storage {name}: {reason}"))
                    }
                    other => other,
                })?;
            storages.insert(t.storage_key.clone(), b);
        }
        let bytes = storages
            .get(&t.storage_key)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let ht = materialize(path, &key, &t, bytes)?;
        crate::weights::finite::check_f32(path, &key, &ht.data)?;
        out.insert(key, ht);
    }
    Ok(out)
}

fn check_byteorder<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    path: &Path,
    name: &str,
) -> Result<()> {
    if zip.index_for_name(name).is_none() {
        return Ok(());
    }
    let b = read_entry(zip, path, name, EntryLimit::AtMost(64))?;
    let s = String::from_utf8_lossy(&b);
    if s.trim() != "little" {
        return Err(Error::checkpoint(
            path,
            "byteorder",
            format!("`{}`: only little-endian is supported", s.trim()),
        ));
    }
    Ok(())
}

/// How much of a zip entry to inflate.
enum EntryLimit {
    /// The whole entry, which must declare at most this many bytes.
    AtMost(u64),
    /// Only the first n bytes (what the tensors reach); the entry must declare at least n.
    Prefix(u64),
}

/// Inflate one entry, never more than the limit and never more than the entry declares (a
/// deflate stream that yields more than its declared size is cut off there, then refused).
fn read_entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    path: &Path,
    name: &str,
    limit: EntryLimit,
) -> Result<Vec<u8>> {
    let f = zip
        .by_name(name)
        .map_err(|e| Error::checkpoint(path, name, format!("missing from the zip: {e}")))?;
    let size = f.size();
    let want = match limit {
        EntryLimit::AtMost(max) if size > max => {
            return Err(Error::checkpoint(
                path,
                name,
                format!("entry of {size} bytes is larger than the {max}-byte limit"),
            ))
        }
        EntryLimit::AtMost(_) => size,
        EntryLimit::Prefix(n) if n > size => {
            return Err(Error::checkpoint(
                path,
                name,
                format!("the tensors need {n} bytes, the entry holds {size}"),
            ))
        }
        EntryLimit::Prefix(n) => n,
    };
    // `want` <= the declared size, itself bounded above or by what the tensors reach; the
    // capacity is further capped so a lying header cannot reserve memory up front.
    let mut b = Vec::with_capacity(want.min(1 << 26) as usize);
    f.take(want).read_to_end(&mut b).map_err(|e| {
        Error::checkpoint(
            path,
            name,
            format!("read failed (truncated or corrupt zip?): {e}"),
        )
    })?;
    if b.len() as u64 != want {
        return Err(Error::checkpoint(
            path,
            name,
            format!("read {} bytes, the zip says {want}", b.len()),
        ));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binunicode(s: &str) -> Vec<u8> {
        let mut v = vec![b'X'];
        v.extend((s.len() as u32).to_le_bytes());
        v.extend(s.as_bytes());
        v
    }

    /// A hand-written protocol-2 pickle of `OrderedDict(w = <2x3 view with offset 1, transposed>)`.
    fn tiny_pickle(global: &str) -> Vec<u8> {
        let mut p = vec![0x80, 2];
        p.extend(b"ccollections\nOrderedDict\n)R");
        p.extend(b"(");
        p.extend(binunicode("w"));
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n");
        p.extend(b"((");
        p.extend(binunicode("storage"));
        p.extend(format!("ctorch\n{global}\n").as_bytes());
        p.extend(binunicode("0"));
        p.extend(binunicode("cpu"));
        p.extend(b"K\x07tQ");
        p.extend(b"K\x01K\x02K\x03\x86K\x01K\x02\x86\x89)tR");
        p.extend(b"u.");
        p
    }

    #[test]
    fn parses_and_gathers_strided_view() {
        let refs = parse_state_dict_pickle(Path::new("t"), &tiny_pickle("FloatStorage")).unwrap();
        assert_eq!(refs.len(), 1);
        let t = &refs[0].1;
        assert_eq!(
            (t.offset, t.shape.clone(), t.stride.clone()),
            (1, vec![2, 3], vec![1, 2])
        );
        let bytes: Vec<u8> = (0..7).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let h = materialize(Path::new("t"), "w", t, &bytes).unwrap();
        // element [i][j] = storage[1 + i + 2j]
        assert_eq!(h.data, vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        // A storage too short for the view is an error, not a panic.
        assert!(materialize(Path::new("t"), "w", t, &bytes[..24]).is_err());
    }

    #[test]
    fn refuses_unknown_globals_and_opcodes() {
        let e = parse_state_dict_pickle(Path::new("t"), &tiny_pickle("os.system")).unwrap_err();
        assert!(e.to_string().contains("not allowed"), "{e}");
        let e = parse_state_dict_pickle(Path::new("t"), b"\x80\x02cos\nsystem\n.").unwrap_err();
        assert!(e.to_string().contains("os.system"), "{e}");
        let e = parse_state_dict_pickle(Path::new("t"), b"\x80\x02i").unwrap_err();
        assert!(e.to_string().contains("0x69"), "{e}");
        let p = tiny_pickle("FloatStorage");
        for cut in 0..p.len() {
            assert!(parse_state_dict_pickle(Path::new("t"), &p[..cut]).is_err());
        }
    }
}
