"""Small hostile files that once cost gigabytes or ended in a traceback, and how to open each.

Every builder writes one file (under 1 MB) into a folder and returns its path; ``open_file``
opens it the way fastconv's users do (``load_model``, a Trainer's ``load_checkpoint``,
``read_digit_images``). Used by ``tests/test_hostile_files.py`` (in a memory-limited
subprocess) and ``tests/fuzz_files.py``.
"""
import io
import json
import struct
import zipfile
import zlib

import numpy as np

from fastconv import nn
from fastconv.serialization import save_model

# The error class each kind of file must end in.
ERRORS = {"model": "ModelFileError", "checkpoint": "CheckpointError", "image": "ImageError"}
DEFLATE_BYTES = 512 * 2**20      # an entry of zeros that deflates to about 520 KB


# -- archive and array writers ----------------------------------------------------------
def npy_bytes(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=False)
    return buf.getvalue()


def npy_header(shape, dtype):
    """A .npy header declaring ``shape`` of ``dtype``, with no data after it."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(
        np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def _zero_deflate(header, n_zeros):
    """``(deflated, crc, size)`` of ``header`` + ``n_zeros`` zero bytes, made without
    compressing them all: after a full flush the compressor's output for a block depends
    only on the block."""
    block = 16 * 2**20
    assert n_zeros % block == 0
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(header) + comp.flush(zlib.Z_FULL_FLUSH)
    piece = comp.compress(bytes(block)) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.flush()
    crc = zlib.crc32(header)
    zeros = bytes(block)
    for _ in range(n_zeros // block):
        crc = zlib.crc32(zeros, crc)
    return head + piece * (n_zeros // block) + tail, crc, len(header) + n_zeros


def write_zip(path, members):
    """A zip archive of ``members``: (name, data) stored, or (name, (deflated, crc, size))
    for a member compressed elsewhere, or (name, data, declared_size) for a stored member
    whose directory lies about its size."""
    out = io.BytesIO()
    central = []
    for member in members:
        name, data = member[0].encode(), member[1]
        if isinstance(data, tuple):
            payload, crc, size, method = data[0], data[1], data[2], 8
        else:
            payload, crc, method = data, zlib.crc32(data), 0
            size = member[2] if len(member) > 2 else len(data)
        offset = out.tell()
        fields = (20, 0, method, 0, 0, crc, len(payload) if method else size, size, len(name), 0)
        out.write(struct.pack("<4s5HI2I2H", b"PK\x03\x04", *fields) + name + payload)
        central.append(struct.pack("<4s6HI2I5H2I", b"PK\x01\x02", 20, *fields[:-1], 0, 0, 0,
                                   0, 0, offset) + name)
    start = out.tell()
    directory = b"".join(central)
    out.write(directory + struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(central),
                                      len(central), len(directory), start, 0))
    with open(path, "wb") as f:
        f.write(out.getvalue())
    return path


def config_bytes(architecture, metadata=None):
    return npy_bytes(np.array(json.dumps({"format": "fastconv-model", "version": 1,
                                          "architecture": architecture,
                                          "metadata": metadata or {}})))


def small_model():
    """The homework's linear model (10,250 parameters, 41 KB saved)."""
    return nn.build_model("linear")


def save_small_model(path, metadata=None):
    save_model(path, small_model(), metadata)
    return path


def model_entries(path):
    """The members of a saved model, as (name, bytes)."""
    with zipfile.ZipFile(path) as z:
        return [(n, z.read(n)) for n in z.namelist()]


def _linear_params():
    m = small_model()
    return [(f"param_{i:03d}.npy", npy_bytes(p)) for i, p in enumerate(m.params())]


def _model(folder, architecture, members):
    return write_zip(folder / "model.npz", [("__config__.npy", config_bytes(architecture))]
                     + members)


