#!/usr/bin/env python3
"""Make broken copies of a GGUF file for ktc's error tests.

  patch_gguf.py truncate SRC DST FRACTION     keep the first FRACTION of the bytes
  patch_gguf.py set-arch SRC DST NAME         replace general.architecture (same length)
  patch_gguf.py set-string SRC DST KEY VALUE  replace a string value (same length)
  patch_gguf.py set-type SRC DST TENSOR ID    set one tensor's ggml type id
  patch_gguf.py bad-magic SRC DST             overwrite the magic

The header is walked the way the GGUF spec lays it out (little-endian), so each patch touches
exactly the bytes it names and the rest of the file stays valid.
"""
import struct
import sys

SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, fmt):
        value = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value[0]

    def string(self):
        n = self.take("Q")
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s

    def skip_value(self, vtype):
        if vtype == 8:
            self.string()
        elif vtype == 9:
            elem, n = self.take("I"), self.take("Q")
            for _ in range(n):
                self.skip_value(elem)
        else:
            self.pos += SCALAR_SIZES[vtype]


def walk(data):
    """Returns ({key: (value_type, value_offset)}, {tensor: type_field_offset})."""
    r = Reader(data)
    if data[:4] != b"GGUF":
        raise SystemExit("patch_gguf: not a GGUF file")
    r.pos = 4
    r.take("I")
    n_tensors, n_kv = r.take("q"), r.take("q")
    kvs = {}
    for _ in range(n_kv):
        key = r.string().decode()
        vtype = r.take("I")
        kvs[key] = (vtype, r.pos)
        r.skip_value(vtype)
    tensors = {}
    for _ in range(n_tensors):
        name = r.string().decode()
        n_dims = r.take("I")
        r.pos += 8 * n_dims
        tensors[name] = r.pos
        r.pos += 4 + 8
    return kvs, tensors


def main(argv):
    cmd, src, dst = argv[1], argv[2], argv[3]
    data = bytearray(open(src, "rb").read())
    if cmd == "truncate":
        data = data[: int(len(data) * float(argv[4]))]
    elif cmd == "bad-magic":
        data[0:4] = b"GGUX"
    elif cmd in ("set-arch", "set-string"):
        key, value = ("general.architecture", argv[4]) if cmd == "set-arch" else (argv[4], argv[5])
        kvs, _ = walk(data)
        if key not in kvs:
            raise SystemExit(f"patch_gguf: no key {key}")
        vtype, off = kvs[key]
        old_len = struct.unpack_from("<Q", data, off)[0]
        new = value.encode()
        if vtype != 8 or len(new) != old_len:
            raise SystemExit(f"patch_gguf: new value of {key} must be a string of {old_len} bytes")
        data[off + 8: off + 8 + old_len] = new
    elif cmd == "set-type":
        _, tensors = walk(data)
        if argv[4] not in tensors:
            raise SystemExit(f"patch_gguf: no tensor {argv[4]}")
        struct.pack_into("<i", data, tensors[argv[4]], int(argv[5]))
    else:
        raise SystemExit(f"patch_gguf: unknown command {cmd}")
    open(dst, "wb").write(data)


if __name__ == "__main__":
    main(sys.argv)
