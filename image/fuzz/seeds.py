#!/usr/bin/env python3
"""Write seed inputs for the fuzz targets (hostile layer tars) into corpus/layer and
corpus/layer_blob (the same, plus gzip and zstd copies). Run from image/fuzz: python3 seeds.py"""
import gzip
import io
import os
import shutil
import subprocess
import tarfile


def tar(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            kind, name = e[0], e[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            data = b""
            if kind == "file":
                data = e[2] if len(e) > 2 else b"data"
                ti.size = len(data)
                ti.mode = 0o644
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = e[2]
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = e[2]
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            elif kind == "chr":
                ti.type = tarfile.CHRTYPE
                ti.devmajor, ti.devminor = 1, 3
            if len(e) > 3:
                ti.pax_headers = e[3]
            t.addfile(ti, io.BytesIO(data) if kind == "file" else None)
    return buf.getvalue()


SEEDS = {
    "plain": [("dir", "etc/"), ("file", "etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
              ("symlink", "bin", "usr/bin"), ("dir", "usr/bin/"), ("file", "usr/bin/sh", b"\x7fELF")],
    "escapes": [("file", "/abs", b"1"), ("file", "../../dotdot", b"2"), ("file", "a/../../x", b"3"),
                ("file", "up/through-symlink", b"4"), ("file", "abs/through-abs-symlink", b"5"),
                ("file", "dotdot/tmp/x", b"6"), ("symlink", "up/new-link", "/etc"),
                ("hardlink", "h1", "../outside/canary"), ("hardlink", "h2", "up/canary"),
                ("hardlink", "h3", "abs/canary"), ("dir", "up/"), ("dir", "abs/x/")],
    "replace": [("dir", "d/"), ("file", "d/f", b"x"), ("symlink", "d", "/"), ("file", "d/f", b"y"),
                ("file", "up", b"replaced the symlink"), ("dir", "abs/"), ("fifo", "dotdot"),
                ("hardlink", "l", "d/f"), ("file", "d", b"file over dir")],
    "whiteouts": [("dir", "d/"), ("file", "d/a", b"a"), ("file", "d/.wh.a"), ("file", "d/.wh..wh..opq"),
                  ("file", ".wh.up"), ("file", "up/.wh.canary"), ("file", ".wh..."),
                  ("file", "abs/.wh..wh..opq"), ("file", ".wh..wh.plnk/x")],
    "pax": [("file", "x" * 300, b"long", {"SCHILY.xattr.user.k": "v",
                                            "SCHILY.xattr.trusted.overlay.opaque": "y"}),
            ("file", "t", b"t", {"mtime": "1700000000.123456789", "uid": "1000", "gid": "1000"}),
            ("symlink", "long-link", "y" * 300), ("chr", "dev/null")],
}

for target in ("layer", "layer_blob"):
    os.makedirs(f"corpus/{target}", exist_ok=True)
for name, entries in SEEDS.items():
    for fmt, suffix in ((tarfile.PAX_FORMAT, "pax"), (tarfile.GNU_FORMAT, "gnu")):
        try:
            data = tar(entries, fmt)
        except ValueError:
            continue
        for target in ("layer", "layer_blob"):
            with open(f"corpus/{target}/{name}-{suffix}.tar", "wb") as f:
                f.write(data)
        with open(f"corpus/layer_blob/{name}-{suffix}.tar.gz", "wb") as f:
            f.write(gzip.compress(data, mtime=0))
        if shutil.which("zstd"):
            z = subprocess.run(["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE, check=True)
            with open(f"corpus/layer_blob/{name}-{suffix}.tar.zst", "wb") as f:
                f.write(z.stdout)