# -- model files ---------------------------------------------------------------------------
def conv_kernel_bomb(folder):
    arch = {"type": "Conv2d", "in_channels": 1, "out_channels": 1,
            "kernel_size": [2147483647, 1]}
    return _model(folder, arch, [("param_000.npy", npy_bytes(np.zeros((1, 1, 1, 1), "f4"))),
                                 ("param_001.npy", npy_bytes(np.zeros(1, "f4")))])


def linear_15000(folder):
    arch = {"type": "Sequential", "layers": [
        {"type": "Flatten"}, {"type": "Linear", "in_features": 15000, "out_features": 15000}]}
    return _model(folder, arch, _linear_params())


def batchnorm_bomb(folder):
    return _model(folder, {"type": "BatchNorm2d", "num_features": 10**10}, [])


def local_norm_bomb(folder):
    return _model(folder, {"type": "SubtractiveNormalization", "kernel_size": 2**31 - 1}, [])


def padding_bomb(folder):
    arch = {"type": "Sequential", "layers": [
        {"type": "Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 1,
         "padding": 2**20}, {"type": "Flatten"}]}
    return _model(folder, arch, [("param_000.npy", npy_bytes(np.ones((1, 1, 1, 1), "f4"))),
                                 ("param_001.npy", npy_bytes(np.zeros(1, "f4")))])


def npy_header_1e12(folder):
    arch = small_model().config()
    return _model(folder, arch, [("param_000.npy", npy_header((10**6, 10**6), "f4")),
                                 _linear_params()[1]])


def extra_deflated_entry(folder):
    members = model_entries(save_small_model(folder / "good.npz"))
    junk = _zero_deflate(npy_header((DEFLATE_BYTES,), "u1"), DEFLATE_BYTES)
    return write_zip(folder / "model.npz",
                     members + [("junk.npy", junk)])


def deflated_param(folder):
    """A parameter entry of the right name whose zeros deflate 1000:1."""
    arch = {"type": "Linear", "in_features": 2**14, "out_features": 2**13, "bias": False}
    n = 2**27 * 4
    data = _zero_deflate(npy_header((2**13, 2**14), "f4"), n)
    return _model(folder, arch, [("param_000.npy", data)])


def zip_size_lie(folder):
    members = model_entries(save_small_model(folder / "good.npz"))
    name, data = members[1]
    return write_zip(folder / "model.npz", [members[0], (name, data, 2**31)] + members[2:])


def config_size_lie(folder):
    return write_zip(folder / "model.npz", [("__config__.npy", npy_header((), "<U268435456"))]
                     + _linear_params())


# -- checkpoints ---------------------------------------------------------------------------
def _checkpoint(folder, members):
    (folder / "run").mkdir(exist_ok=True)
    return write_zip(folder / "run" / "checkpoint.npz", members)


def checkpoint_deflated_entry(folder):
    junk = _zero_deflate(npy_header((DEFLATE_BYTES,), "u1"), DEFLATE_BYTES)
    return _checkpoint(folder, [("__meta__.npy", npy_bytes(np.array("{}"))),
                                ("opt/history.npy", junk)])


def checkpoint_params_1e12(folder):
    return _checkpoint(folder, [("__meta__.npy", npy_bytes(np.array("{}"))),
                                ("params.npy", npy_header((10**12,), "f4")),
                                ("order.npy", npy_bytes(np.arange(4)))])


def checkpoint_unexpected_entry(folder):
    return _checkpoint(folder, [("__meta__.npy", npy_bytes(np.array("{}"))),
                                ("payload.npy", npy_bytes(np.zeros(1000, "u1")))])


# -- images --------------------------------------------------------------------------------
def _png_chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


def png(path, width, height, full=True):
    """A 1-bit grey PNG of zeros; ``full=False`` stores only its first rows (the header
    still declares the whole size)."""
    row = bytes(1 + (width + 7) // 8)
    rows = height if full else 4
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(rows)) + comp.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n"
                + _png_chunk(b"IHDR", struct.pack(">2I5B", width, height, 1, 0, 0, 0, 0))
                + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b""))
    return path


