"""png_check.py FILE W H: the report PNG is a real picture, not a blank one.

Decodes the PNG with the standard library only (zlib; 8-bit RGB/RGBA, not
interlaced: what gnuplot's pngcairo writes) and checks its size, that it
holds many colours, that a fair share of it is drawn on, and that the
colours of run 1 and run 2 (report.c's palette) each cover some pixels.
"""
import struct
import sys
import zlib


def decode(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG: %r" % data[:8]
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, hdr
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
        rows.append(line)
        prev = line
    return w, h, bpp, rows


def main():
    path, want_w, want_h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    w, h, bpp, rows = decode(path)
    assert (w, h) == (want_w, want_h), "size %dx%d, want %dx%d" % (w, h, want_w, want_h)
    colours, drawn = {}, 0
    for line in rows:
        for x in range(0, len(line), bpp):
            px = bytes(line[x:x + 3])
            colours[px] = colours.get(px, 0) + 1
    drawn = w * h - colours.get(b"\xff\xff\xff", 0)
    share = drawn / (w * h)
    run1 = colours.get(bytes((0x00, 0x72, 0xB2)), 0)
    run2 = colours.get(bytes((0xD5, 0x5E, 0x00)), 0)
    print("png %dx%d: %d colours, %.1f%% drawn, run colours %d and %d pixels"
          % (w, h, len(colours), 100 * share, run1, run2))
    assert len(colours) >= 20, "too few colours: blank?"
    assert 0.03 <= share <= 0.7, "drawn share %.3f" % share
    assert run1 >= 200 and run2 >= 200, "a run's colour is missing"


main()