def png_9400(folder):
    return png(folder / "digit.png", 9400, 9400)


def png_12000(folder):
    return png(folder / "digit.png", 12000, 12000)


def png_50000(folder):
    return png(folder / "digit.png", 50000, 50000, full=False)


def tiff_bomb(folder):
    """A small float TIFF whose header is patched to declare 30000x30000 pixels."""
    from PIL import Image

    path = folder / "digit.tif"
    Image.fromarray(np.zeros((8, 8), np.float32), mode="F").save(path)
    data = bytearray(path.read_bytes())
    offset = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[offset:offset + 2])[0]):
        entry = offset + 2 + 12 * i
        tag, kind = struct.unpack("<2H", data[entry:entry + 4])
        if tag in (256, 257):       # ImageWidth, ImageLength
            fmt = "<I" if kind == 4 else "<H"
            data[entry + 8:entry + 8 + struct.calcsize(fmt)] = struct.pack(fmt, 30000)
    path.write_bytes(bytes(data))
    return path


def tiff_nan(folder):
    from PIL import Image

    a = np.zeros((28, 28), np.float32)
    a[10:18, 12:16] = np.nan
    path = folder / "digit.tif"
    Image.fromarray(a, mode="F").save(path)
    return path


def npy_8tb(folder):
    path = folder / "digit.npy"
    path.write_bytes(npy_header((2**20, 2**20, 2**20), "f8"))
    return path


def npz_named_npy(folder):
    path = folder / "digit.npy"
    with open(path, "wb") as f:
        np.savez(f, image=np.zeros((28, 28)))
    return path


def npy_header_lie(folder):
    path = folder / "digit.npy"
    path.write_bytes(npy_header((100, 100), "f8") + bytes(10))
    return path


# name: (kind, builder). Twenty bombs: architecture bombs, oversized entries, header lies,
# image and array bombs.
BOMBS = {
    "conv kernel 2**31": ("model", conv_kernel_bomb),
    "Linear 15000x15000": ("model", linear_15000),
    "BatchNorm2d 10**10": ("model", batchnorm_bomb),
    "local normalization kernel 2**31": ("model", local_norm_bomb),
    "padding 2**20": ("model", padding_bomb),
    "npy header 10**12 elements": ("model", npy_header_1e12),
    "extra 512 MiB deflated entry": ("model", extra_deflated_entry),
    "512 MiB deflated parameter": ("model", deflated_param),
    "zip directory size lie": ("model", zip_size_lie),
    "__config__ size lie": ("model", config_size_lie),
    "checkpoint 512 MiB deflated entry": ("checkpoint", checkpoint_deflated_entry),
    "checkpoint params 10**12": ("checkpoint", checkpoint_params_1e12),
    "checkpoint unexpected entry": ("checkpoint", checkpoint_unexpected_entry),
    "PNG 9400x9400": ("image", png_9400),
    "PNG 12000x12000": ("image", png_12000),
    "PNG 50000x50000": ("image", png_50000),
    "TIFF 30000x30000": ("image", tiff_bomb),
    "float TIFF with NaN": ("image", tiff_nan),
    ".npy declaring 8 TB": ("image", npy_8tb),
    ".npz named .npy": ("image", npz_named_npy),
}


def open_file(kind, path):
    """Open ``path`` as fastconv does for a file of ``kind``; returns what it read."""
    if kind == "model":
        from fastconv.serialization import load_model
        return load_model(path, input_shape=(1, 32, 32), n_outputs=10)
    if kind == "checkpoint":
        from fastconv.train import homework_trainer
        trainer = homework_trainer(small_model(), save_dir=str(path.parent), verbose=False)
        return trainer.load_checkpoint()
    from fastconv.datasets.images import read_digit_images
    return read_digit_images([path])
